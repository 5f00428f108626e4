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
from collections.abc import Callable
from typing import Any

import orjson
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.config import DEMO_MODEL
from codexgw.http.site import GatewaySite, closePort

log = Logger()


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


LOOPBACK = "tcp:0:interface=127.0.0.1"
"""Where the gateway's own demo listens: a free port on loopback."""


class DemoService(Service):
    """
    The demo model as an C{IService}: it listens when started and stops
    listening, cutting the connections still open, when stopped, so a host
    that outlives it is left with nothing behind.

    The gateway adds one as a child service when its config names the demo
    upstream (see L{codexgw.service}); C{twistd codexgw-demo} runs one on its
    own (see L{codexgw.demo.tap}).

    @param reactor: the reactor to listen with and to time the stream with.
    @param endpoint: a Twisted server endpoint string; a free loopback port
        by default.
    @param bound: called with the demo's base URL (C{http://host:port/v1})
        once a TCP port is bound: the gateway points its demo upstream there.
    @ivar port: the listening port once bound, else L{None}.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: str = LOOPBACK,
        bound: Callable[[str], object] | None = None,
    ) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.port: IListeningPort | None = None
        self._bound = bound
        self._factory: WrappingFactory | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        factory = WrappingFactory(GatewaySite(demoResource(self.reactor), reactor=self.reactor))
        factory.noisy = False
        self._factory = factory
        listening = serverFromString(self.reactor, self.endpoint).listen(factory)
        listening.addCallback(self._listened)
        starting = True
        early: list[Failure] = []

        def failed(f: Failure) -> None:
            # TCP endpoints bind at once: as with twistd's own endpoint
            # service, a port that cannot be had fails the start.
            if starting:
                early.append(f)
            else:
                log.failure(
                    "the demo model could not listen on {endpoint}", f, endpoint=self.endpoint
                )

        listening.addErrback(failed)
        starting = False
        if early:
            self.running = 0
            early[0].raiseException()
        self._listening = listening

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        log.info(
            "serving the built-in offline demo model ({model}) on {address}",
            model=DEMO_MODEL,
            address=address,
        )
        if self._bound is not None and isinstance(address, IPv4Address | IPv6Address):
            host = address.host if isinstance(address, IPv4Address) else f"[{address.host}]"
            self._bound(f"http://{host}:{address.port}/v1")
        return port

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        listening, self._listening = self._listening, None
        factory = self._factory
        if listening is None or factory is None:
            return succeed(None)

        def close(port: IListeningPort | None) -> Deferred[None]:
            self.port = None
            if port is None:
                return succeed(None)
            return Deferred.fromCoroutine(closePort(port, factory))

        return listening.addCallback(close)
