"""
A client that leaves is not an upstream failure: the attempt in flight is
aborted and nothing else happens (no retry, no failover, no breaker
failure), the access line says C{client_gone}, and a half-open breaker
whose probe is cancelled lets the next request probe.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.protocol import ClientFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.config import parse
from codexgw.service import Gateway
from codexgw.upstream.failover import CLOSED, HALF_OPEN, OPEN
from tests.harness import UPSTREAM_URL, Harness, makeConfig
from tests.http.test_bridge_accounting import _AccessLog
from tests.integration.test_integration import RawClient, serve, until

CHAT = b"/v1/chat/completions"
SSE = {b"content-type": b"text/event-stream"}


def twoUpstreams(**extra: Any) -> Any:
    """C{main} with retries and C{backup} as its fallback."""
    return parse(
        {
            "store": {"backend": "none"},
            "upstreams": {
                "main": {
                    "base_url": UPSTREAM_URL,
                    "retries": {"max_attempts": 3, "backoff_base": 0.1},
                },
                "backup": {"base_url": "http://backup.test/v1", "retries": {"max_attempts": 1}},
            },
            "default_upstream": "main",
            "models": [{"match": "*", "upstream": "main", "fallbacks": ["backup"]}],
            **extra,
        },
        "test.yaml",
        {},
    )


class ClientGoneTests(_AccessLog, SynchronousTestCase):
    def setUp(self) -> None:
        self.access = self.captureAccess()

    def leaveBeforeTheAnswer(self, h: Harness, path: bytes, body: dict[str, Any]) -> None:
        client = h.connect()
        client.post(path, body)
        self.assertEqual(len(h.sent), 1)
        client.disconnect()
        h.reactor.advance(30)  # any retry or failover would have run by now

    def assertOnlyTheAttemptWasAborted(self, h: Harness) -> None:
        self.assertEqual(len(h.sent), 1)
        self.assertTrue(h.sent[0].cancelled)
        for breaker in h.gateway.breakers.values():
            self.assertEqual((breaker.state, breaker.failures), (CLOSED, 0))
        [line] = self.access
        self.assertEqual(line["outcome"], "client_gone")
        self.assertIsNone(
            h.metric("codexgw_upstream_errors_total", upstream="main", kind="connect")
        )
        self.assertIsNone(h.metric("codexgw_retries_total", upstream="main", reason="connect"))

    def test_relayed_request_is_not_retried_nor_failed_over(self) -> None:
        h = Harness(twoUpstreams())
        self.leaveBeforeTheAnswer(h, CHAT, {"model": "m", "messages": [], "stream": True})
        self.assertOnlyTheAttemptWasAborted(h)
        self.assertEqual(h.metric("codexgw_cancellations_total", route="/v1/chat/completions"), 1.0)

    def test_bridged_request_is_not_retried_nor_failed_over(self) -> None:
        h = Harness(twoUpstreams())
        self.leaveBeforeTheAnswer(h, b"/v1/responses", {"model": "m", "input": "hi"})
        self.assertOnlyTheAttemptWasAborted(h)

    def test_a_cancelled_half_open_probe_frees_the_slot(self) -> None:
        h = Harness(makeConfig({"server": {"circuit_threshold": 1, "circuit_cooldown": 10}}))
        breaker = h.gateway.breakers["main"]
        breaker.failure()
        self.assertEqual(breaker.state, OPEN)
        h.reactor.advance(11)
        self.leaveBeforeTheAnswer(h, CHAT, {"model": "m", "messages": []})
        self.assertEqual(breaker.state, HALF_OPEN)
        # The next client is let through as the probe, and its answer closes it.
        client = h.connect()
        client.post(CHAT, {"model": "m", "messages": []})
        self.assertEqual(len(h.sent), 2)
        h.sent[1].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(client.response()[0], 200)
        self.assertEqual(breaker.state, CLOSED)

    def test_only_the_upstream_tried_takes_the_probe(self) -> None:
        """A healthy first candidate leaves a fallback's half-open slot alone."""
        h = Harness(twoUpstreams())
        backup = h.gateway.breakers["backup"]
        for _ in range(h.gateway.config.circuit_threshold):
            backup.failure()
        h.reactor.advance(h.gateway.config.circuit_cooldown + 1)
        client = h.connect()
        client.post(CHAT, {"model": "m", "messages": []})
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(client.response()[0], 200)
        self.assertEqual(backup.state, OPEN)
        self.assertTrue(backup.available())


class SilentUpstream(Resource):
    """Takes requests and never answers; counts them and sees them dropped."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.dropped = 0

    def render(self, request: Request) -> Any:
        self.attempts += 1

        def lost(_: object) -> None:
            self.dropped += 1

        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET


class RealAgentTests(_AccessLog, TestCase):
    """The same, with twisted.web's real Agent on loopback."""

    async def test_a_client_leaving_aborts_one_attempt_and_nothing_else(self) -> None:
        access = self.captureAccess()

        def mine() -> list[dict[str, Any]]:
            # Only this test's lines: an exchange another test left behind
            # may be finished (and logged) whenever it is collected.
            return [line for line in access if line["request_id"].startswith("leaving-")]

        main, backup = SilentUpstream(), SilentUpstream()
        mainPort = serve(self, main).getHost().port
        backupPort = serve(self, backup).getHost().port
        config = parse(
            {
                "store": {"backend": "none"},
                "upstreams": {
                    "main": {
                        "base_url": f"http://127.0.0.1:{mainPort}/v1",
                        "retries": {"max_attempts": 3, "backoff_base": 0.01},
                        "timeouts": {"first_byte": 30},
                    },
                    "backup": {"base_url": f"http://127.0.0.1:{backupPort}/v1"},
                },
                "default_upstream": "main",
                "models": [{"match": "*", "upstream": "main", "fallbacks": ["backup"]}],
                "server": {"circuit_threshold": 1},
            },
            "test.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        port = serve(self, gateway.resource).getHost().port
        for round in range(3):  # past the breaker's threshold of one
            client = RawClient()
            connector = reactor.connectTCP(
                "127.0.0.1", port, ClientFactory.forProtocol(lambda c=client: c)
            )
            await client.ready
            body = orjson.dumps({"model": "m", "messages": [], "stream": True})
            client.transport.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: leaving-%d\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (round, len(body))
                + body
            )
            self.assertTrue(await until(lambda r=round: main.attempts == r + 1))
            connector.disconnect()
            self.assertTrue(await until(lambda r=round: main.dropped == r + 1))
            self.assertTrue(await until(lambda r=round: len(mine()) == r + 1))
        # Give any wrongly scheduled retry or failover time to show up.
        await until(lambda: main.attempts > 3 or backup.attempts > 0, timeout=0.5)
        self.assertEqual((main.attempts, backup.attempts), (3, 0))
        breaker = gateway.breakers["main"]
        self.assertEqual((breaker.state, breaker.failures), (CLOSED, 0))
        self.assertEqual([line["outcome"] for line in mine()], ["client_gone"] * 3)
