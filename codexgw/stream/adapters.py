# -*- test-case-name: tests.stream.test_adapters -*-
"""
The two ways a translated answer reaches a client, for any pair of
dialects: streamed as it comes (L{StreamingAdapter}) or as one whole object
at the end (L{WholeAnswerAdapter}). Both drive an L{IStreamTranslator} and
are what an L{codexgw.stream.relay.EventRelay} drives (L{IEventAdapter}).

What differs between client dialects is only how events are framed on the
wire, a L{Framing}: Responses events go out as SSE with an C{event:} line
(the Codex CLI wants it); Chat chunks as C{data:} lines ending in
C{[DONE]}; Anthropic Messages events with an C{event:} line, no C{[DONE]},
and C{ping} events while the upstream is silent. Each upstream event is parsed once here (C{orjson.loads}) and
each client event serialised once by the framing; nothing else touches the
bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import orjson
from zope.interface import implementer

from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.errors import GatewayError, UpstreamFailed
from codexgw.stream.interfaces import IAnswer, IEventAdapter
from codexgw.stream.outcomes import Outcome
from codexgw.stream.sse import DONE, HEARTBEAT, SSEError, SSEEvent

_JSON = b"application/json"


class InvalidUpstreamEvent(SSEError):
    """An upstream event whose data is not the JSON it should be."""


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


def encodeEvents(events: list[dict[str, Any]]) -> bytes:
    """Responses events as SSE, C{event:} line included."""
    dumps = orjson.dumps
    if len(events) == 1:
        # Most upstream events make one client event: no list, no join.
        e = events[0]
        return b"event: %b\ndata: %b\n\n" % (e["type"].encode(), dumps(e))
    return b"".join([b"event: %b\ndata: %b\n\n" % (e["type"].encode(), dumps(e)) for e in events])


def encodeChunks(chunks: list[dict[str, Any]]) -> bytes:
    """Chat chunks as SSE C{data:} lines."""
    dumps = orjson.dumps
    if len(chunks) == 1:
        return b"data: %b\n\n" % dumps(chunks[0])
    return b"".join([b"data: %b\n\n" % dumps(c) for c in chunks])


@attrs.frozen
class Framing:
    """
    How a client dialect's stream looks on the wire.

    @ivar encode: client events to SSE bytes.
    @ivar trailer: what follows a stream that ended (C{data: [DONE]} for
        Chat), not one that failed from outside.
    @ivar heartbeat: C{True} to keep an idle client alive with the
        translator's own events (Responses: Codex's idle timer ignores
        comments), C{False} with L{keepalive}.
    @ivar keepalive: what an idle client is sent otherwise: an SSE comment,
        or the dialect's own keep-alive event (Anthropic's C{ping}).
    """

    encode: Callable[[list[dict[str, Any]]], bytes]
    trailer: bytes = b""
    heartbeat: bool = False
    keepalive: bytes = HEARTBEAT


PING = b'event: ping\ndata: {"type":"ping"}\n\n'
"""Anthropic's keep-alive event, as its API sends it while a model is silent."""

RESPONSES_SSE = Framing(encodeEvents, heartbeat=True)
CHAT_SSE = Framing(encodeChunks, trailer=DONE)
MESSAGES_SSE = Framing(encodeEvents, keepalive=PING)

FRAMINGS = {"responses": RESPONSES_SSE, "chat": CHAT_SSE, "messages": MESSAGES_SSE}
"""Each client dialect's framing, by its C{wire_api} name."""


class _Adapter:
    t: IStreamTranslator

    @property
    def done(self) -> bool:
        return bool(self.t.done)

    @property
    def usage(self) -> Any:
        usage = self.t.usage
        return usage if isinstance(usage, dict) else None

    @property
    def failed(self) -> bool:
        """The answer ended in a failure inside a 200 stream."""
        return bool(self.t.done) and self.t.failure is not None


@implementer(IEventAdapter)
class StreamingAdapter(_Adapter):
    """Upstream events in, the client's SSE bytes out, as they come."""

    def __init__(self, translator: IStreamTranslator, framing: Framing) -> None:
        self.t = translator
        self._framing = framing

    def start(self) -> bytes:
        return self._framing.encode(self.t.start())

    def event(self, event: SSEEvent) -> bytes:
        t = self.t
        chunk = parseEvent(event)
        out = self._framing.encode(t.finish() if chunk is None else t.feed(chunk))
        if t.done:
            out += self._framing.trailer
        return out

    def keepalive(self) -> bytes:
        if self._framing.heartbeat:
            return self._framing.encode(self.t.keepalive())
        return self._framing.keepalive  # between whole events, so always safe

    def end(self, outcome: Outcome, message: str) -> bytes:
        t = self.t
        if t.done:
            return b""
        if outcome is Outcome.COMPLETE:
            return self._framing.encode(t.finish()) + self._framing.trailer
        return self._framing.encode(t.fail(outcome.failureCode or "upstream_error", message))

    def fail(self, error: GatewayError) -> bytes:
        """An error before the upstream answered, inside a stream already begun."""
        return self._framing.encode(self.t.fail(error.code or "upstream_error", error.message))


@implementer(IEventAdapter)
class WholeAnswerAdapter(_Adapter):
    """
    For a client that did not ask to stream: the same translation, but only
    the whole answer object is written, as JSON, when the upstream ends; or,
    when none could be had, an error with the status a client retries on.
    """

    def __init__(self, translator: IStreamTranslator, answer: IAnswer) -> None:
        self.t = translator
        self._answer = answer

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

    def end(self, outcome: Outcome, message: str) -> bytes:
        t = self.t
        if not t.done:
            if outcome is Outcome.COMPLETE:
                t.finish()
            else:
                t.fail(outcome.failureCode or "upstream_error", message)
        failure = t.failure
        if failure is not None:
            # Rendered by the exchange, in the client's dialect's shape.
            status, body = self._answer.renderError(
                UpstreamFailed(
                    str(failure.get("message") or "upstream failed"),
                    code=failure.get("code"),
                )
            )
            self._answer.respondWithError(status, _JSON)
            return body
        self._answer.respond(200, _JSON)
        return orjson.dumps(t.answer())


__all__ = [
    "CHAT_SSE",
    "FRAMINGS",
    "MESSAGES_SSE",
    "PING",
    "RESPONSES_SSE",
    "Framing",
    "InvalidUpstreamEvent",
    "StreamingAdapter",
    "WholeAnswerAdapter",
    "encodeEvents",
    "parseEvent",
]
