# -*- test-case-name: tests.http.test_compact -*-
"""
Compaction for a model on a Chat Completions upstream, the route's work:
C{POST /v1/responses/compact}, and a C{POST /v1/responses} turn whose input
holds the Codex CLI's C{compaction_trigger} (its remote compaction).

Both ask the upstream to summarise the conversation (one non-streamed Chat
request: the conversation, then the gateway's summary prompt), and answer
with a C{compaction} item whose C{encrypted_content} is the summary, sealed
with the gateway's key (L{codexgw.dialects.responses.compaction}). A later
turn hands the item back and the bridge expands it to the summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from codexgw.dialects.chat.stream_to_hub import map_usage
from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.dialects.responses.compaction import (
    DEFAULT_PROMPT,
    compaction_done,
    compaction_item,
    compaction_resource,
    compaction_turn,
    kept_messages,
    summary_request,
)
from codexgw.dialects.spoke import Spoke
from codexgw.errors import GatewayError, UpstreamUnavailable
from codexgw.http.bridge import Bridge, upstreamFailure, withDefaults
from codexgw.http.dispatch import Call
from codexgw.http.exchange import Exchange
from codexgw.state.conversation import (
    hasReferences,
    history,
    notFound,
    resolveReferences,
    turnInput,
)
from codexgw.stream.adapters import encodeEvents, parseEvent
from codexgw.stream.outcomes import Outcome
from codexgw.stream.sse import SSEDecoder
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream
from codexgw.upstream.learned import sendLearning

log = Logger()

_SSE = b"text/event-stream"


@attrs.frozen
class Summary:
    """What the upstream wrote: the summary, and its usage as the hub's."""

    text: str
    usage: dict[str, Any]


