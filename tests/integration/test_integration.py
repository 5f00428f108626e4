"""
Real sockets on loopback: a fake upstream and the gateway each on port 0,
driven over HTTP by treq, by a raw TCP client, and by the official openai
SDK (run in a thread, as the blocking client it is).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from codexgw.config import parse
from codexgw.http.site import GatewaySite
from codexgw.service import Gateway
from tests.fakes.chat_upstream import FakeChatUpstream


async def until(predicate: Any, timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll C{predicate} on the real reactor, for at most C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await deferLater(reactor, step, lambda: None)
    return bool(predicate())


def serve(test: TestCase, resource: Any) -> Any:
    """
    Listen on a loopback port 0; on cleanup, stop listening and cut every
    connection still open, so each test leaves a clean reactor.
    """
    factory = WrappingFactory(GatewaySite(resource))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    async def stop() -> None:
        stopped = port.stopListening()
        if stopped is not None:
            await stopped
        for protocol in list(factory.protocols):
            protocol.transport.abortConnection()
        await until(lambda: not factory.protocols, timeout=2)

    test.addCleanup(stop)
    return port


def httpClient(test: TestCase) -> HTTPClient:
    """A treq client with its own pool, closed by cleanup."""
    pool = HTTPConnectionPool(reactor)
    test.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


class LiveGateway:
    """An upstream and a gateway listening on loopback; stopped by cleanup."""

    def __init__(
        self,
        test: TestCase,
        upstream: dict[str, Any] | None = None,
        store: Any = None,
        **serverConfig: Any,
    ) -> None:
        self.upstream = FakeChatUpstream()
        self.upstreamPort = serve(test, self.upstream)
        config = parse(
            {
                "upstreams": {
                    "main": {
                        "base_url": f"http://127.0.0.1:{self.upstreamPort.getHost().port}/v1",
                        "api_key": "sk-upstream-secret",
                        "retries": {"max_attempts": 1},
                        **(upstream or {}),
                    }
                },
                "default_upstream": "main",
                "server": serverConfig,
            },
            "test.yaml",
            {},
        )
        self.gateway = Gateway(config, store=store)
        test.addCleanup(self.gateway.close)
        self.port = serve(test, self.gateway.resource)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}/v1"
        self.http = httpClient(test)


class HTTPTests(TestCase):
    async def test_non_streamed_chat_round_trip(self) -> None:
        live = LiveGateway(self)
        response = await live.http.post(
            live.base + "/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer client-key"},
        )
        body = await response.json()
        self.assertEqual(response.code, 200)
        self.assertEqual(body["choices"][0]["message"]["content"], "Hello from the fake upstream")
        [received] = live.upstream.received
        self.assertEqual(received.path, b"/v1/chat/completions")
        self.assertEqual(received.headers[b"authorization"], b"Bearer sk-upstream-secret")
        again = await live.http.post(live.base + "/chat/completions", json={"model": "m"})
        await again.content()
        self.assertEqual(len(live.upstream.received), 2)

    async def test_unreachable_upstream_is_502_and_ready_is_503(self) -> None:
        live = LiveGateway(self)
        await live.upstreamPort.stopListening()
        response = await live.http.post(
            live.base + "/chat/completions", json={"model": "m", "messages": []}
        )
        self.assertEqual(response.code, 502)
        error = (await response.json())["error"]
        self.assertEqual(error["code"], "upstream_unavailable")
        self.assertNotIn("sk-upstream-secret", orjson.dumps(error).decode())
        ready = await live.http.get(live.base.replace("/v1", "/health/ready"))
        self.assertEqual(ready.code, 503)
        await ready.content()

    async def test_health_routes(self) -> None:
        live = LiveGateway(self)
        root = live.base.replace("/v1", "")
        live_ = await live.http.get(root + "/health/live")
        self.assertEqual((live_.code, await live_.json()), (200, {"status": "ok"}))
        ready = await live.http.get(root + "/health/ready")
        self.assertEqual(ready.code, 200)
        await ready.content()
        details = await (await live.http.get(root + "/health")).json()
        self.assertEqual(details["upstreams"]["main"]["reachable"], True)
        self.assertIn("version", details)
        self.assertGreaterEqual(details["uptime_seconds"], 0)

    async def test_models_are_listed_from_the_upstream(self) -> None:
        live = LiveGateway(self)
        models = await (await live.http.get(live.base + "/models")).json()
        self.assertEqual([m["id"] for m in models["data"]], ["fake-model"])
        await (await live.http.get(live.base + "/models")).content()
        # The second listing came from the cache.
        self.assertEqual(sum(r.path == b"/v1/models" for r in live.upstream.received), 1)


class RawClient(Protocol):
    """A client that can stop reading, as a slow consumer would."""

    def __init__(self) -> None:
        self.received = 0
        self.ready: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.ready.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)


class BackpressureTests(TestCase):
    async def test_slow_client_bounds_what_the_upstream_generates(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(live.upstream.endless)
        client = RawClient()
        factory = ClientFactory.forProtocol(lambda: client)
        connector = reactor.connectTCP("127.0.0.1", live.port.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        await client.ready
        client.transport.pauseProducing()  # never read: the slowest client
        body = orjson.dumps({"model": "m", "messages": [], "stream": True})
        client.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        self.assertTrue(await until(lambda: live.upstream.streams))
        stream = live.upstream.streams[0]

        # Generation must stop once the buffers between are full, however
        # long the client stalls: the total is bounded by socket buffers.
        async def settled() -> int:
            last = -1
            for _ in range(50):  # at most 50 x 0.2 s
                if stream.produced == last:
                    return last
                last = stream.produced
                await deferLater(reactor, 0.2, lambda: None)
            return -1

        stalled = await settled()
        self.assertNotEqual(stalled, -1, "the upstream never stopped generating")
        self.assertTrue(stream.paused)
        self.assertLess(stalled, 48 * 1024 * 1024)
        # Reading again lets it flow again.
        client.transport.resumeProducing()
        self.assertTrue(await until(lambda: stream.produced > stalled + 1024 * 1024))
        # And leaving stops it for good.
        connector.disconnect()
        self.assertTrue(await until(lambda: stream.stopped))
        self.assertTrue(await until(lambda: live.upstream.received[0].lost))


class OpenAISDKTests(TestCase):
    """The official openai SDK is the client, unchanged but for base_url."""

    def client(self, live: LiveGateway) -> Any:
        from openai import OpenAI

        client = OpenAI(base_url=live.base, api_key="client-key", max_retries=0, timeout=10)
        self.addCleanup(client.close)
        return client

    async def test_chat_completions_create(self) -> None:
        live = LiveGateway(self)
        client = self.client(live)
        completion = await deferToThread(
            client.chat.completions.create,
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
        )
        self.assertEqual(completion.choices[0].message.content, "Hello from the fake upstream")
        self.assertEqual(completion.usage.total_tokens, 10)

    async def test_chat_completions_create_streamed(self) -> None:
        live = LiveGateway(self)
        client = self.client(live)

        def consume() -> tuple[str, Any]:
            text, usage = "", None
            stream = client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                if chunk.usage:
                    usage = chunk.usage
            return text, usage

        text, usage = await deferToThread(consume)
        self.assertEqual(text, "Hello from the fake upstream")
        self.assertEqual(usage.completion_tokens, 5)
        self.assertTrue(live.upstream.received[0].body["stream"])

    async def test_upstream_error_reaches_the_sdk_as_its_exception(self) -> None:
        from openai import RateLimitError

        live = LiveGateway(self)

        def limited(request: Any, body: Any) -> bytes:
            request.setResponseCode(429)
            request.setHeader(b"retry-after", b"3")
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "requests",
                        "param": None,
                        "code": "rate_limit_exceeded",
                    }
                }
            )

        live.upstream.script.append(limited)
        client = self.client(live)
        call = deferToThread(client.chat.completions.create, model="m", messages=[])
        failure = await self.assertFailure(call, RateLimitError)
        self.assertEqual(failure.status_code, 429)
        self.assertEqual(failure.response.headers["retry-after"], "3")
