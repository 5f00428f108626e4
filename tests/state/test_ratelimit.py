"""
Rate limits: one suite run against the in-process limiter (memory clock) and
the Redis limiter (a real redis-server); the gateway's 429s with their
headers; two gateways sharing one limit through Redis; Redis going away.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw.config import parse
from codexgw.obs.metrics import GatewayMetrics
from codexgw.state.ratelimit import Limits, MemoryRateLimiter, RedisRateLimiter
from codexgw.state.redis import RedisClient
from tests.harness import Harness
from tests.redis_server import RedisServer

JSON = {b"content-type": b"application/json"}


class LimiterSuite:
    """Behaviour every limiter shares; C{self.limiter} and C{self.clock} come from setUp."""

    limiter: Any
    clock: Clock

    async def test_allows_up_to_the_limit_then_refuses_with_headers(self) -> None:
        limits = Limits(requests_per_minute=3)
        for remaining in (2, 1, 0):
            d = await self.limiter.check("alice", limits)
            self.assertTrue(d.allowed)
            self.assertEqual(d.headers[b"x-ratelimit-remaining-requests"], b"%d" % remaining)
            self.assertEqual(d.headers[b"x-ratelimit-limit-requests"], b"3")
        refused = await self.limiter.check("alice", limits)
        self.assertFalse(refused.allowed)
        self.assertGreaterEqual(refused.retry_after, 1)
        self.assertEqual(refused.headers[b"retry-after"], b"%d" % refused.retry_after)
        self.assertTrue(refused.headers[b"x-ratelimit-reset-requests"].endswith(b"s"))

    async def test_keys_are_counted_apart(self) -> None:
        limits = Limits(requests_per_minute=1)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)
        self.assertTrue((await self.limiter.check("bob", limits)).allowed)
        self.assertFalse((await self.limiter.check("alice", limits)).allowed)

    async def test_the_next_window_starts_afresh(self) -> None:
        limits = Limits(requests_per_minute=1)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)
        self.assertFalse((await self.limiter.check("alice", limits)).allowed)
        self.clock.advance(60)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)

    async def test_spent_token_budget_refuses_until_the_window_turns(self) -> None:
        limits = Limits(tokens_per_minute=100)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)
        await self.limiter.record("alice", limits, 60)
        d = await self.limiter.check("alice", limits)
        self.assertTrue(d.allowed)
        self.assertEqual(d.headers[b"x-ratelimit-remaining-tokens"], b"40")
        await self.limiter.record("alice", limits, 60)
        self.assertFalse((await self.limiter.check("alice", limits)).allowed)
        self.clock.advance(60)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)


class MemoryLimiterTests(LimiterSuite, TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000 * 60 + 1)
        self.limiter = MemoryRateLimiter(self.clock)


class RedisLimiterTests(LimiterSuite, TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self)
        self.clock = Clock()  # window arithmetic on a clock we move; Redis is real
        self.clock.advance(1000 * 60 + 1)
        self.client = RedisClient(reactor, self.server.url)
        self.addCleanup(self.client.close)
        self.limiter = RedisRateLimiter(self.client, self.clock)

    async def test_two_gateways_share_one_limit(self) -> None:
        other = RedisClient(reactor, self.server.url)
        self.addCleanup(other.close)
        second = RedisRateLimiter(other, self.clock)
        limits = Limits(requests_per_minute=3)
        results = []
        for limiter in (self.limiter, second, self.limiter, second):
            results.append((await limiter.check("team", limits)).allowed)
        self.assertEqual(results, [True, True, True, False])

    async def test_redis_away_fails_open_and_says_so(self) -> None:
        metrics = GatewayMetrics()
        client = RedisClient(reactor, self.server.url, timeout=0.5)
        self.addCleanup(client.close)
        limiter = RedisRateLimiter(client, self.clock, "open", metrics=metrics)
        self.server.stop()
        decision = await limiter.check("alice", Limits(requests_per_minute=1))
        self.assertTrue(decision.allowed)
        registry = metrics.registry
        self.assertEqual(registry.get_sample_value("codexgw_ratelimit_backend_up"), 0)
        self.assertEqual(registry.get_sample_value("codexgw_ratelimit_backend_errors_total"), 1)

    async def test_redis_away_fails_closed_when_configured(self) -> None:
        client = RedisClient(reactor, self.server.url, timeout=0.5)
        self.addCleanup(client.close)
        limiter = RedisRateLimiter(client, self.clock, "closed")
        self.server.stop()
        decision = await limiter.check("alice", Limits(requests_per_minute=1))
        self.assertFalse(decision.allowed)
        self.assertTrue(decision.unavailable)

    async def test_an_error_from_redis_is_logged_once_until_checks_work(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") in ("codexgw.state.ratelimit", "codexgw.state.redis"):
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        limits = Limits(requests_per_minute=5)
        requestsKey = self.limiter._keys("alice")[0]
        await self.client.execute("SET", requestsKey, "not a number")  # the script fails on it
        for _ in range(3):
            self.assertTrue((await self.limiter.check("alice", limits)).allowed)  # fails open
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("rate limiter: Redis answered a check with an error", lines[0])
        await self.client.execute("DEL", requestsKey)
        self.assertTrue((await self.limiter.check("alice", limits)).allowed)
        self.assertEqual(lines[1:], ["rate limiter: Redis answers checks again"])
        self.assertTrue(self.client.available, "an error reply is no outage of the connection")


class GatewayLimitTests(SynchronousTestCase):
    def config(self, **extra: Any) -> Any:
        data = {
            "upstreams": {"main": {"base_url": "http://up/v1", "retries": {"max_attempts": 1}}},
            "auth": {
                "keys": [
                    {"name": "alice", "key": "ka", "limits": {"requests_per_minute": 2}},
                    {"name": "bob", "key": "kb"},
                ]
            },
            "rate_limits": {"requests_per_minute": 5},
        }
        data.update(extra)
        return parse(data, "t.yaml", {})

    def call(self, h: Harness, key: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        client = h.connect()
        before = len(h.sent)
        client.post(
            b"/v1/chat/completions",
            {"model": "m", "messages": []},
            {b"authorization": b"Bearer " + key},
        )
        if len(h.sent) > before:
            h.sent[-1].respond(
                200, JSON, b'{"usage": {"prompt_tokens": 1, "completion_tokens": 1}}'
            )
        return client.response()

    def test_over_the_limit_is_429_with_retry_after_and_ratelimit_headers(self) -> None:
        h = Harness(self.config())
        for remaining in (b"1", b"0"):
            status, headers, _ = self.call(h, b"ka")
            self.assertEqual(status, 200)
            self.assertEqual(headers[b"x-ratelimit-remaining-requests"], remaining)
        status, headers, body = self.call(h, b"ka")
        self.assertEqual(status, 429)
        self.assertIn(b"retry-after", headers)
        self.assertEqual(headers[b"x-ratelimit-limit-requests"], b"2")
        error = orjson.loads(body)["error"]
        self.assertEqual(
            (error["type"], error["code"]), ("rate_limit_error", "rate_limit_exceeded")
        )
        self.assertIn("try again in", error["message"])
        self.assertEqual(len(h.sent), 2)
        self.assertEqual(h.metric("codexgw_rate_limited_total", key="alice"), 1)

    def test_the_gateways_limit_headers_win_over_the_upstreams(self) -> None:
        h = Harness(self.config())
        client = h.connect()
        client.post(
            b"/v1/chat/completions",
            {"model": "m", "messages": []},
            {b"authorization": b"Bearer ka"},
        )
        upstreamHeaders = {
            **JSON,
            b"x-ratelimit-remaining-requests": b"9999",
            b"x-ratelimit-limit-requests-day": b"50000",
        }
        h.sent[-1].respond(200, upstreamHeaders, b"{}")
        _, headers, _ = client.response()
        self.assertEqual(headers[b"x-ratelimit-remaining-requests"], b"1", "alice's own limit")
        self.assertEqual(headers[b"x-ratelimit-limit-requests-day"], b"50000", "no clash: kept")

    def test_defaults_apply_to_keys_without_their_own(self) -> None:
        h = Harness(self.config())
        statuses = [self.call(h, b"kb")[0] for _ in range(6)]
        self.assertEqual(statuses, [200] * 5 + [429])

    def test_tokens_per_minute_counts_upstream_usage(self) -> None:
        h = Harness(self.config(rate_limits={"tokens_per_minute": 3}))
        self.assertEqual(self.call(h, b"kb")[0], 200)  # uses 2 tokens
        status, headers, _ = self.call(h, b"kb")  # 1 left: allowed, uses 2 more
        self.assertEqual((status, headers[b"x-ratelimit-remaining-tokens"]), (200, b"1"))
        self.assertEqual(self.call(h, b"kb")[0], 429)
        self.assertEqual(
            h.metric("codexgw_tokens_total", direction="input", model="m", key="bob"), 2
        )


class SharedGatewayTests(TestCase):
    timeout = 60

    async def test_two_gateway_processes_share_a_keys_limit_through_redis(self) -> None:
        from codexgw.service import Gateway
        from tests.fakes.chat_upstream import FakeChatUpstream
        from tests.integration.test_integration import httpClient, serve

        server = RedisServer(self)
        upstream = serve(self, FakeChatUpstream())
        config = parse(
            {
                "upstreams": {
                    "main": {"base_url": f"http://127.0.0.1:{upstream.getHost().port}/v1"}
                },
                "auth": {
                    "keys": [
                        {"name": "team", "key": "k-team", "limits": {"requests_per_minute": 3}}
                    ]
                },
                "rate_limits": {"backend": "redis"},
                "redis": {"url": server.url},
            },
            "t.yaml",
            {},
        )
        bases = []
        for _ in range(2):
            gateway = Gateway(config)
            self.addCleanup(gateway.close)
            bases.append(f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1")
        http = httpClient(self)
        statuses = []
        for base in (bases[0], bases[1], bases[0], bases[1]):
            response = await http.post(
                base + "/chat/completions",
                json={"model": "m", "messages": []},
                headers={"Authorization": "Bearer k-team"},
            )
            statuses.append(response.code)
            await response.content()
            if response.code == 429:
                self.assertTrue(response.headers.getRawHeaders("retry-after"))
        self.assertEqual(statuses, [200, 200, 200, 429])


class RedisOutageGatewayTests(TestCase):
    """
    A gateway whose rate limits (failing closed) and stored responses are in
    a real Redis, which is stopped and then started again on its port.
    """

    timeout = 60

    async def test_an_outage_is_503s_at_once_a_few_reconnections_and_one_line_each_way(
        self,
    ) -> None:
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        from codexgw.service import Gateway
        from tests.fakes.chat_upstream import FakeChatUpstream
        from tests.integration.test_integration import httpClient, serve, until

        password = "pw-9c1e7f"
        server = RedisServer(self)
        admin = RedisClient(reactor, server.url)
        self.addCleanup(admin.close)
        await admin.execute("CONFIG", "SET", "requirepass", password)
        admin.close()

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def redisLines() -> list[tuple[Any, str]]:
            """What the Redis client, the limiter and the store have logged."""
            ours = ("codexgw.state.redis", "codexgw.state.ratelimit", "codexgw.state.store")
            return [
                (e["log_level"], formatEvent(e)) for e in events if e.get("log_namespace") in ours
            ]

        upstream = serve(self, FakeChatUpstream())
        config = parse(
            {
                "upstreams": {
                    "main": {"base_url": f"http://127.0.0.1:{upstream.getHost().port}/v1"}
                },
                "auth": {
                    "keys": [
                        {"name": "team", "key": "k-team", "limits": {"requests_per_minute": 1000}}
                    ]
                },
                "rate_limits": {"backend": "redis", "failure_policy": "closed"},
                "redis": {"url": f"redis://:{password}@127.0.0.1:{server.port}/0", "timeout": 5},
                "store": {"backend": "redis"},
            },
            "t.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        assert gateway.redis is not None
        client = gateway.redis
        base = f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1"
        http = httpClient(self)
        auth = {"Authorization": "Bearer k-team"}
        up = lambda: gateway.metrics.registry.get_sample_value("codexgw_ratelimit_backend_up")  # noqa: E731

        async def chat() -> tuple[int, Any]:
            response = await http.post(
                base + "/chat/completions", json={"model": "m", "messages": []}, headers=auth
            )
            return response.code, orjson.loads(await response.content())

        async def stored() -> tuple[int, Any]:
            response = await http.get(base + "/responses/resp_nope", headers=auth)
            return response.code, orjson.loads(await response.content())

        self.assertEqual((await chat())[0], 200)
        self.assertEqual((await stored())[0], 404)
        self.assertEqual((client.connectAttempts, redisLines()), (1, []))

        server.stop()
        self.assertTrue(await until(lambda: not client.available), "the loss is noticed")
        self.assertEqual(up(), 0)
        attempts, began, requests = client.connectAttempts, reactor.seconds(), 0
        while reactor.seconds() - began < 1.5:
            for call, code in ((chat, "rate_limiter_unavailable"), (stored, "store_unavailable")):
                sent = reactor.seconds()
                status, body = await call()
                self.assertEqual((status, body["error"]["code"]), (503, code))
                # Far below redis.timeout (5 s): nothing waited to time out.
                self.assertLess(reactor.seconds() - sent, 2.5)
                requests += 1
        made = client.connectAttempts - attempts
        self.assertLessEqual(made, 4, f"{made} connection attempts for {requests} requests")
        self.assertGreater(requests, 10 * max(made, 1))
        self.assertEqual([level for level, _ in redisLines()], [LogLevel.warn], redisLines())
        # Nor a "Starting factory" / "Stopping factory" pair per connection attempt.
        self.assertEqual(
            [formatEvent(e) for e in events if "twisted.internet.protocol" in e["log_namespace"]],
            [],
        )
        self.assertIn(f"Redis 127.0.0.1:{server.port}/0 unavailable", redisLines()[0][1])

        server.start()
        admin = RedisClient(reactor, server.url)
        self.addCleanup(admin.close)
        await admin.execute("CONFIG", "SET", "requirepass", password)
        self.assertTrue(await until(lambda: client.available, timeout=15), "the return is noticed")
        self.assertEqual(up(), 1, "before any request: the reconnection says so")
        self.assertEqual((await chat())[0], 200)
        self.assertEqual((await stored())[0], 404)
        self.assertEqual(up(), 1)
        lines = redisLines()
        self.assertEqual([level for level, _ in lines], [LogLevel.warn, LogLevel.info], lines)
        self.assertIn(f"Redis 127.0.0.1:{server.port}/0 is back", lines[1][1])
        for event in events:
            self.assertNotIn(password, formatEvent(event) + repr(event))
