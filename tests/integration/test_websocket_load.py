"""
Many WebSocket clients at once over loopback: 200 sockets, each doing three
turns that continue one another, all open together, against a gateway
bridging onto a Chat upstream. The clients are Twisted's own
(L{twisted.web.websocket.WebSocketClientEndpoint}), on the same reactor as
the gateway and the upstream, so the test measures the gateway's own
overhead, not a thread pool's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport

from tests.dialects.oracle import check_stream
from tests.integration.test_integration import LiveGateway, until

SOCKETS = 200
TURNS = 3
# The whole run, connects included; on two shared cores it takes a few seconds.
DEADLINE = 60.0

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


class TurnClient:
    """
    One socket: sends turn 0, and on each terminal event the next turn,
    continuing the previous response; C{done} fires with every turn's events.
    """

    transport: WebSocketTransport

    def __init__(self, n: int) -> None:
        self.n = n
        self.turns: list[list[dict[str, Any]]] = []
        self.current: list[dict[str, Any]] = []
        self.done: Deferred[list[list[dict[str, Any]]]] = Deferred()
        self.closed = False
        self.closing = False

    def prompt(self, turn: int) -> str:
        return f"socket {self.n} turn {turn}"

    def send(self, previous: str | None) -> None:
        frame: dict[str, Any] = {
            "type": "response.create",
            "model": "m1",
            "store": False,
            "input": [{"role": "user", "content": self.prompt(len(self.turns))}],
        }
        if previous is not None:
            frame["previous_response_id"] = previous
        self.transport.sendTextMessage(orjson.dumps(frame).decode())

    # WebSocketProtocol.

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.send(None)

    def pongReceived(self, payload: bytes) -> None:
        pass

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.fail(AssertionError(f"socket {self.n}: a binary frame"))

    def textMessageReceived(self, message: str) -> None:
        event = orjson.loads(message)
        self.current.append(event)
        if event["type"] not in TERMINAL:
            return
        self.turns.append(self.current)
        self.current = []
        if event["type"] != "response.completed":
            self.fail(AssertionError(f"socket {self.n} turn {len(self.turns) - 1}: {event}"))
        elif len(self.turns) < TURNS:
            self.send(event["response"]["id"])
        else:
            self.close()
            self.done.callback(self.turns)

    def connectionLost(self, reason: Failure) -> None:
        self.closed = True
        if not self.done.called:
            self.done.errback(reason)

    def fail(self, error: Exception) -> None:
        if not self.done.called:
            self.done.errback(error)
        self.close()

    def close(self) -> None:
        if not self.closing and not self.closed:
            self.closing = True
            self.transport.loseConnection()


class Clients:
    def __init__(self) -> None:
        self.made: list[TurnClient] = []

    def buildProtocol(self, url: str) -> TurnClient:
        client = TurnClient(len(self.made))
        self.made.append(client)
        return client


def text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


class ConcurrentSocketsTests(TestCase):
    timeout = DEADLINE + 30

    async def test_200_sockets_each_doing_3_continued_turns_all_complete(self) -> None:
        live = LiveGateway(self)
        url = f"ws://127.0.0.1:{live.port.getHost().port}/v1/responses"
        endpoint = WebSocketClientEndpoint.new(reactor, url)
        factory = Clients()
        started = time.monotonic()

        async def one() -> list[list[dict[str, Any]]]:
            client = await endpoint.connect(factory)
            return await client.done

        # Every socket is opened at once; each runs its turns on its own.
        runs = [Deferred.fromCoroutine(one()) for _ in range(SOCKETS)]
        everything = gatherResults(runs, consumeErrors=True)
        timer = reactor.callLater(DEADLINE, everything.cancel)
        try:
            results = await everything
        finally:
            if timer.active():
                timer.cancel()
            # Whatever is left open is closed, so the reactor is left clean.
            for client in factory.made:
                if hasattr(client, "transport"):
                    client.close()
            await DeferredList(runs, consumeErrors=True)
        elapsed = time.monotonic() - started
        self.assertEqual(len(results), SOCKETS)
        self.assertLess(elapsed, DEADLINE)

        # Every turn is a whole stream, its sequence numbers its own.
        for turns in results:
            self.assertEqual(len(turns), TURNS)
            for events in turns:
                self.assertEqual([e["sequence_number"] for e in events], list(range(len(events))))
                self.assertEqual(events[-1]["response"]["status"], "completed")
        # The oracles on a sample (they cost more than the gateway does).
        for turns in results[:: SOCKETS // 10]:
            for events in turns:
                check_stream(events)

        # The upstream saw each socket's conversation grow, never another's.
        chats = [r.body for r in live.upstream.received if r.path == b"/v1/chat/completions"]
        self.assertEqual(len(chats), SOCKETS * TURNS)
        answer = "Hello from the fake upstream"
        conversations = {
            tuple(text(m) for m in body["messages"])
            for body in chats
            if len(body["messages"]) == 2 * TURNS - 1
        }
        self.assertEqual(
            conversations,
            {
                (
                    f"socket {n} turn 0",
                    answer,
                    f"socket {n} turn 1",
                    answer,
                    f"socket {n} turn 2",
                )
                for n in range(SOCKETS)
            },
        )
        # Every socket is accounted closed, with its turns.
        metric = live.gateway.metrics.registry.get_sample_value
        self.assertTrue(await until(lambda: metric("codexgw_websockets_open") == 0, timeout=5))
        self.assertEqual(metric("codexgw_websocket_turns_count"), SOCKETS)
        self.assertEqual(metric("codexgw_websocket_turns_sum"), SOCKETS * TURNS)
        print(f"\n{SOCKETS} sockets x {TURNS} turns: {elapsed:.2f} s", end=" ")
