# -*- test-case-name: tests.upstream.test_retry -*-
"""
Retrying an upstream request before anything has reached the client.

Connection errors and the statuses providers use for "try again" (429, 500,
502, 503, 504, and Anthropic's 529 overloaded) are retried with exponential
backoff and full jitter, honouring C{Retry-After} up to a cap, within a
budget of attempts and of time. Once a response is handed to a relay nothing
is retried: a client must never see the same tokens twice.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from codexgw.errors import UpstreamTimeout, UpstreamUnavailable
from codexgw.upstream.bodies import readCapped

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


@attrs.frozen
class RetryPolicy:
    """
    How an upstream retries; also the config schema of
    C{upstreams.<name>.retries} (L{codexgw.config.schema}): one type, so the
    configured block is the policy.

    @ivar max_attempts: attempts in all, the first included (1 = no retry).
    @ivar backoff_base: seconds before the first retry, doubled each time.
    @ivar backoff_max: the longest backoff.
    @ivar retry_after_max: the longest C{Retry-After} honoured; a longer one
        ends the retries and the client gets the upstream's answer.
    @ivar budget: seconds, from the first attempt, after which no retry starts.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    budget: float = 60.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt))."""
        return float(rand() * min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1))))


def retryAfterSeconds(value: bytes, now: Callable[[], float] = time.time) -> float | None:
    """
    A C{Retry-After} value in seconds: a number (fractions are seen from
    model APIs, though RFC 9110 says whole seconds) or an HTTP date.
    """
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


def wholeSeconds(seconds: float) -> bytes:
    """
    C{Retry-After} as clients read it: whole seconds, rounded up, at least
    one. The Codex CLI parses only an integer, and treats anything else, or
    0, as no advice at all: it then gives up the turn.
    """
    return b"%d" % max(1, math.ceil(seconds))


def retryAfter(response: Any) -> float | None:
    """Seconds from C{Retry-After} (or C{retry-after-ms}); L{None} if absent."""
    headers = response.headers
    ms = headers.getRawHeaders(b"retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms[0]) / 1000)
        except ValueError:
            pass
    value = headers.getRawHeaders(b"retry-after")
    if value:
        return retryAfterSeconds(value[0])
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: bytes) -> float | None:
    """OpenAI's C{x-ratelimit-reset-*} form (C{6m0s}, C{1.5s}, C{20ms}) in seconds."""
    text = value.decode("ascii", "replace").strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def retryAfterEstimate(response: Any, policy: RetryPolicy) -> int:
    """
    Whole seconds a client should wait before retrying a 429: what the
    upstream said (C{Retry-After}, C{retry-after-ms}, or the reset of the
    window it ran out of), else the gateway's own backoff after its last
    attempt. Never 0: the Codex CLI retries a 429 only when told how long
    to wait, and waits exactly that long.
    """
    hinted = retryAfter(response)
    if hinted is None:
        headers = response.headers
        resets = []
        for kind in (b"requests", b"tokens"):
            remaining = headers.getRawHeaders(b"x-ratelimit-remaining-" + kind)
            reset = headers.getRawHeaders(b"x-ratelimit-reset-" + kind)
            if reset and (remaining is None or remaining[0].strip() in (b"0", b"0.0")):
                seconds = _duration(reset[0])
                if seconds is not None:
                    resets.append(seconds)
        if resets:
            hinted = max(resets)
    if hinted is None:
        hinted = min(policy.backoff_max, policy.backoff_base * 2 ** max(0, policy.max_attempts - 1))
    return int(wholeSeconds(hinted))


async def withRetries(
    attempt: Callable[[], Deferred[Any]],
    policy: RetryPolicy,
    clock: IReactorTime,
    onRetry: Callable[[str, float], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> Any:
    """
    Call C{attempt} until it gives a response worth handing on.

    @param attempt: sends the request once; fires with a response or fails
        with L{UpstreamUnavailable} / L{UpstreamTimeout}.
    @param onRetry: told the reason (C{connect}, C{timeout} or the status)
        and the delay of each retry, for metrics and logs.
    @return: the last response; or the last error is raised.
    """
    started = clock.seconds()
    n = 0
    while True:
        n += 1
        response: Any = None
        try:
            response = await attempt()
        except (UpstreamUnavailable, UpstreamTimeout) as e:
            if n >= policy.max_attempts:
                raise
            error: Exception | None = e
            reason = "timeout" if isinstance(e, UpstreamTimeout) else "connect"
            delay = policy.backoff(n, rand)
        else:
            if response.code not in RETRY_STATUSES or n >= policy.max_attempts:
                return response
            error = None
            reason = str(response.code)
            hinted = retryAfter(response)
            if hinted is not None and hinted > policy.retry_after_max:
                return response
            delay = policy.backoff(n, rand) if hinted is None else hinted
        if clock.seconds() - started + delay > policy.budget:
            if error is not None:
                raise error
            return response
        if response is not None:
            # Read and drop the body so the connection goes back to the pool.
            await readCapped(response)
        if onRetry is not None:
            onRetry(reason, delay)
        await deferLater(clock, delay, lambda: None)
