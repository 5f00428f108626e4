# -*- test-case-name: tests.upstream.test_failover -*-
"""
Choosing among upstreams: circuit breakers, cache affinity and failover.

A route names one upstream, or a pool of them, plus fallbacks. For each
request the candidates are ordered: the pool member that this conversation's
C{prompt_cache_key} (or the Codex session header) hashes to first, so the
provider's prompt cache keeps hitting, then the rest of the pool, then the
fallbacks in order. An upstream whose breaker is open is skipped until its
cooldown ends; then one request probes it, and its success closes the
breaker again.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from codexgw.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable

log = Logger()

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_STATE_VALUE = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


class CircuitBreaker:
    """
    Per-upstream: C{threshold} failures in a row open it for C{cooldown}
    seconds; after that a single request is let through as a probe.

    @ivar onChange: called with (old, new) state on every transition.
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        threshold: int = 5,
        cooldown: float = 30.0,
        onChange: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = CLOSED
        self.failures = 0
        self.openedAt = 0.0
        self.onChange = onChange
        self._probing = False

    def _move(self, state: str) -> None:
        old, self.state = self.state, state
        if old != state:
            log.info(
                "circuit of upstream {upstream}: {old} -> {new}",
                upstream=self.name,
                old=old,
                new=state,
            )
            if self.onChange is not None:
                self.onChange(old, state)

    def available(self) -> bool:
        """Would L{allow} let a request through now? (Takes nothing.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return self.clock.seconds() - self.openedAt >= self.cooldown
        return not self._probing

    def allow(self) -> bool:
        """
        May a request go to this upstream now? An open breaker past its
        cooldown lets exactly one probe through at a time; the caller must
        then report L{success}, L{failure} or L{release}.
        """
        if self.state == CLOSED:
            return True
        if not self.available():
            return False
        if self.state == OPEN:
            self._move(HALF_OPEN)
        self._probing = True
        return True

    def success(self) -> None:
        self.failures = 0
        self._probing = False
        self._move(CLOSED)

    def failure(self) -> None:
        self.failures += 1
        self._probing = False
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.openedAt = self.clock.seconds()
            self._move(OPEN)

    def release(self) -> None:
        """
        The request let through ended without a verdict on the upstream (its
        client left and it was cancelled): a half-open breaker's probe slot
        is free again for the next request.
        """
        self._probing = False

    @property
    def value(self) -> int:
        return _STATE_VALUE[self.state]


def _rank(key: str, name: str) -> bytes:
    return hashlib.blake2b(f"{key}\0{name}".encode(), digest_size=8).digest()


class Candidates:
    """
    The ordered upstreams of one route.

    @param pool: load-balanced members (one for a plain route).
    @param fallbacks: tried in order after the pool.
    """

    def __init__(self, pool: Sequence[Any], fallbacks: Sequence[Any]) -> None:
        self.pool = list(pool)
        self.fallbacks = list(fallbacks)
        self._turn = itertools.count()

    def order(self, affinity: str | None) -> list[Any]:
        """
        Rendezvous hashing on C{affinity}: the same key picks the same member
        while it is healthy, and only that key's share moves when one is not.
        Without a key, members take turns.
        """
        pool = self.pool
        if len(pool) > 1:
            if affinity:
                pool = sorted(pool, key=lambda u: _rank(affinity, u.name), reverse=True)
            else:
                start = next(self._turn) % len(pool)
                pool = pool[start:] + pool[:start]
        return pool + [u for u in self.fallbacks if u not in pool]


FAILOVER_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


def _more(chain: Sequence[tuple[Any, CircuitBreaker]], n: int) -> bool:
    """Is a candidate after the C{n}th one available? (Asked only after a failure.)"""
    return any(b.available() for _, b in chain[n + 1 :])


async def firstAnswer(
    candidates: Sequence[Any],
    breakers: dict[str, CircuitBreaker],
    send: Callable[[Any], Any],
    onFailover: Callable[[Any, str], None] | None = None,
) -> tuple[Any, Any]:
    """
    Send to each candidate in turn until one answers with something other
    than a failure worth failing over (connection error, timeout, 429, 5xx).

    @param send: C{send(upstream)} returns a Deferred/awaitable response
        (the upstream's own retries already applied).
    @return: (upstream, response). The last candidate's answer is returned
        whatever it is, so the client sees the real status.
    @raise GatewayError: every candidate failed to connect, or every breaker
        is open (503 with C{Retry-After}).
    """
    # Breakers are asked one candidate at a time, as each is tried: asking
    # them all up front would take the probe slot of every half-open
    # upstream that the first healthy candidate then makes unnecessary.
    chain = [(u, breakers[u.name]) for u in candidates]
    if not any(b.available() for _, b in chain):
        waits = [max(1, int(b.cooldown - (b.clock.seconds() - b.openedAt)) + 1) for _, b in chain]
        cooling = UpstreamUnavailable(
            "every upstream for this model is cooling down after repeated failures",
            status=503,
            code="upstreams_cooling_down",
            headers={b"retry-after": str(min(waits)).encode()},
        )
        cooling.kind = "circuit_open"
        raise cooling
    error: GatewayError | None = None
    for n, (upstream, breaker) in enumerate(chain):
        if not breaker.allow():
            continue
        try:
            response = await send(upstream)
        except (UpstreamUnavailable, UpstreamTimeout) as e:
            breaker.failure()
            error = e
            if onFailover is not None and _more(chain, n):
                onFailover(upstream, e.code or "error")
            continue
        except BaseException:
            # Cancelled (the client left) or a bug: no verdict on the
            # upstream, and a probe slot taken must be given back.
            breaker.release()
            raise
        if response.code in FAILOVER_STATUSES:
            breaker.failure()
            if _more(chain, n):
                from codexgw.upstream.bodies import readCapped

                await readCapped(response)  # free the connection
                if onFailover is not None:
                    onFailover(upstream, str(response.code))
                continue
        else:
            breaker.success()
        return upstream, response
    if error is None:
        # Every breaker that looked available was taken by a concurrent
        # probe in the meantime.
        error = UpstreamUnavailable(
            "every upstream for this model is cooling down after repeated failures",
            status=503,
            code="upstreams_cooling_down",
            headers={b"retry-after": b"1"},
        )
        error.kind = "circuit_open"
    raise error
