# -*- test-case-name: tests.upstream.test_failover,tests.upstream.test_cancel -*-
"""
A routed model request (L{Call}) and the one collaborator that sends it:
the L{Dispatcher}, which tries the call's candidate upstreams in order
(failover, circuit breakers) and accounts each attempt on the exchange.

Routes and bridges get a dispatcher, not the gateway: what they may do
with upstreams is exactly this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from codexgw.http.exchange import Exchange, Proxy
from codexgw.obs.metrics import GatewayMetrics
from codexgw.upstream.client import Upstream
from codexgw.upstream.failover import CircuitBreaker, firstAnswer

log = Logger()


@attrs.define
class Call:
    """A model request, parsed and routed, handed to a route's work."""

    ex: Exchange
    body: dict[str, Any]
    raw: bytes
    model: str
    candidates: list[Upstream]
    upstreamModel: str

    @property
    def wire_api(self) -> str:
        """What the route's upstreams speak (config keeps a route to one kind)."""
        return self.candidates[0].config.wire_api


Send = Callable[[Upstream], Awaitable[IResponse]]


class Dispatcher:
    """
    Sends a call to the first of its candidates that answers with something
    worth relaying (see L{codexgw.upstream.failover.firstAnswer}).

    @param breakers: each upstream's circuit breaker, by name.
    @param exchanges: marks when each attempt is sent, for latency.
    """

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        metrics: GatewayMetrics,
        exchanges: Proxy,
    ) -> None:
        self._breakers = dict(breakers)
        self._metrics = metrics
        self._exchanges = exchanges

    async def firstAnswer(self, call: Call, send: Send) -> tuple[Upstream, IResponse]:
        ex = call.ex
        exchanges = self._exchanges

        def attempt(upstream: Upstream) -> Awaitable[IResponse]:
            ex.upstream = upstream.name
            exchanges.sending(ex)
            return send(upstream)

        def failedOver(upstream: Upstream, reason: str) -> None:
            self._metrics.failovers.labels(upstream.name, reason).inc()
            log.warn(
                "upstream {upstream} failed ({reason}); trying the next for {model} "
                "request_id={request_id}",
                upstream=upstream.name,
                reason=reason,
                model=call.model,
                request_id=ex.request_id,
            )

        upstream, response = await firstAnswer(call.candidates, self._breakers, attempt, failedOver)
        ex.upstream = upstream.name
        return upstream, response


__all__ = ["Call", "Dispatcher", "Send"]
