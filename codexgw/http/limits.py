# -*- test-case-name: tests.state.test_ratelimit -*-
"""
Per-key rate limits as a route sees them: count a request against its
key's limits (a 429, or a 503 when the shared limiter is away) and record
the tokens its answer used.

A narrow collaborator of the routes and of the exchange tracker, so neither
reaches into the gateway for the limiter, the defaults or the metrics.
"""

from __future__ import annotations

from typing import Any

from codexgw.config.keys import ApiKey
from codexgw.errors import RateLimited, ServiceUnavailable
from codexgw.obs.metrics import GatewayMetrics
from codexgw.state.ratelimit import IRateLimiter, Limits


class RequestLimits:
    """
    @param defaults: the configured C{rate_limits} (its per-minute defaults
        apply to keys that set none of their own).
    """

    def __init__(self, limiter: IRateLimiter, defaults: Any, metrics: GatewayMetrics) -> None:
        self._limiter = limiter
        self._defaults = defaults
        self._metrics = metrics
        self._byKey: dict[str, Limits] = {}

    def limitsFor(self, key: ApiKey) -> Limits:
        """A key's own limits, else the configured defaults (made once a key)."""
        limits = self._byKey.get(key.name)
        if limits is None:
            defaults = self._defaults
            limits = self._byKey[key.name] = Limits(
                key.limits.requests_per_minute or defaults.requests_per_minute,
                key.limits.tokens_per_minute or defaults.tokens_per_minute,
            )
        return limits

    async def check(self, ex: Any, key: ApiKey) -> None:
        """Count the request against its key's limits; 429 (or 503) past them."""
        limits = self.limitsFor(key)
        if limits.unlimited:
            return
        ex.limits = limits
        decision = await self._limiter.check(key.name, limits)
        if decision.allowed:
            for name, value in decision.headers.items():
                ex.request.setHeader(name, value)
            return
        if decision.unavailable:
            raise ServiceUnavailable(
                "rate limits cannot be checked right now; retry",
                code="rate_limiter_unavailable",
                headers=decision.headers,
            )
        self._metrics.rate_limited.labels(key.name).inc()
        raise RateLimited(
            f"rate limit reached for key {key.name!r}; try again in {decision.retry_after} s",
            headers=decision.headers,
        )

    def record(self, ex: Any, tokens: int) -> None:
        """The tokens an answer used, against its key's token limit."""
        if ex.limits is not None and ex.limits.tokens_per_minute is not None:
            self._limiter.record(ex.key, ex.limits, tokens)
