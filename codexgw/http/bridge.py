# -*- test-case-name: tests.http.test_bridge_sdk,tests.http.test_bridge_accounting,tests.http.test_messages_bridge -*-
"""
The route's work for a client on an upstream of another dialect that is not
the hub: a Responses client on a Chat Completions (or Messages) upstream,
whose client spoke is the hub itself; or a client of another spoke (Chat,
Messages) on it, whose request goes to the hub first and whose stream comes
back from the hub (L{codexgw.stream.compose.Composed}). This module composes
the spokes with the edge, from the request to the relay.

Its collaborators are narrow and named: the exchanges (what the client is
sent), the dispatcher (which upstream answers), the response store, metrics.
The translation itself is pure and lives in the dialects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from codexgw.dialects.responses.continuation import checkToolOutputs
from codexgw.dialects.spoke import Spoke
from codexgw.errors import GatewayError, adviseRetry
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Exchange, Proxy
from codexgw.obs.logs import Throttle
from codexgw.obs.metrics import GatewayMetrics
from codexgw.state.conversation import (
    hasReferences,
    history,
    notFound,
    resolveReferences,
    turnInput,
)
from codexgw.state.store import IResponseStore, StoredResponse
from codexgw.stream.adapters import RESPONSES_SSE, Framing, StreamingAdapter, WholeAnswerAdapter
from codexgw.stream.compose import Composed
from codexgw.stream.interfaces import IEventAdapter
from codexgw.stream.outcomes import Outcome
from codexgw.stream.sse import SSEEvent
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream
from codexgw.upstream.learned import sendLearning
from codexgw.upstream.retry import retryAfterEstimate, retryAfterSeconds, wholeSeconds

log = Logger()

_SSE = b"text/event-stream"


async def upstreamFailure(
    upstream: Any, response: Any, errorToGateway: Callable[[int, bytes], GatewayError]
) -> GatewayError:
    """
    An upstream's error answer (read with a cap, mapped by its dialect's
    C{errorToGateway}) as the error the client gets, its status kept; a 429
    always says when to retry (the upstream's word, else the gateway's
    estimate).
    """
    error = errorToGateway(response.code, await readCapped(response))
    retry = response.headers.getRawHeaders(b"retry-after")
    if response.code == 429:
        return adviseRetry(error, retryAfterEstimate(response, upstream.policy))
    if retry:
        seconds = retryAfterSeconds(retry[0])
        if seconds is not None:
            error.headers[b"retry-after"] = wholeSeconds(seconds)
    return error


def withDefaults(
    headers: dict[bytes, list[bytes]], upstream: Upstream, defaults: Mapping[bytes, bytes]
) -> dict[bytes, list[bytes]]:
    """
    C{headers} and each of C{defaults} that neither they nor C{upstream}'s
    profile or config headers set (which a request's own headers would
    override).
    """
    if not defaults:
        return headers
    configured = {
        n.lower().encode("latin-1") for n in (*upstream.profile.headers, *upstream.config.headers)
    }
    missing = {
        name: [value]
        for name, value in defaults.items()
        if name not in headers and name not in configured
    }
    return {**headers, **missing} if missing else headers


class Bridge:
    """
    Serves C{POST /v1/responses} (the hub's own dialect) from an upstream of
    another dialect, through that dialect's L{Spoke}; or, given a C{client}
    spoke, that spoke's route the same way, through the hub.

    @param spoke: the upstream's dialect.
    @param client: the client's dialect when it is not the hub's: its
        request goes to the hub first, and the stream comes back from the
        hub framed by C{framing}; such turns are not stored.
    @param framing: how the client's stream looks on the wire.
    @param dialectFor: what of the upstream's dialect one upstream takes
        (from its provider profile), for C{spoke.requestFromHub}.
    @param forwardHeaders: request headers of the client sent upstream as
        they came, when it sent them (a Messages upstream's
        C{anthropic-version} and C{anthropic-beta}).
    @param defaultHeaders: headers an upstream is sent when neither the
        client (of those forwarded) nor the upstream's profile or config set
        them (a Messages upstream's C{anthropic-version}).
    @param requestOptions: more keyword arguments of C{spoke.requestFromHub}
        for one upstream (a Messages upstream's C{default_max_tokens}).
    @param heartbeat: seconds; also how long a streamed request waits for
        the upstream's headers before answering 200 and keeping the client
        alive with real events (the Codex CLI's idle timer ignores comments).
    @param store: where turns are kept for C{previous_response_id}, or
        L{None} without a store backend.
    """

    def __init__(
        self,
        *,
        spoke: Spoke,
        exchanges: Proxy,
        dispatcher: Dispatcher,
        store: IResponseStore | None,
        metrics: GatewayMetrics,
        clock: IReactorTime,
        dialectFor: Callable[[Upstream], Any],
        heartbeat: float,
        maxLine: int,
        sealKey: bytes | None = None,
        client: Spoke | None = None,
        framing: Framing = RESPONSES_SSE,
        forwardHeaders: tuple[bytes, ...] = (),
        defaultHeaders: Mapping[bytes, bytes] | None = None,
        requestOptions: Callable[[Upstream], dict[str, Any]] | None = None,
    ) -> None:
        self.spoke = spoke
        self.client = client
        self.framing = framing
        self.forwardHeaders = forwardHeaders
        self.defaultHeaders = dict(defaultHeaders or {})
        self.requestOptions = requestOptions
        self.proxy = exchanges
        self.dispatcher = dispatcher
        self.store = store
        self.clock = clock
        self._unsaved = Throttle(clock)
        self.metrics = metrics
        self.dialectFor = dialectFor
        self.heartbeat = heartbeat
        self.maxLine = maxLine
        self.sealKey = sealKey

    def translate(self, call: Call, upstream: Upstream) -> Any:
        """The spoke's request for one candidate upstream, in its dialect."""
        ex = call.ex
        chat = self.spoke.requestFromHub(
            call.body,
            self.dialectFor(upstream),
            upstream_model=call.upstreamModel,
            reasoning_key=self.sealKey,
            **(self.requestOptions(upstream) if self.requestOptions is not None else {}),
        )
        for tool in getattr(chat, "dropped_tools", ()):
            log.warn(
                "dropped tool {tool} the upstream {upstream} cannot run request_id={request_id}",
                tool=tool,
                upstream=upstream.name,
                request_id=ex.request_id,
            )
            self.metrics.dropped_tools.labels(upstream.name, tool).inc()
        ignored = getattr(chat, "ignored_fields", None)
        if ignored:
            log.debug(
                "no {dialect} meaning, not sent to {upstream}: {fields} request_id={request_id}",
                dialect=self.spoke.name,
                upstream=upstream.name,
                fields=", ".join(ignored),
                request_id=ex.request_id,
            )
        dropped = getattr(chat, "dropped_fields", None)
        if dropped:
            log.info(
                "not sent to {upstream} (its dialect does not take them): {fields} "
                "request_id={request_id}",
                upstream=upstream.name,
                fields=", ".join(dropped),
                request_id=ex.request_id,
            )
        return chat

    def toHub(self, call: Call) -> Any:
        """
        A client spoke's request as the hub's (C{call.body} becomes it), or
        L{None} for a Responses client, whose request is the hub's already.
        """
        if self.client is None:
            return None
        ex = call.ex
        hub = self.client.requestToHub(call.body, upstream_model=call.upstreamModel)
        dropped = getattr(hub, "dropped_fields", None)
        if dropped:
            log.info(
                "not sent to {upstream} (no equivalent): {fields} request_id={request_id}",
                upstream=call.candidates[0].name,
                fields=", ".join(dropped),
                request_id=ex.request_id,
            )
        # Nothing of another dialect's turn is kept: its clients resend
        # the conversation and never name a response id.
        call.body = {**hub.body, "store": False}
        call.body.pop("previous_response_id", None)
        return hub

    async def run(self, call: Call) -> None:
        ex = call.ex
        request = ex.request
        hub = self.toHub(call)
        store = self.store
        keep = store is not None and call.body.get("store") is not False
        # Named here, so that the items this turn names are named after it.
        rid = f"resp_{uuid.uuid4().hex}"
        turn = turnInput(call.body, rid) if keep else []
        previous = call.body.get("previous_response_id")
        past: list[dict[str, Any]] = []
        if isinstance(previous, str) and previous:
            if store is None:
                raise notFound(previous)
            past = await history(store, previous, ex.key)
        if previous or hasReferences(call.body):
            # References become the items they name, in what is sent and
            # in what is stored (a later turn's history holds full items).
            current = await resolveReferences(
                store,
                turn or turnInput(call.body, rid),
                ex.key,
                known=past,
                stored=call.body.get("store") is not False,
            )
            if keep:
                turn = current
            call.body = {**call.body, "input": past + current}
        # The translator follows the first candidate's request: candidates
        # differ in dialect (what is sent), not in what their streams mean.
        chat = self.translate(call, call.candidates[0])
        # After the translation, which refuses items of the wrong shape.
        checkToolOutputs(call.body.get("input"))
        translator: Any = self.spoke.streamToHub(
            chat,
            response_id=rid,
            model=ex.model or call.model,
            stored=keep,
            reasoning_key=self.sealKey,
        )
        stream = bool(chat.client_stream)
        if hub is not None:
            assert self.client is not None
            translator = Composed(translator, self.client.streamFromHub(hub))
            stream = bool(hub.client_stream)
        adapter: StreamingAdapter | WholeAnswerAdapter = (
            StreamingAdapter(translator, self.framing)
            if stream
            else WholeAnswerAdapter(translator, ex)
        )
        headers = self.proxy.upstreamHeaders(ex, request)
        headers[b"accept"] = [b"text/event-stream"]
        for name in self.forwardHeaders:
            given = request.requestHeaders.getRawHeaders(name)
            if given:
                headers[name] = list(given)
        onRetry = self.proxy.onRetry(ex)

        def send(upstream: Upstream) -> Deferred[Any]:
            body = chat if upstream is call.candidates[0] else self.translate(call, upstream)
            sent = withDefaults(headers, upstream, self.defaultHeaders)
            return self._sendLearning(call, upstream, body.body, sent, onRetry)

        pending = Deferred.fromCoroutine(self.dispatcher.firstAnswer(call, send))

        early = (
            EarlyStart(self.clock, ex, adapter, self.heartbeat)
            if isinstance(adapter, StreamingAdapter)
            else None
        )
        try:
            upstream, response = await pending
        except GatewayError as e:
            if early is None or not early.started:
                raise
            self._failStarted(ex, early.adapter, e)
            return
        finally:
            if early is not None:
                early.stop()

        self.proxy.answered(ex)
        if response.code >= 400:
            error = await upstreamFailure(upstream, response, self.spoke.errorToHub)
            if early is None or not early.started:
                raise error
            self._failStarted(ex, early.adapter, error)
            return

        if early is None or not early.started:
            ex.respond(200, _SSE if stream else None)
            first = adapter.start()
            if first:
                request.write(first)
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        if ctype.startswith(b"text/event-stream"):
            await self.proxy.translate(ex, upstream, response, adapter, stream)
        else:
            # Answered with plain JSON despite stream: true; kept like any turn.
            await self.completion(ex, response, adapter)
        if keep and translator.done and translator.failure is None:
            answer = translator.answer()
            record = StoredResponse(
                id=str(answer["id"]),
                owner=ex.key,
                response=answer,
                input_items=turn,
                previous_id=previous if isinstance(previous, str) and previous else None,
            )
            # The answer is delivered; the write goes on without holding the
            # request (and a failed write is a log line, not a failed turn).
            assert store is not None

            def unsaved(failure: Any) -> None:
                suppressed = self._unsaved.due()
                if suppressed is None:
                    return
                log.warn(
                    "could not store response {id}: {error} request_id={request_id} "
                    "({suppressed} more since the last such line)",
                    id=record.id,
                    error=str(failure.value) or failure.type.__name__,
                    request_id=ex.request_id,
                    suppressed=suppressed,
                )

            store.save(record).addErrback(unsaved)

    def _sendLearning(
        self,
        call: Call,
        upstream: Upstream,
        body: dict[str, Any],
        headers: dict[bytes, list[bytes]],
        onRetry: Any,
    ) -> Deferred[IResponse]:
        """
        Send the translated C{body} to C{upstream} without the parameters it
        is known to refuse, and once more without one it refuses now
        (L{codexgw.upstream.learned}): one attempt for the dispatcher, so
        neither a failover nor a breaker failure.
        """

        def post(raw: bytes) -> Deferred[IResponse]:
            return upstream.send(
                b"POST", self.spoke.path, raw, headers, onRetry, model=call.upstreamModel
            )

        return Deferred.fromCoroutine(
            sendLearning(upstream.refused, body, post, onRetry, call.ex.request_id)
        )

    def _failStarted(self, ex: Exchange, adapter: StreamingAdapter, error: GatewayError) -> None:
        failStarted(ex, adapter, error)

    async def completion(self, ex: Exchange, response: Any, adapter: IEventAdapter) -> None:
        """
        Answer from an upstream that sent one whole C{chat.completion}
        instead of the stream it was asked for: the translator sees it as a
        single chunk, and the exchange is accounted as a relay's would be.
        """
        request = ex.request
        raw = await readCapped(response, self.maxLine)
        outcome = Outcome.COMPLETE
        try:
            chunk = self.spoke.wholeToEvent(orjson.loads(raw))
            out = adapter.event(SSEEvent(orjson.dumps(chunk).decode()))
            out += adapter.end(Outcome.COMPLETE, "")
        except Exception:
            outcome = Outcome.BAD_STREAM
            out = adapter.end(outcome, "upstream answered neither SSE nor a chat completion")
        if out:
            request.write(out)
        usage = adapter.usage
        ex.usage = usage if isinstance(usage, dict) else None
        ex.ended(outcome)
        request.finish()


def failStarted(ex: Exchange, adapter: StreamingAdapter, error: GatewayError) -> None:
    """
    The stream was answered 200 already: it ends in the client dialect's
    failure (C{response.failed}, a Chat error chunk, Anthropic's
    C{event: error}).
    """
    ex.failedInStream()
    ex.request.write(adapter.fail(error))
    ex.request.finish()


class EarlyStart:
    """
    If the upstream has not answered within one heartbeat, answer the client
    200 with the opening of its stream (C{response.created}/C{in_progress},
    Anthropic's C{message_start}) and send a keep-alive every heartbeat until
    it does (real events where the dialect's client wants them): a silent,
    thinking model must not trip the client's idle timer.
    """

    def __init__(
        self, clock: IReactorTime, ex: Exchange, adapter: StreamingAdapter, interval: float
    ) -> None:
        self.clock = clock
        self.ex = ex
        self.adapter = adapter
        self.interval = interval
        self.started = False
        self._call = clock.callLater(interval, self._fire) if interval else None

    def _fire(self) -> None:
        request = self.ex.request
        if request.finished or request.channel is None:
            return
        if not self.started:
            self.started = True
            self.ex.respond(200, _SSE)
            request.write(self.adapter.start())
        else:
            request.write(self.adapter.keepalive())
        self._call = self.clock.callLater(self.interval, self._fire)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
