"""
Script steps for L{FakeChatUpstream} that misbehave the ways real providers
and networks do. Each returns what a twisted.web render returns.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import reactor
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.chat_upstream import chatChunk, textStream

Step = Any


def status(code: int, headers: dict[bytes, bytes] | None = None) -> Step:
    def step(request: Request, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        for k, v in (headers or {}).items():
            request.setHeader(k, v)
        return orjson.dumps(
            {
                "error": {
                    "message": f"upstream says {code}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )

    return step


def resetBeforeFirstByte() -> Step:
    def step(request: Request, body: Any) -> Any:
        request.channel.transport.abortConnection()  # type: ignore[union-attr]
        return NOT_DONE_YET

    return step


def sseThen(data: bytes, then: str, delay: float = 0.1) -> Step:
    """Send C{data} as an SSE body, then C{reset}, C{stall} or C{finish}."""

    def step(request: Request, body: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(data)
        transport = request.channel.transport  # type: ignore[union-attr]
        if then == "reset":
            reactor.callLater(delay, transport.abortConnection)
        elif then == "finish":
            request.finish()
        return NOT_DONE_YET

    return step


def stall() -> Step:
    """Accept the request and never answer."""

    def step(request: Request, body: Any) -> Any:
        return NOT_DONE_YET

    return step


FIRST = chatChunk({"role": "assistant", "content": ""}) + chatChunk({"content": "Hel"})
OK_STREAM = b"".join(textStream(["fine"]))
