# -*- test-case-name: tests.state.test_ratelimit -*-
"""
Per-key rate limits: requests per minute and tokens per minute.

Fixed one-minute windows, counted in process or in Redis. Fixed windows are
what OpenAI's own C{x-ratelimit-reset-*} headers describe, cost one counter
per key and window, and in Redis one atomic script per request; a burst at a
window's edge can reach twice the rate for a moment, which for a gateway in
front of a provider with its own limits is an acceptable trade.

Tokens are counted after the answer, from the upstream's usage; a key whose
token budget for the window is spent is refused until the window turns.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from codexgw.config.keys import Limits as Limits  # one type for config and limiter
from codexgw.state.rediserrors import RedisError, RedisUnavailable

if TYPE_CHECKING:
    from codexgw.state.redis import RedisClient

log = Logger()

WINDOW = 60.0


@attrs.frozen
class Decision:
    """
    @ivar headers: C{x-ratelimit-*} (and C{retry-after} when refused).
    @ivar unavailable: refused because the shared backend is down and the
        policy is to fail closed (503, not 429).
    """

    allowed: bool
    headers: dict[bytes, bytes]
    retry_after: int | None = None
    unavailable: bool = False


class IRateLimiter(Interface):
    def check(key: str, limits: Limits) -> Deferred[Decision]:
        """Count one request for C{key} and decide whether it may go on."""

    def record(key: str, limits: Limits, tokens: int) -> Deferred[None]:
        """Add C{tokens} used by C{key} in the current window."""


def decide(limits: Limits, requests: int, tokens: int, reset: float) -> Decision:
    """
    The decision and headers for a key that has made C{requests} requests
    (this one included) and used C{tokens} tokens, C{reset} seconds before
    the window turns.
    """
    rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
    resetText = f"{max(reset, 0.0):.3g}s".encode()
    headers: dict[bytes, bytes] = {}
    if rpm is not None:
        headers[b"x-ratelimit-limit-requests"] = b"%d" % rpm
        headers[b"x-ratelimit-remaining-requests"] = b"%d" % max(0, rpm - requests)
        headers[b"x-ratelimit-reset-requests"] = resetText
    if tpm is not None:
        headers[b"x-ratelimit-limit-tokens"] = b"%d" % tpm
        headers[b"x-ratelimit-remaining-tokens"] = b"%d" % max(0, tpm - tokens)
        headers[b"x-ratelimit-reset-tokens"] = resetText
    refused = (rpm is not None and requests > rpm) or (tpm is not None and tokens >= tpm)
    if not refused:
        return Decision(True, headers)
    wait = max(1, math.ceil(reset))
    headers[b"retry-after"] = b"%d" % wait
    return Decision(False, headers, wait)


@implementer(IRateLimiter)
class MemoryRateLimiter:
    """
    In-process windows: the default, for one gateway process. Memory stays
    bounded: a window's counters are dropped when the window turns.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._window = -1
        self._counts: dict[str, list[int]] = {}

    def _now(self) -> tuple[dict[str, list[int]], float]:
        now = self.clock.seconds()
        window = int(now // WINDOW)
        if window != self._window:
            self._window, self._counts = window, {}
        return self._counts, (window + 1) * WINDOW - now

    def check(self, key: str, limits: Limits) -> Deferred[Decision]:
        counts, reset = self._now()
        entry = counts.setdefault(key, [0, 0])
        entry[0] += 1
        decision = decide(limits, entry[0], entry[1], reset)
        if not decision.allowed:
            entry[0] -= 1  # a refused request does not use up the next one
        return succeed(decision)

    def record(self, key: str, limits: Limits, tokens: int) -> Deferred[None]:
        counts, _ = self._now()
        counts.setdefault(key, [0, 0])[1] += tokens
        return succeed(None)


# KEYS: requests counter, tokens counter. ARGV: requests limit (0: none),
# tokens limit (0: none), window in ms. Returns {allowed, requests, tokens, ms left}.
_CHECK = """
local req = tonumber(redis.call('GET', KEYS[1]) or '0')
local tok = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = tonumber(ARGV[3]) end
if (rpm > 0 and req >= rpm) or (tpm > 0 and tok >= tpm) then
  return {0, req + 1, tok, ttl}
end
req = redis.call('INCR', KEYS[1])
if req == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, req, tok, ttl}
"""

_RECORD = """
local tok = redis.call('INCRBY', KEYS[1], ARGV[1])
if tok == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return tok
"""


@implementer(IRateLimiter)
class RedisRateLimiter:
    """
    Windows shared by every gateway using the same Redis, counted by one
    atomic script per request.

    While Redis is away the client fails each check at once (it logs the
    outage, once, and reconnects on its own); the limiter applies its
    policy and counts the failure, and logs only what the client cannot
    know: Redis answering its scripts with an error, once until they work.

    @param failurePolicy: C{open} (serve while Redis is away) or C{closed}
        (refuse with 503).
    @param metrics: L{codexgw.obs.metrics.GatewayMetrics}, or L{None}.
    """

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        failurePolicy: str = "open",
        prefix: str = "codexgw:rl:",
        metrics: Any = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.failurePolicy = failurePolicy
        self.prefix = prefix
        self.metrics = metrics
        self._refused = False
        if metrics is not None:
            metrics.ratelimit_backend_up.set(1 if client.available else 0)
            # Up and down as the connection goes, checks or none.
            client.addAvailabilityObserver(lambda up: metrics.ratelimit_backend_up.set(int(up)))

    def _keys(self, key: str) -> tuple[str, str, int]:
        window = int(self.clock.seconds() // WINDOW)
        base = f"{self.prefix}{key}:{window}"
        return base + ":r", base + ":t", int(WINDOW * 1000) + 1000

    def _failed(self, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.ratelimit_backend_errors.inc()
            self.metrics.ratelimit_backend_up.set(0)
        if isinstance(error, RedisError) and not self._refused:
            self._refused = True
            log.warn(
                "rate limiter: Redis answered a check with an error ({error}); "
                "failing {policy} until checks work",
                error=str(error),
                policy=self.failurePolicy,
            )

    def _ok(self) -> None:
        if self.metrics is not None:
            self.metrics.ratelimit_backend_up.set(1)
        if self._refused:
            self._refused = False
            log.info("rate limiter: Redis answers checks again")

    async def _check(self, key: str, limits: Limits) -> Decision:
        requests, tokens, ttl = self._keys(key)
        try:
            allowed, count, used, left = await self.client.evalScript(
                _CHECK,
                [requests, tokens],
                [limits.requests_per_minute or 0, limits.tokens_per_minute or 0, ttl],
            )
        except (RedisUnavailable, RedisError) as e:
            self._failed(e)
            if self.failurePolicy == "closed":
                return Decision(False, {b"retry-after": b"1"}, 1, unavailable=True)
            return Decision(True, {})
        self._ok()
        reset = min(float(left) / 1000, WINDOW)
        return decide(limits, int(count), int(used), reset)

    def check(self, key: str, limits: Limits) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._check(key, limits))

    async def _record(self, key: str, tokens: int) -> None:
        _, tokenKey, ttl = self._keys(key)
        try:
            await self.client.evalScript(_RECORD, [tokenKey], [tokens, ttl])
        except (RedisUnavailable, RedisError) as e:
            self._failed(e)
        else:
            self._ok()

    def record(self, key: str, limits: Limits, tokens: int) -> Deferred[None]:
        return Deferred.fromCoroutine(self._record(key, tokens))
