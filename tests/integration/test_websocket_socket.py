"""
WebSocket mode over real loopback sockets: a wsproto client on a TCP
connection to a listening gateway, onto a real (fake) Chat upstream, for
what memory transports cannot show: TCP backpressure reaching the upstream,
a hang-up reaching it, and the drain's close code on the wire.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, TextMessage
from wsproto.events import Request as WSRequest

from tests.integration.test_integration import LiveGateway, until


class WSClient(Protocol):
    """A WebSocket client that shows what arrives, close codes included."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frames: list[dict[str, Any]] = []
        self.accepted: Deferred[None] = Deferred()
        self.closeCode: int | None = None
        self.lost: Deferred[None] = Deferred()
        self._text = ""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.ws.send(WSRequest(host="127.0.0.1", target="/v1/responses")))

    def dataReceived(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted.callback(None)
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.frames.append(orjson.loads(self._text))
                    self._text = ""
            elif isinstance(event, CloseConnection):
                self.closeCode = event.code
                assert self.transport is not None
                self.transport.write(self.ws.send(event.response()))
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)

    def create(self, **body: Any) -> None:
        assert self.transport is not None
        body = {"type": "response.create", "model": "m1", "input": "hi", **body}
        self.transport.write(self.ws.send(TextMessage(orjson.dumps(body).decode())))

    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]


async def connect(test: TestCase, live: LiveGateway) -> WSClient:
    client = WSClient()
    await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", live.port.getHost().port), client
    )
    test.addCleanup(lambda: client.transport.abortConnection() if client.transport else None)
    await client.accepted
    return client


class LoopbackTests(TestCase):
    timeout = 30

    async def test_a_turn_over_a_real_socket(self) -> None:
        live = LiveGateway(self)
        client = await connect(self, live)
        client.create(store=False)
        self.assertTrue(await until(lambda: "response.completed" in client.types(), timeout=10))
        text = client.frames[-1]["response"]["output"][0]["content"][0]["text"]
        self.assertEqual(text, "Hello from the fake upstream")

    async def test_a_reader_that_stops_pauses_the_upstream_and_a_hang_up_stops_it(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(live.upstream.endless)
        client = await connect(self, live)
        client.create(store=False)
        self.assertTrue(await until(lambda: bool(live.upstream.streams), timeout=10))
        stream = live.upstream.streams[0]
        assert client.transport is not None
        client.transport.pauseProducing()  # type: ignore[attr-defined]
        # The socket buffers fill, the gateway's transport pauses the relay,
        # and the relay pauses the upstream connection.
        self.assertTrue(await until(lambda: stream.paused, timeout=10))
        produced = stream.produced
        self.assertLess(produced, 64 * 1024 * 1024)
        client.transport.abortConnection()  # type: ignore[attr-defined]
        self.assertTrue(await until(lambda: stream.stopped, timeout=10))
        self.assertTrue(await until(lambda: not live.gateway.proxy.inflight, timeout=10))

    async def test_the_drain_closes_after_the_turn_with_1001(self) -> None:
        live = LiveGateway(self)
        gate: Deferred[None] = Deferred()

        def slow(request: Any, body: Any) -> Any:
            from twisted.web.server import NOT_DONE_YET

            from tests.fakes.chat_upstream import textStream

            def answer(_: object) -> None:
                request.setHeader(b"content-type", b"text/event-stream")
                request.write(b"".join(textStream(["late", " answer"])))
                request.finish()

            gate.addCallback(answer)
            return NOT_DONE_YET

        live.upstream.script.append(slow)
        client = await connect(self, live)
        client.create(store=False)
        self.assertTrue(await until(lambda: bool(live.upstream.received), timeout=10))
        drained = live.gateway.drain(10)
        self.assertIsNone(client.closeCode)
        gate.callback(None)
        await client.lost
        self.assertEqual(client.types()[-1], "response.completed")
        self.assertEqual(client.closeCode, 1001)
        await drained
