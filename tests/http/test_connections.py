"""
What a client's connection may hold, and what it hears when it breaks the
rules: the request deadline (C{server.request_timeout}), the connection cap
(C{server.max_connections}), and HTTP framing errors answered in OpenAI's
error shape. Unit tests drive L{codexgw.http.site.GatewayChannel} on a
StringTransport with a memory clock; two tests use real loopback sockets.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw.config import parse
from codexgw.http.site import STANDARD_HEADERS, GatewaySite, connectionCap
from codexgw.service import Gateway
from tests.harness import ClientConnection, Harness, makeConfig
from tests.integration.test_integration import httpClient, serve, until

CHAT = b"/v1/chat/completions"
SSE = {b"content-type": b"text/event-stream"}


def harness(**server: Any) -> Harness:
    return Harness(makeConfig({"server": server}))


def drip(client: ClientConnection, data: bytes) -> None:
    client.channel.dataReceived(data)


class ErrorAnswerMixin:
    """Checks on an answer the channel wrote itself before closing."""

    def assertClosedWithError(
        self, client: ClientConnection, status: int, code: str
    ) -> dict[str, Any]:
        test: Any = self
        got, headers, body = client.response()
        test.assertEqual(got, status)
        test.assertEqual(headers[b"content-type"], b"application/json")
        test.assertEqual(headers[b"connection"], b"close")
        test.assertEqual(headers[b"content-length"], b"%d" % len(body))
        for name, value in STANDARD_HEADERS.items():
            test.assertEqual(headers[name], value)
        error = orjson.loads(body)["error"]
        test.assertEqual(sorted(error), ["code", "message", "param", "type"])
        test.assertEqual(error["code"], code)
        test.assertTrue(client.transport.disconnecting)
        return dict(error)


class DeadlineTests(ErrorAnswerMixin, SynchronousTestCase):
    def test_a_request_trickled_a_byte_a_second_gets_408_at_the_deadline(self) -> None:
        h = harness(request_timeout=10)
        client = h.connect()
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\nX-Pad: " + b"a" * 50
        for i in range(10):
            # Each byte would reset twisted.web's idle timer; not the deadline.
            self.assertFalse(client.transport.disconnecting)
            self.assertEqual(client.raw, b"")
            drip(client, head[i : i + 1])
            h.reactor.advance(1)
        error = self.assertClosedWithError(client, 408, "request_timeout")
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertIn("10 seconds", error["message"])
        drip(client, head[10:])  # what still arrives is dropped
        self.assertEqual(client.response()[0], 408)

    def test_a_body_that_does_not_arrive_in_time_gets_408(self) -> None:
        h = harness(request_timeout=10)
        client = h.connect()
        drip(
            client,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        h.reactor.advance(9.9)
        self.assertEqual(client.raw, b"")
        h.reactor.advance(0.1)
        self.assertClosedWithError(client, 408, "request_timeout")
        self.assertEqual(h.sent, [])

    def test_a_connection_that_sends_nothing_is_closed_without_a_word(self) -> None:
        h = harness(request_timeout=10)
        client = h.connect()
        h.reactor.advance(10)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.raw, b"")

    def test_the_next_request_on_a_kept_alive_connection_gets_its_own_deadline(self) -> None:
        h = harness(request_timeout=10)
        client = h.connect()
        client.send(b"GET", b"/health/live")
        self.assertEqual(client.response()[0], 200)
        client.transport.clear()
        h.reactor.advance(5)
        drip(client, b"GET /health/live HTTP/1.1\r\n")
        h.reactor.advance(8)  # 13 s since the connection opened, 8 since this request began
        self.assertFalse(client.transport.disconnecting)
        h.reactor.advance(2)
        self.assertClosedWithError(client, 408, "request_timeout")

    def test_a_streamed_answer_is_never_cut_by_the_deadline(self) -> None:
        h = harness(request_timeout=10, heartbeat_interval=5)
        client = h.connect()
        client.post(CHAT, {"model": "m", "messages": [], "stream": True})
        upstream = h.sent[0].respond(200, SSE)
        upstream.send(b'data: {"choices": []}\n\n')
        for _ in range(12):  # a minute, six deadlines long
            h.reactor.advance(5)
        self.assertFalse(client.transport.disconnecting)
        upstream.send(b"data: [DONE]\n\n")
        upstream.end()
        status, _, body = client.response()
        self.assertEqual(status, 200)
        self.assertNotIn(b"request_timeout", body)
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"))

    def test_an_answer_that_takes_longer_than_the_deadline_is_delivered(self) -> None:
        h = harness(request_timeout=10)
        client = h.connect()
        client.post(CHAT, {"model": "m", "messages": []})
        h.reactor.advance(25)
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(client.response()[0], 200)
        self.assertFalse(client.transport.disconnecting)

    def test_zero_turns_the_deadline_off(self) -> None:
        h = harness(request_timeout=0)
        client = h.connect()
        for _ in range(120):
            drip(client, b"a")
            h.reactor.advance(1)
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(client.raw, b"")


class FramingTests(ErrorAnswerMixin, SynchronousTestCase):
    """What twisted.web answers with a bare 400, or a dropped connection."""

    def answer(self, data: bytes) -> ClientConnection:
        client = Harness().connect()
        drip(client, data)
        return client

    def test_an_oversized_header_block_is_431(self) -> None:
        headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 500) for i in range(40))
        client = self.answer(b"GET /health/live HTTP/1.1\r\nHost: gw.test\r\n" + headers + b"\r\n")
        error = self.assertClosedWithError(client, 431, "request_headers_too_large")
        self.assertIn("16384 bytes", error["message"])

    def test_one_header_line_longer_than_the_limit_is_431(self) -> None:
        client = self.answer(b"GET /health/live HTTP/1.1\r\nX-Pad: " + b"a" * 20000)
        self.assertClosedWithError(client, 431, "request_headers_too_large")

    def test_too_many_headers_is_431(self) -> None:
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(501))
        client = self.answer(b"GET /health/live HTTP/1.1\r\n" + headers + b"\r\n")
        error = self.assertClosedWithError(client, 431, "request_headers_too_large")
        self.assertIn("500 headers", error["message"])

    def test_a_content_length_that_is_no_number_is_400(self) -> None:
        client = self.answer(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 12a\r\n\r\n")
        error = self.assertClosedWithError(client, 400, "malformed_http_request")
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertIn("Content-Length", error["message"])

    def test_content_length_with_chunked_is_400(self) -> None:
        client = self.answer(
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        error = self.assertClosedWithError(client, 400, "malformed_http_request")
        self.assertIn("twice", error["message"])

    def test_garbage_chunked_framing_is_400(self) -> None:
        client = self.answer(
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n"
        )
        error = self.assertClosedWithError(client, 400, "malformed_http_request")
        self.assertIn("chunked", error["message"])

    def test_an_unknown_transfer_encoding_is_400(self) -> None:
        client = self.answer(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
        error = self.assertClosedWithError(client, 400, "malformed_http_request")
        self.assertIn("chunked", error["message"])

    def test_a_malformed_request_line_is_400(self) -> None:
        client = self.answer(b"NONSENSE\r\n\r\n")
        error = self.assertClosedWithError(client, 400, "malformed_http_request")
        self.assertIn("request line", error["message"])

    def test_well_framed_chunked_bodies_are_still_served(self) -> None:
        h = Harness()
        client = h.connect()
        body = orjson.dumps({"model": "m", "messages": []})
        drip(
            client,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n"
            % (len(body), body),
        )
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(client.response()[0], 200)


class ConnectionCapTests(ErrorAnswerMixin, SynchronousTestCase):
    def test_connections_past_the_cap_get_503_and_are_closed(self) -> None:
        h = harness(max_connections=2)
        first, second = h.connect(), h.connect()
        third = h.connect()
        error = self.assertClosedWithError(third, 503, "too_many_connections")
        self.assertEqual(error["type"], "server_error")
        self.assertEqual(third.response()[1][b"retry-after"], b"1")
        self.assertEqual((h.site.openConnections, h.site.refused), (2, 1))
        # The connections being served are untouched.
        first.send(b"GET", b"/health/live")
        self.assertEqual(first.response()[0], 200)
        self.assertFalse(second.transport.disconnecting)

    def test_a_closed_connection_makes_room(self) -> None:
        h = harness(max_connections=1)
        first = h.connect()
        refused = h.connect()
        refused.disconnect()  # a refused connection was never counted
        self.assertEqual(h.site.openConnections, 1)
        first.disconnect()
        self.assertEqual(h.site.openConnections, 0)
        again = h.connect()
        again.send(b"GET", b"/health/live")
        self.assertEqual(again.response()[0], 200)

    def test_zero_turns_the_cap_off(self) -> None:
        h = harness(max_connections=0)
        self.assertIsNone(h.site.maxConnections)
        clients = [h.connect() for _ in range(50)]
        self.assertFalse(any(c.transport.disconnecting for c in clients))

    def test_the_cap_fits_the_open_file_limit(self) -> None:
        self.assertEqual(connectionCap(10000, 20000), 9968)
        self.assertEqual(connectionCap(10000, 1024), 480)
        self.assertEqual(connectionCap(100, 1024), 100)
        self.assertEqual(connectionCap(10000, None), 10000)
        self.assertEqual(connectionCap(10000, 10), 1)
        self.assertIsNone(connectionCap(0, 1024))

    def test_make_site_wires_the_server_keys(self) -> None:
        gateway = Harness(makeConfig({"server": {"request_timeout": 5}})).gateway
        site = gateway.makeSite(fileLimit=1024)
        self.assertEqual((site.requestTimeout, site.maxConnections), (5.0, 480))
        self.assertEqual(gateway.makeSite(fileLimit=100000).maxConnections, 10000)


class Raw(Protocol):
    """A raw TCP client: what it was sent, and how the connection ended."""

    def __init__(self, send: bytes = b"") -> None:
        self.toSend = send
        self.received = b""
        self.reason: Failure | None = None
        self.closedAt: float | None = None
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.openedAt = time.monotonic()
        if self.toSend:
            self.transport.write(self.toSend)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.reason = reason
        self.closedAt = time.monotonic()
        self.done.callback(None)


class LiveSite:
    """A gateway on loopback port 0 with a fake upstream; stopped by cleanup."""

    def __init__(self, test: TestCase, **server: Any) -> None:
        from tests.fakes.chat_upstream import FakeChatUpstream

        upstreamPort = serve(test, FakeChatUpstream())
        config = parse(
            {
                "upstreams": {
                    "main": {
                        "base_url": f"http://127.0.0.1:{upstreamPort.getHost().port}/v1",
                        "retries": {"max_attempts": 1},
                    }
                },
                "store": {"backend": "none"},
                "server": server,
            },
            "test.yaml",
            {},
        )
        self.gateway = Gateway(config)
        test.addCleanup(self.gateway.close)
        self.site: GatewaySite = self.gateway.makeSite()
        self.factory = WrappingFactory(self.site)
        self.port = reactor.listenTCP(0, self.factory, backlog=512, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = httpClient(test)
        self.clients: list[Raw] = []
        test.addCleanup(self.stop)

    async def connect(self, send: bytes = b"") -> Raw:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = await connectProtocol(endpoint, Raw(send))
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        for client in self.clients:
            if client.reason is None and client.transport is not None:
                client.transport.abortConnection()  # type: ignore[attr-defined]
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()
        await until(lambda: not self.factory.protocols, timeout=3)


TRICKLE = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\nX-Pad: " + b"a" * 200


class SlowlorisTests(TestCase):
    """Real sockets on loopback, a few seconds at most."""

    timeout = 30

    async def test_trickling_connections_are_closed_by_the_deadline_while_others_are_served(
        self,
    ) -> None:
        live = LiveSite(self, request_timeout=1)
        tricklers = await gatherResults(
            [Deferred.fromCoroutine(live.connect()) for _ in range(300)]
        )
        sent = 0

        def trickle() -> None:
            nonlocal sent
            for client in tricklers:
                if client.reason is None:
                    client.transport.write(TRICKLE[sent : sent + 1])  # type: ignore[union-attr]
            sent += 1

        dripping = LoopingCall(trickle)
        dripping.start(0.05)
        self.addCleanup(lambda: dripping.running and dripping.stop())
        started = time.monotonic()
        served = []
        while time.monotonic() - started < 1.5:
            begun = time.monotonic()
            live_ = await live.http.get(live.base + "/health/live")
            await live_.content()
            chat = await live.http.post(
                live.base + "/v1/chat/completions",
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            )
            await chat.content()
            served.append((live_.code, chat.code, time.monotonic() - begun))
        self.assertTrue(await until(lambda: all(c.reason for c in tricklers), timeout=5))
        dripping.stop()

        self.assertGreater(len(served), 3)
        self.assertEqual({(a, b) for a, b, _ in served}, {(200, 200)})
        self.assertLess(max(took for _, _, took in served), 1.0)
        for client in tricklers:
            self.assertTrue(client.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"))
            self.assertIn(b'"code":"request_timeout"', client.received)
            assert client.closedAt is not None
            self.assertGreaterEqual(client.closedAt - client.openedAt, 0.9)
        self.assertLess(max(c.closedAt or 0 for c in tricklers) - started, 4.0)
        self.assertTrue(await until(lambda: live.site.openConnections <= 2, timeout=3))

    async def test_the_cap_refuses_the_excess_with_a_clean_close(self) -> None:
        live = LiveSite(self, request_timeout=30, max_connections=3)
        holders = [await live.connect() for _ in range(3)]
        self.assertTrue(await until(lambda: live.site.openConnections == 3))
        refused = await live.connect(b"GET /health/live HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        await refused.done
        head, _, body = refused.received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
        self.assertIn(b"\r\nRetry-After: 1", head)
        self.assertIn(b"\r\nConnection: close", head)
        self.assertEqual(orjson.loads(body)["error"]["code"], "too_many_connections")
        assert refused.reason is not None
        self.assertIsInstance(refused.reason.value, ConnectionDone)  # a FIN, not a reset
        self.assertEqual(live.site.refused, 1)

        holders[0].transport.loseConnection()  # type: ignore[union-attr]
        self.assertTrue(await until(lambda: live.site.openConnections == 2))
        response = await live.http.get(live.base + "/health/live")
        self.assertEqual(response.code, 200)
        await response.content()
