"""
Every 429 the gateway sends carries C{Retry-After}: the Codex CLI never
retries a 429 without it, and with it waits exactly that long. The value is
the upstream's when it gave one, else the gateway's own estimate.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.upstream.retry import RetryPolicy, retryAfterEstimate
from tests.fakes.agent import FakeResponse
from tests.harness import Harness, makeConfig
from tests.stream.test_stream_faults import events

CHAT = b"/v1/chat/completions"
JSON = {b"content-type": b"application/json"}
LIMITED = orjson.dumps({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})


class EstimateTests(SynchronousTestCase):
    def estimate(self, headers: dict[bytes, bytes], policy: RetryPolicy | None = None) -> int:
        return retryAfterEstimate(FakeResponse(429, headers, 0), policy or RetryPolicy())

    def test_the_upstreams_own_value_wins(self) -> None:
        self.assertEqual(self.estimate({b"retry-after": b"7"}), 7)
        self.assertEqual(self.estimate({b"retry-after-ms": b"1500"}), 2)

    def test_the_reset_of_the_window_that_ran_out(self) -> None:
        headers = {
            b"x-ratelimit-remaining-requests": b"0",
            b"x-ratelimit-reset-requests": b"6m0s",
            b"x-ratelimit-remaining-tokens": b"100",
            b"x-ratelimit-reset-tokens": b"20ms",
        }
        self.assertEqual(self.estimate(headers), 360)

    def test_else_the_gateways_backoff_and_never_zero(self) -> None:
        self.assertEqual(self.estimate({}, RetryPolicy(max_attempts=3, backoff_base=0.5)), 2)
        self.assertEqual(self.estimate({}, RetryPolicy(max_attempts=1, backoff_base=0.1)), 1)
        self.assertEqual(self.estimate({b"retry-after": b"0"}), 1)


class RouteTests(SynchronousTestCase):
    def limited(self, h: Harness, path: bytes, body: dict[str, Any], **headers: bytes) -> Any:
        client = h.connect()
        client.post(path, body)
        h.sent[-1].respond(429, {**JSON, **{k.encode(): v for k, v in headers.items()}}, LIMITED)
        return client.response()

    def test_relayed_429_without_the_header_gets_the_gateways_estimate(self) -> None:
        h = Harness(makeConfig(retries={"max_attempts": 1, "backoff_base": 3}))
        status, headers, _ = self.limited(h, CHAT, {"model": "m", "messages": []})
        self.assertEqual((status, headers[b"retry-after"]), (429, b"3"))

    def test_relayed_429_keeps_the_upstreams_value(self) -> None:
        h = Harness()
        status, headers, _ = self.limited(
            h, CHAT, {"model": "m", "messages": []}, **{"retry-after": b"11"}
        )
        self.assertEqual((status, headers[b"retry-after"]), (429, b"11"))

    def test_after_the_gateways_own_retries_the_client_still_learns_when(self) -> None:
        h = Harness(makeConfig(retries={"max_attempts": 2, "backoff_base": 0.5}))
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi"})
        h.sent[0].respond(429, JSON, LIMITED)
        h.reactor.advance(1)
        h.sent[1].respond(429, JSON, LIMITED)
        status, headers, body = client.response()
        self.assertEqual((status, headers[b"retry-after"]), (429, b"1"))
        error = orjson.loads(body)["error"]
        self.assertEqual(error["code"], "rate_limit_exceeded")
        self.assertIn("try again in 1s", error["message"])

    def test_reverse_bridge_429_has_it(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        status, headers, _ = self.limited(
            h, CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        self.assertEqual(status, 429)
        self.assertTrue(int(headers[b"retry-after"]) >= 1)

    def test_a_stream_already_started_says_when_in_its_failure(self) -> None:
        """Codex reads the wait from a rate_limit_exceeded failure's message."""
        h = Harness(
            makeConfig(
                {"server": {"heartbeat_interval": 1}},
                retries={"max_attempts": 1, "backoff_base": 4},
            )
        )
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi", "stream": True})
        h.reactor.advance(1.5)  # the gateway answered 200 and keeps the client alive
        h.sent[0].respond(429, JSON, LIMITED)
        evs = events(client.response()[2])
        self.assertEqual(evs[-1]["type"], "response.failed")
        error = evs[-1]["response"]["error"]
        self.assertEqual(error["code"], "rate_limit_exceeded")
        self.assertIn("try again in 4s", error["message"])

    def test_the_gateways_own_limit_has_it(self) -> None:
        h = Harness(
            makeConfig(
                {
                    "auth": {
                        "keys": [
                            {
                                "name": "a",
                                "key": "key-a-123456",
                                "limits": {"requests_per_minute": 1},
                            }
                        ]
                    }
                }
            )
        )
        auth = {b"authorization": b"Bearer key-a-123456"}
        first = h.connect()
        first.post(CHAT, {"model": "m", "messages": []}, auth)
        second = h.connect()
        second.post(CHAT, {"model": "m", "messages": []}, auth)
        status, headers, _ = second.response()
        self.assertEqual(status, 429)
        self.assertTrue(int(headers[b"retry-after"]) >= 1)


class WholeSecondsTests(SynchronousTestCase):
    """Codex parses Retry-After only as whole seconds; 0 or 1.5 make it give up."""

    def relayed(self, status: int, value: bytes, path: bytes = CHAT) -> bytes:
        h = Harness()
        client = h.connect()
        body: dict[str, Any] = {"model": "m", "messages": []}
        if path != CHAT:
            body = {"model": "m", "input": "hi"}
        client.post(path, body)
        h.sent[-1].respond(status, {**JSON, b"retry-after": value}, LIMITED)
        return client.response()[1][b"retry-after"]

    def test_fractions_are_rounded_up_and_zero_is_one(self) -> None:
        for path in (CHAT, b"/v1/responses"):
            self.assertEqual(self.relayed(429, b"1.5", path), b"2")
            self.assertEqual(self.relayed(429, b"0", path), b"1")
            self.assertEqual(self.relayed(503, b"2.2", path), b"3")

    def test_an_http_date_becomes_the_seconds_until_then(self) -> None:
        import time
        from email.utils import formatdate

        value = self.relayed(429, formatdate(time.time() + 30, usegmt=True).encode())
        self.assertIn(int(value), range(28, 32))

    def test_the_message_agrees_with_the_header(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi"})
        h.sent[-1].respond(429, {**JSON, b"retry-after": b"1.5"}, LIMITED)
        status, headers, body = client.response()
        self.assertEqual(headers[b"retry-after"], b"2")
        self.assertIn("try again in 2s", orjson.loads(body)["error"]["message"])
