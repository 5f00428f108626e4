# -*- test-case-name: tests.test_service -*-
"""
The built-in offline demo model: a deterministic, local Chat Completions
server named C{codexgw-demo}.

It exists so that a newcomer can start the gateway with no configuration and
C{curl} it at once, through exactly the code paths a real provider uses: the
gateway reaches it over loopback HTTP like any other upstream. It does not
pretend to be intelligent: it echoes the last user message, word by word.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.config import DEMO_MODEL
from codexgw.http.site import GatewaySite, closePort


def reply_for(body: dict[str, Any]) -> str:
    """The demo's whole answer to a chat request."""
    said = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            said = str(content or "")
            break
    return (
        "This is the codexgw offline demo model, not a real LLM. "
        f"You said: {said.strip() or '(nothing)'}"
    )


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class DemoChatCompletions(Resource):
    isLeaf = True

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._clock = clock

    def render_POST(self, request: Request) -> bytes | int:
        request.setHeader(b"x-request-id", b"demo-" + str(int(time.time() * 1000)).encode())
        try:
            body = orjson.loads(request.content.read())  # type: ignore[union-attr]
            assert isinstance(body, dict)
        except Exception:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "error": {
                        "message": "body is not a JSON object",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
        model = body.get("model") or DEMO_MODEL
        text = reply_for(body)
        created = int(self._clock.seconds())
        usage = {
            "prompt_tokens": len(orjson.dumps(body.get("messages"))) // 4,
            "completion_tokens": len(_pieces(text)),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "id": "chatcmpl-demo",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        request.setHeader(b"content-type", b"text/event-stream")
        base = {
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])
            return b"data: " + orjson.dumps(event) + b"\n\n"

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": piece}) for piece in _pieces(text)]
        out.append(chunk({}, "stop"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            out.append(b"data: " + orjson.dumps(dict(base, choices=[], usage=usage)) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        request.write(b"".join(out))
        request.finish()
        return NOT_DONE_YET


class DemoModels(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": DEMO_MODEL, "object": "model", "created": 0, "owned_by": "codexgw-demo"}
                ],
            }
        )


def demoResource(clock: IReactorTime) -> Resource:
    """The demo server's resource tree, rooted where C{/v1} lives."""
    v1 = Resource()
    v1.putChild(b"models", DemoModels())
    chat = Resource()
    chat.putChild(b"completions", DemoChatCompletions(clock))
    v1.putChild(b"chat", chat)
    root = Resource()
    root.putChild(b"v1", v1)
    return root


class DemoServer:
    """
    The demo model listening on a free loopback port.

    Connections are tracked so that L{stop} leaves nothing open: the gateway
    may be embedded in a host that outlives it.
    """

    def __init__(self, reactor: Any) -> None:
        self._factory = WrappingFactory(GatewaySite(demoResource(reactor)))
        self._port: IListeningPort = reactor.listenTCP(0, self._factory, interface="127.0.0.1")
        self.port: int = self._port.getHost().port

    async def stop(self) -> None:
        await closePort(self._port, self._factory)
