# -*- test-case-name: tests.http.test_bridge_sdk,tests.http.test_bridge_accounting -*-
"""
The edge of the Responses → Chat bridge: adapters that let an L{EventRelay}
drive the pure translator in L{codexgw.dialects.chat.stream_to_hub}, and the
route's work from request to relay.

Each upstream event is parsed exactly once (C{orjson.loads}) and each
Responses event serialised exactly once (C{orjson.dumps}); nothing else
touches the bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from codexgw.dialects.chat.errors import upstream_error
from codexgw.errors import GatewayError, adviseRetry
from codexgw.obs.logs import Throttle
from codexgw.state.conversation import history, notFound, turnInput
from codexgw.state.store import StoredResponse
from codexgw.stream.relay import (
    BAD_STREAM,
    COMPLETE,
    IDLE_TIMEOUT,
    SHUTDOWN,
    TOTAL_TIMEOUT,
    UPSTREAM_BROKEN,
)
from codexgw.stream.sse import SSEError, SSEEvent
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.retry import retryAfterEstimate, retryAfterSeconds, wholeSeconds

log = Logger()

_EVENT = b"event: "
_DATA = b"\ndata: "
_END = b"\n\n"

# What a relay outcome becomes in C{response.failed}'s C{error.code}. None of
# these is one the Codex CLI treats as final, so it retries the turn.
FAILURE_CODES = {
    UPSTREAM_BROKEN: "upstream_stream_broken",
    IDLE_TIMEOUT: "upstream_idle_timeout",
    TOTAL_TIMEOUT: "upstream_timeout",
    BAD_STREAM: "upstream_protocol_error",
    SHUTDOWN: "server_shutting_down",
}


class InvalidUpstreamEvent(SSEError):
    """An upstream event whose data is not the JSON it should be."""


def encode(events: list[dict[str, Any]]) -> bytes:
    """Frame Responses events as SSE, C{event:} line included (Codex wants it)."""
    dumps = orjson.dumps
    return b"".join([_EVENT + e["type"].encode() + _DATA + dumps(e) + _END for e in events])


def parseEvent(event: SSEEvent) -> dict[str, Any] | None:
    """The JSON of one upstream event; L{None} for C{[DONE]}."""
    data = event.data
    if data == "[DONE]":
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InvalidUpstreamEvent(f"upstream sent an event that is not JSON: {e}") from None
    if not isinstance(chunk, dict):
        raise InvalidUpstreamEvent("upstream sent an event that is not a JSON object")
    return chunk


class Adapter:
    """What an adapter exposes to L{codexgw.stream.relay.EventRelay} (besides the
    event/keepalive/end methods each defines)."""

    t: Any

    @property
    def done(self) -> bool:
        return bool(self.t.done)

    @property
    def usage(self) -> Any:
        return self.t.response.get("usage")

    @property
    def failed(self) -> bool:
        """The answer ended with C{response.failed}: an error inside a 200 stream."""
        response = getattr(self.t, "response", None)
        return (
            bool(self.t.done) and isinstance(response, dict) and response.get("status") == "failed"
        )


class StreamingAdapter(Adapter):
    """Turns upstream Chat events into Responses SSE bytes as they come."""

    def __init__(self, translator: Any) -> None:
        self.t = translator

    def start(self) -> bytes:
        return encode(self.t.start())

    def event(self, event: SSEEvent) -> bytes:
        chunk = parseEvent(event)
        if chunk is None:
            return encode(self.t.finish())
        return encode(self.t.feed(chunk))

    def keepalive(self) -> bytes:
        return encode(self.t.keepalive())

    def end(self, outcome: str, message: str) -> bytes:
        if self.t.done:
            return b""
        if outcome == COMPLETE:
            return encode(self.t.finish())
        return encode(self.t.fail(FAILURE_CODES.get(outcome, "upstream_error"), message))

    def fail(self, error: GatewayError) -> bytes:
        return encode(self.t.fail(error.code or "upstream_error", error.message))


class BufferingAdapter(Adapter):
    """
    For a client that did not ask to stream: the same translation, but only
    the final response object is written, as JSON, when the upstream ends.
    """

    def __init__(self, translator: Any, request: Request) -> None:
        self.t = translator
        self.request = request

    def start(self) -> bytes:
        self.t.start()
        return b""

    def event(self, event: SSEEvent) -> bytes:
        chunk = parseEvent(event)
        if chunk is None:
            self.t.finish()
        else:
            self.t.feed(chunk)
        return b""

    def keepalive(self) -> bytes:
        return b""

    def end(self, outcome: str, message: str) -> bytes:
        if not self.t.done:
            if outcome == COMPLETE:
                self.t.finish()
            else:
                self.t.fail(FAILURE_CODES.get(outcome, "upstream_error"), message)
        response = self.t.response
        request = self.request
        request.setHeader(b"content-type", b"application/json")
        if response.get("status") == "failed":
            # A whole answer was asked for and none could be had: an error,
            # with the status a client retries on.
            error = response.get("error") or {}
            request.setResponseCode(502)
            return orjson.dumps(
                {
                    "error": {
                        "message": error.get("message", "upstream failed"),
                        "type": "upstream_error",
                        "param": None,
                        "code": error.get("code"),
                    }
                }
            )
        return orjson.dumps(response)


async def upstreamFailure(upstream: Any, response: Any) -> GatewayError:
    """
    An upstream's error answer (read with a cap) as the error the client
    gets, its status kept; a 429 always says when to retry (the upstream's
    word, else the gateway's estimate).
    """
    error = upstream_error(response.code, await readCapped(response))
    retry = response.headers.getRawHeaders(b"retry-after")
    if response.code == 429:
        return adviseRetry(error, retryAfterEstimate(response, upstream.policy))
    if retry:
        seconds = retryAfterSeconds(retry[0])
        if seconds is not None:
            error.headers[b"retry-after"] = wholeSeconds(seconds)
    return error


def completionAsChunk(completion: dict[str, Any]) -> dict[str, Any]:
    """
    A whole C{chat.completion} as one stream chunk, for upstreams that answer
    C{stream: true} with plain JSON anyway: the translator then needs no
    second code path.
    """
    choices = []
    for choice in completion.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("message") or {})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [
                dict(call, index=i) for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        choices.append(
            {
                "index": choice.get("index", 0),
                "delta": delta,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    chunk: dict[str, Any] = {"choices": choices}
    if completion.get("usage") is not None:
        chunk["usage"] = completion["usage"]
    return chunk


class Bridge:
    """
    Serves C{POST /v1/responses} from a Chat Completions upstream.

    @param heartbeat: seconds; also how long a streamed request waits for
        the upstream's headers before answering 200 and keeping the client
        alive with real events (the Codex CLI's idle timer ignores comments).
    """

    def __init__(self, gateway: Any, dialectFor: Any, heartbeat: float, maxLine: int) -> None:
        self.gateway = gateway
        self.proxy = gateway.proxy
        self.clock = gateway.proxy.clock
        self._unsaved = Throttle(self.clock)
        self.metrics = gateway.metrics
        self.dialectFor = dialectFor
        self.heartbeat = heartbeat
        self.maxLine = maxLine

    def translate(self, call: Any, upstream: Any) -> Any:
        """The Chat request for one candidate upstream, in its dialect."""
        from codexgw.dialects.chat.request_from_hub import responses_to_chat

        ex = call.ex
        chat = responses_to_chat(
            call.body, self.dialectFor(upstream), upstream_model=call.upstreamModel
        )
        for tool in chat.dropped_tools:
            log.warn(
                "dropped tool {tool} the upstream {upstream} cannot run request_id={request_id}",
                tool=tool,
                upstream=upstream.name,
                request_id=ex.request_id,
            )
            self.metrics.dropped_tools.labels(upstream.name, tool).inc()
        if chat.dropped_fields:
            log.info(
                "not sent to {upstream} (its dialect does not take them): {fields} "
                "request_id={request_id}",
                upstream=upstream.name,
                fields=", ".join(chat.dropped_fields),
                request_id=ex.request_id,
            )
        return chat

    async def run(self, call: Any) -> None:
        from codexgw.dialects.chat.stream_to_hub import ChatToResponses

        ex = call.ex
        request = ex.request
        store = self.gateway.store
        keep = store is not None and call.body.get("store") is not False
        turn = turnInput(call.body) if keep else []
        previous = call.body.get("previous_response_id")
        if isinstance(previous, str) and previous:
            if store is None:
                raise notFound(previous)
            past = await history(store, previous, ex.key)
            call.body = {**call.body, "input": past + (turn or turnInput(call.body))}
        # The translator follows the first candidate's request: candidates
        # differ in dialect (what is sent), not in what their streams mean.
        chat = self.translate(call, call.candidates[0])
        translator = ChatToResponses(chat, model=ex.model, stored=keep)
        stream = chat.client_stream
        adapter: Any = (
            StreamingAdapter(translator) if stream else BufferingAdapter(translator, request)
        )
        headers = self.proxy.upstreamHeaders(ex, request)
        headers[b"accept"] = [b"text/event-stream"]
        onRetry = self.proxy.onRetry(ex)

        def send(upstream: Any) -> Any:
            body = chat if upstream is call.candidates[0] else self.translate(call, upstream)
            return upstream.send(
                b"POST",
                "/chat/completions",
                orjson.dumps(body.body),
                headers,
                onRetry,
                model=call.upstreamModel,
            )

        pending = Deferred.fromCoroutine(self.gateway.firstAnswer(call, send))

        early = _EarlyStart(self.clock, request, adapter, self.heartbeat) if stream else None
        try:
            upstream, response = await pending
        except GatewayError as e:
            if early is None or not early.started:
                raise
            ex.status = 200
            ex.outcome = "upstream_error"
            request.write(adapter.fail(e))
            request.finish()
            return
        finally:
            if early is not None:
                early.stop()

        self.proxy.answered(ex)
        if response.code >= 400:
            error = await upstreamFailure(upstream, response)
            if early is None or not early.started:
                raise error
            ex.status = 200
            ex.outcome = "upstream_error"
            request.write(adapter.fail(error))
            request.finish()
            return

        started = early is not None and early.started
        if not started:
            request.setResponseCode(200)
            if stream:
                request.setHeader(b"content-type", b"text/event-stream")
            first = adapter.start()
            if first:
                request.write(first)
        ex.status = 200
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        if ctype.startswith(b"text/event-stream"):
            await self.proxy.translate(ex, upstream, response, adapter, stream)
        else:
            # Answered with plain JSON despite stream: true; kept like any turn.
            await self.completion(ex, response, adapter)
        if keep and translator.done and translator.response.get("status") != "failed":
            record = StoredResponse(
                id=translator.response["id"],
                owner=ex.key,
                response=translator.response,
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

    async def completion(self, ex: Any, response: Any, adapter: Any) -> None:
        """
        Answer from an upstream that sent one whole C{chat.completion}
        instead of the stream it was asked for: the translator sees it as a
        single chunk, and the exchange is accounted as a relay's would be.
        """
        request = ex.request
        raw = await readCapped(response, self.maxLine)
        outcome = COMPLETE
        try:
            chunk = completionAsChunk(orjson.loads(raw))
            out = adapter.event(SSEEvent(orjson.dumps(chunk).decode()))
            out += adapter.end(COMPLETE, "")
        except Exception:
            outcome = BAD_STREAM
            out = adapter.end(BAD_STREAM, "upstream answered neither SSE nor a chat completion")
        if out:
            request.write(out)
        usage = adapter.usage
        ex.usage = usage if isinstance(usage, dict) else None
        self.proxy.ended(ex, outcome)
        request.finish()


class _EarlyStart:
    """
    If the upstream has not answered within one heartbeat, answer the client
    200 with C{response.created}/C{in_progress} and send a real event every
    heartbeat until it does: a silent, thinking model must not trip the
    client's idle timer.
    """

    def __init__(self, clock: Any, request: Request, adapter: Any, interval: float) -> None:
        self.clock = clock
        self.request = request
        self.adapter = adapter
        self.interval = interval
        self.started = False
        self._call = clock.callLater(interval, self._fire) if interval else None

    def _fire(self) -> None:
        request = self.request
        if request.finished or request.channel is None:
            return
        if not self.started:
            self.started = True
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(self.adapter.start())
        else:
            request.write(self.adapter.keepalive())
        self._call = self.clock.callLater(self.interval, self._fire)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