def readSummary(raw: bytes) -> Summary:
    """
    A Chat upstream's answer to the summary request: one C{chat.completion}
    (asked for), or a stream of chunks (some servers stream regardless).

    @raise UpstreamUnavailable: it is neither, or holds no text.
    """
    parts: list[str] = []
    usage: object = None
    try:
        stripped = raw.strip()
        if stripped.startswith(b"{"):
            completion = orjson.loads(stripped)
            content = completion["choices"][0]["message"].get("content")
            if isinstance(content, str):
                parts.append(content)
            usage = completion.get("usage")
        else:
            for line in stripped.splitlines():
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    continue
                chunk = orjson.loads(data)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if isinstance(delta.get("content"), str):
                        parts.append(delta["content"])
                if chunk.get("usage"):
                    usage = chunk["usage"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise UpstreamUnavailable(
            "the upstream answered the summary request with neither a chat completion nor a stream"
        ) from None
    text = "".join(parts).strip()
    if not text:
        raise UpstreamUnavailable("the upstream answered the summary request with no text")
    return Summary(text, map_usage(usage))


def readTranslated(spoke: Spoke, request: Any, raw: bytes) -> Summary:
    """
    The answer of an upstream of any spoke to the summary request, read by
    that spoke's own stream translator: one whole answer (asked for) or its
    stream (some servers stream regardless); the text of its messages.

    @param request: what C{spoke.requestFromHub} made of the summary request.
    @raise UpstreamUnavailable: it is neither, or holds no text.
    """
    translator = spoke.streamToHub(request, model="summary", stored=False)
    try:
        translator.start()
        stripped = raw.strip()
        if stripped.startswith(b"{"):
            translator.feed(spoke.wholeToEvent(orjson.loads(stripped)))
        else:
            decoder = SSEDecoder()
            for event in decoder.feed(stripped + b"\n\n") + decoder.close():
                chunk = parseEvent(event)
                if chunk is not None and not translator.done:
                    translator.feed(chunk)
        translator.finish()
        answer = translator.answer()
    except Exception:
        raise UpstreamUnavailable(
            f"the upstream answered the summary request with neither a {spoke.name} answer "
            "nor its stream"
        ) from None
    parts = [
        str(part.get("text") or "")
        for item in answer.get("output") or []  # type: ignore[attr-defined]
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    text = "".join(parts).strip()
    if not text:
        raise UpstreamUnavailable("the upstream answered the summary request with no text")
    usage = answer.get("usage")
    return Summary(text, dict(usage) if isinstance(usage, dict) else map_usage(None))


class Compactor:
    """
    Compacts a conversation through an upstream of the bridge's spoke (Chat,
    Messages).

    @param bridge: the bridge whose spoke, dispatcher and exchanges send the
        summary request (so the request is translated, sent with failover
        and accounted exactly as a bridged turn is).
    @param sealKey: the key compaction tokens are sealed with; the same one
        the bridge expands them with (C{server.seal_key}, shared by replicas).
    @param prompt: the summary prompt (C{server.compaction_prompt}).
    @param clock: Unix seconds, for C{created_at}.
    """

    def __init__(
        self,
        *,
        bridge: Bridge,
        sealKey: bytes,
        prompt: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.bridge = bridge
        self.sealKey = sealKey
        self.prompt = prompt or DEFAULT_PROMPT
        self._clock = clock or bridge.clock.seconds

    async def compact(self, call: Call) -> None:
        """C{POST /v1/responses/compact}: the compacted output, as JSON."""
        call = await self.conversation(call)
        summary = await self.summarise(call)
        output = [*kept_messages(call.body), compaction_item(summary.text, self.sealKey)]
        ex = call.ex
        ex.usage = summary.usage
        answer = compaction_resource(output, summary.usage, int(self._clock()))
        ex.request.write(ex.json(answer))

    async def trigger(self, call: Call) -> None:
        """
        A create turn with a C{compaction_trigger}: one response whose only
        output item is the C{compaction} (streamed, as the Codex CLI asks).

        A streamed answer starts once the upstream has been silent for a
        heartbeat, and gets a real event every heartbeat after that (the
        Codex CLI's idle timer ignores comments); an error after that start
        is a C{response.failed}.
        """
        call = await self.conversation(call)
        ex, bridge = call.ex, self.bridge
        body = {
            **call.body,
            "input": [
                i
                for i in call.body.get("input") or []
                if not (isinstance(i, dict) and i.get("type") == "compaction_trigger")
            ],
        }
        # The turn as the bridge would send it: refused now if it is not a
        # valid turn, and the source of the response object's echoed fields.
        chat = bridge.translate(attrs.evolve(call, body=body), call.candidates[0])
        translator = bridge.spoke.streamToHub(
            chat, model=ex.model or call.model, stored=False, reasoning_key=self.sealKey
        )
        request = ex.request
        if call.body.get("stream") is not True:
            summary = await self.summarise(call)
            item = compaction_item(summary.text, self.sealKey)
            response = translator.start()[0]["response"]
            assert isinstance(response, dict)
            events = compaction_turn(response, item, summary.usage, int(self._clock()))
            ex.usage = summary.usage
            request.write(ex.json(events[-1]["response"]))
            return
        beat = _Beat(bridge.clock, bridge.heartbeat, ex, translator)
        try:
            summary = await self.summarise(call)
        except GatewayError as e:
            if not beat.sent:
                raise
            ex.failedInStream()
            beat.write(translator.fail(e.code or "upstream_error", e.message))
            request.finish()
            return
        finally:
            beat.stop()
        if not beat.sent:
            ex.respond(200, _SSE)
            beat.write(translator.start())
        response = beat.response
        item = compaction_item(summary.text, self.sealKey)
        ex.usage = summary.usage
        beat.write(compaction_done(response, item, summary.usage, int(self._clock()), beat.sent))
        ex.ended(Outcome.COMPLETE)
        request.finish()

    async def conversation(self, call: Call) -> Call:
        """
        The call with its whole conversation as input: the turns of
        C{previous_response_id} first, C{item_reference}s resolved (as the
        bridge does for a turn).
        """
        body, store, key = call.body, self.bridge.store, call.ex.key
        previous = body.get("previous_response_id")
        if not (isinstance(previous, str) and previous) and not hasReferences(body):
            return call
        past: list[dict[str, Any]] = []
        if isinstance(previous, str) and previous:
            if store is None:
                raise notFound(previous)
            past = await history(store, previous, key)
        current = await resolveReferences(
            store, turnInput(body), key, known=past, stored=body.get("store") is not False
        )
        return attrs.evolve(call, body={**body, "input": past + current})

    async def summarise(self, call: Call) -> Summary:
        """Ask the call's upstreams (with failover) for the summary."""
        bridge, ex = self.bridge, call.ex
        proxy = bridge.proxy
        summaryCall = attrs.evolve(call, body=summary_request(call.body, self.prompt))
        headers = proxy.upstreamHeaders(ex, ex.request)
        headers[b"accept"] = [b"application/json"]
        onRetry = proxy.onRetry(ex)

        def send(upstream: Upstream) -> Deferred[IResponse]:
            chat = bridge.translate(summaryCall, upstream).body
            chat["stream"] = False
            chat.pop("stream_options", None)

            sent = withDefaults(headers, upstream, bridge.defaultHeaders)

            def post(raw: bytes) -> Deferred[IResponse]:
                return upstream.send(
                    b"POST", bridge.spoke.path, raw, sent, onRetry, model=call.upstreamModel
                )

            return Deferred.fromCoroutine(
                sendLearning(upstream.refused, chat, post, onRetry, ex.request_id)
            )

        # Translated once up front: a token that fails verification is a
        # 400 before anything is sent.
        first = bridge.translate(summaryCall, call.candidates[0])
        upstream, response = await bridge.dispatcher.firstAnswer(call, send)
        proxy.answered(ex)
        if response.code >= 400:
            raise await upstreamFailure(upstream, response, bridge.spoke.errorToHub)
        raw = await readCapped(response, bridge.maxLine)
        if bridge.spoke.name == "chat":
            summary = readSummary(raw)
        else:
            summary = readTranslated(bridge.spoke, first, raw)
        log.info(
            "compacted {items} input items into a {chars}-character summary on {upstream} "
            "request_id={request_id}",
            items=len(call.body.get("input") or []),
            chars=len(summary.text),
            upstream=upstream.name,
            request_id=ex.request_id,
        )
        return summary


class _Beat:
    """
    Starts a compaction's stream once the upstream has been silent for
    C{interval} seconds, then sends a real event every C{interval}.

    @ivar sent: how many events the stream has had (the next one's
        C{sequence_number}); 0 while nothing was answered.
    @ivar response: the response object the stream started with.
    """

    def __init__(
        self, clock: IReactorTime, interval: float, ex: Exchange, translator: IStreamTranslator
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.ex = ex
        self.t = translator
        self.sent = 0
        self.response: dict[str, Any] = {}
        self._call = clock.callLater(interval, self._fire) if interval else None

    def write(self, events: Sequence[Mapping[str, Any]]) -> None:
        if events and events[0]["type"] == "response.created":
            self.response = dict(events[0]["response"])
        self.sent += len(events)
        self.ex.request.write(encodeEvents([dict(e) for e in events]))

    def _fire(self) -> None:
        request = self.ex.request
        if request.finished or request.channel is None:
            return
        if not self.sent:
            self.ex.respond(200, _SSE)
            self.write(self.t.start())
        else:
            self.write(self.t.keepalive())
        self._call = self.clock.callLater(self.interval, self._fire)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


__all__ = ["Compactor", "Summary", "readSummary"]
