"""
A fake Chat Completions server for integration tests: a plain twisted.web
resource, served on a real loopback port, that records what it was sent and
answers from a script (or, by default, with a deterministic echo).

Streams are written with a push producer, like a real model server behind a
socket: when the gateway stops reading, this stops generating, which lets a
test see backpressure reach the upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer


def chatChunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    event = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    event.update(extra)
    return b"data: " + orjson.dumps(event) + b"\n\n"


def textStream(words: list[str], usage: bool = True) -> list[bytes]:
    """An OpenAI-shaped stream answering with C{words}."""
    out = [chatChunk({"role": "assistant", "content": ""})]
    out += [chatChunk({"content": w}) for w in words]
    out.append(chatChunk({}, "stop"))
    if usage:
        out.append(
            b"data: "
            + orjson.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": "fake-model",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": len(words),
                        "total_tokens": 5 + len(words),
                    },
                }
            )
            + b"\n\n"
        )
    out.append(b"data: [DONE]\n\n")
    return out


@attrs.define
class Received:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: Any
    finished: Deferred[None]
    lost: bool = False


@implementer(IPushProducer)
class EndlessStream:
    """Writes SSE chunks as fast as the connection takes them, for ever."""

    def __init__(self, request: Request, chunk: bytes) -> None:
        self.request = request
        self.chunk = chunk
        self.produced = 0
        self.paused = False
        self.stopped = False
        from twisted.internet import reactor

        self._reactor = reactor
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._lost)
        self._reactor.callLater(0, self._run)

    def _lost(self, _: object) -> None:
        self.stopped = True

    def _run(self) -> None:
        # Write in bursts; stop as soon as the transport says pause.
        for _ in range(64):
            if self.paused or self.stopped:
                return
            self.request.write(self.chunk)
            self.produced += len(self.chunk)
        self._reactor.callLater(0, self._run)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._reactor.callLater(0, self._run)

    def stopProducing(self) -> None:
        self.stopped = True


class FakeChatUpstream(Resource):
    """
    @ivar received: every request, in order.
    @ivar script: callables C{(request, body) -> bytes | NOT_DONE_YET} used
        one per request, in order; when empty, L{defaultReply} answers.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self.script: list[Callable[[Request, Any], Any]] = []
        self.streams: list[EndlessStream] = []

    def render(self, request: Request) -> Any:
        raw = request.content.read() if request.content else b""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        headers = {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()}
        record = Received(request.method, request.path, headers, body, request.notifyFinish())

        def lost(f: Any) -> None:
            record.lost = True

        record.finished.addErrback(lost)
        self.received.append(record)
        if request.path.endswith(b"/models"):
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "object": "list",
                    "data": [
                        {"id": "fake-model", "object": "model", "created": 1, "owned_by": "fake"}
                    ],
                }
            )
        if self.script:
            return self.script.pop(0)(request, body)
        return self.defaultReply(request, body)

    def defaultReply(self, request: Request, body: Any) -> Any:
        words = ["Hello", " from", " the", " fake", " upstream"]
        request.setHeader(b"x-request-id", b"req_fake_1")
        if isinstance(body, dict) and body.get("stream"):
            request.setHeader(b"content-type", b"text/event-stream")
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            request.write(b"".join(textStream(words, usage)))
            request.finish()
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body.get("model") if isinstance(body, dict) else "fake-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            }
        )

    def endless(self, request: Request, body: Any) -> Any:
        """A script step: an SSE stream that never ends on its own."""
        request.setHeader(b"content-type", b"text/event-stream")
        self.streams.append(EndlessStream(request, chatChunk({"content": "x" * 1000})))
        return NOT_DONE_YET
