# -*- test-case-name: tests.upstream.test_health -*-
"""
Liveness, readiness and details.

Readiness asks the upstream itself (C{GET /models}), because a gateway whose
provider cannot be reached should be taken out of a load balancer. Probes are
cached for C{health_probe_interval} seconds and coalesced: a burst of probe
requests costs the upstream one request, never one each. Several upstreams
are probed at once (L{HealthChecker.probeMany}), so silent ones cost one probe
timeout together, not one each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from codexgw.errors import GatewayError
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream

log = Logger()


@attrs.define
class UpstreamState:
    """
    What the last probe of one upstream found.

    @ivar reachable: L{None} until probed.
    @ivar status: the HTTP status of the probe, when it got one.
    """

    reachable: bool | None = None
    status: int | None = None
    error: str | None = None
    checked_at: float | None = None
    latency_ms: float | None = None

    def asDict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class HealthChecker:
    """Probes upstreams on demand, at most once per interval each."""

    def __init__(
        self,
        clock: IReactorTime,
        upstreams: dict[str, Upstream],
        interval: float,
        timeout: float = 3.0,
    ) -> None:
        self._clock = clock
        self._upstreams = upstreams
        self._interval = interval
        self._timeout = timeout
        self.states = {name: UpstreamState() for name in upstreams}
        self._inflight: dict[str, list[Deferred[UpstreamState]]] = {}
        self._running: dict[str, Deferred[None]] = {}
        self.started = clock.seconds()
        self.onChange: Any = None

    def probe(self, name: str) -> Deferred[UpstreamState]:
        """Fire with the state of upstream C{name}, probing it if stale."""
        state = self.states[name]
        now = self._clock.seconds()
        if state.checked_at is not None and now - state.checked_at < self._interval:
            return succeed(state)
        waiting = self._inflight.get(name)

        def leave(d: Deferred[UpstreamState]) -> None:
            # A caller that stops waiting (a client gone from /health) is
            # dropped; the probe goes on for the others and for the cache.
            if d in self._inflight.get(name, ()):
                self._inflight[name].remove(d)

        d: Deferred[UpstreamState] = Deferred(leave)
        if waiting is not None:
            waiting.append(d)
            return d
        self._inflight[name] = [d]
        running = Deferred.fromCoroutine(self._probe(name, now))
        if not running.called:
            self._running[name] = running
        return d

    def probeMany(self, names: Iterable[str]) -> Deferred[dict[str, UpstreamState]]:
        """
        Fire with the state of each upstream in C{names}, in that order,
        probing the stale ones concurrently: the answer waits for the slowest
        probe, never for the sum of them.

        Cancelling it stops waiting for every probe (see L{probe}).
        """
        names = list(names)
        d = gatherResults([self.probe(name) for name in names], consumeErrors=True)

        def unwrap(failure: Failure) -> Failure:
            # A probe never fails, so a failure here is a cancellation:
            # raise it as such, not wrapped in FirstError.
            error = failure.value
            if isinstance(error, FirstError):
                sub: Failure = error.subFailure
                return sub
            return failure

        d.addErrback(unwrap)
        return d.addCallback(lambda states: dict(zip(names, states, strict=True)))

    def stop(self) -> None:
        """Abandon the probes in flight (at shutdown): no upstream request outlives us."""
        for running in list(self._running.values()):
            running.cancel()

    async def _probe(self, name: str, started: float) -> None:
        state = self.states[name]
        try:
            response = await self._upstreams[name].get("/models", timeout=self._timeout)
            # Read and drop the body so the connection goes back to the pool.
            await readCapped(response)
            state.status = response.code
            state.reachable = response.code < 500
            state.error = None if state.reachable else f"HTTP {response.code}"
        except GatewayError as e:
            state.reachable = False
            state.status = None
            state.error = e.message
        except Exception as e:  # never let a probe break the health route
            state.reachable = False
            state.error = type(e).__name__
        state.checked_at = self._clock.seconds()
        state.latency_ms = round((state.checked_at - started) * 1000, 1)
        self._running.pop(name, None)
        if self.onChange is not None:
            self.onChange(name, state)
        for d in self._inflight.pop(name, []):
            d.callback(state)
