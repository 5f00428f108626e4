"""
Retries before the first byte: through the whole gateway, on a memory clock.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from codexgw.upstream.retry import RetryPolicy
from tests.harness import Harness, makeConfig

CHAT = b"/v1/chat/completions"
JSON = {b"content-type": b"application/json"}
OK = b'{"id": "chatcmpl-1", "choices": []}'
BUSY = b'{"error": {"message": "busy", "type": "server_error", "param": null, "code": null}}'


class BackoffTests(SynchronousTestCase):
    def test_backoff_doubles_up_to_the_cap_with_full_jitter(self) -> None:
        policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0)
        self.assertEqual(
            [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3, 4)], [0.5, 1.0, 2.0, 3.0]
        )
        self.assertEqual(policy.backoff(3, lambda: 0.25), 0.5)


class GatewayRetryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(
            makeConfig(
                retries={
                    "max_attempts": 3,
                    "backoff_base": 1,
                    "backoff_max": 4,
                    "retry_after_max": 20,
                }
            )
        )
        self.client = self.h.connect()
        self.client.post(CHAT, {"model": "m1", "messages": []})

    def test_429_with_retry_after_waits_that_long_then_succeeds(self) -> None:
        self.h.sent[0].respond(429, {**JSON, b"retry-after": b"7"}, BUSY)
        self.h.reactor.advance(6.9)
        self.assertEqual(len(self.h.sent), 1)
        self.h.reactor.advance(0.1)
        self.assertEqual(len(self.h.sent), 2)
        self.h.sent[1].respond(200, JSON, OK)
        self.assertEqual(self.client.response()[0], 200)
        self.assertEqual(self.client.response()[2], OK)
        self.assertEqual(
            self.h.metric("codexgw_upstream_retries_total", upstream="main", reason="429"), 1
        )

    def test_500_then_success(self) -> None:
        self.h.sent[0].respond(500, JSON, BUSY)
        self.h.reactor.advance(1)
        self.h.sent[1].respond(200, JSON, OK)
        self.assertEqual(self.client.response()[0], 200)

    def test_500_forever_gives_up_after_the_attempts_with_the_upstream_answer(self) -> None:
        for i in range(3):
            self.h.sent[i].respond(500, JSON, BUSY)
            self.h.reactor.advance(4)
        self.assertEqual(len(self.h.sent), 3)
        status, _, body = self.client.response()
        self.assertEqual((status, body), (500, BUSY))

    def test_connection_refused_then_success(self) -> None:
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        self.h.reactor.advance(1)
        self.h.sent[1].respond(200, JSON, OK)
        self.assertEqual(self.client.response()[0], 200)
        self.assertEqual(
            self.h.metric("codexgw_upstream_retries_total", upstream="main", reason="connect"), 1
        )

    def test_client_errors_are_not_retried(self) -> None:
        self.h.sent[0].respond(400, JSON, BUSY)
        self.assertEqual(self.client.response()[0], 400)
        self.h.reactor.advance(60)
        self.assertEqual(len(self.h.sent), 1)

    def test_retry_after_beyond_the_cap_is_handed_to_the_client(self) -> None:
        self.h.sent[0].respond(429, {**JSON, b"retry-after": b"3600"}, BUSY)
        status, headers, _ = self.client.response()
        self.assertEqual((status, headers[b"retry-after"]), (429, b"3600"))
        self.assertEqual(len(self.h.sent), 1)

    def test_client_leaving_during_backoff_stops_the_retries(self) -> None:
        self.h.sent[0].respond(503, JSON, BUSY)
        self.client.disconnect()
        self.h.reactor.advance(60)
        self.assertEqual(len(self.h.sent), 1)
        self.assertEqual(
            self.h.metric("codexgw_cancellations_total", route="/v1/chat/completions"), 1
        )
