# -*- test-case-name: tests.http.test_exchange,tests.stream.test_stream_faults -*-
"""
How an exchange ended, as constants that carry what each ending means: the
word in the access log and metrics, the message a client is told, and the
C{error.code} of the C{response.failed} a bridged stream ends with.

The constants are Twisted's own kind (C{constantly}, once
C{twisted.python.constants}). One table, so the relay's messages, the bridge's failure codes and the
access log's outcome can never disagree (there were two tables before).
"""

from __future__ import annotations

from constantly import ValueConstant, Values  # type: ignore[import-untyped]


class _Outcome(ValueConstant):  # type: ignore[misc]
    """
    @ivar value: the word the access log and metrics use.
    @ivar message: what a client is told when a stream ends this way.
    @ivar failureCode: the C{error.code} of a bridged C{response.failed}
        (none of them is one the Codex CLI treats as final, so it retries
        the turn); L{None} for endings that are no failure of the stream.
    """

    def __init__(self, value: str, message: str = "", failureCode: str | None = None) -> None:
        super().__init__(value)
        self.message = message
        self.failureCode = failureCode


class Outcome(Values):  # type: ignore[misc]
    """The ways an exchange ends."""

    COMPLETE = _Outcome("complete")
    CLIENT_GONE = _Outcome("client_gone", "the client went away")
    UPSTREAM_BROKEN = _Outcome(
        "upstream_broken",
        "the upstream connection broke before the stream ended",
        "upstream_stream_broken",
    )
    IDLE_TIMEOUT = _Outcome(
        "idle_timeout",
        "the upstream went silent for longer than the idle timeout",
        "upstream_idle_timeout",
    )
    TOTAL_TIMEOUT = _Outcome(
        "total_timeout", "the upstream stream exceeded the total timeout", "upstream_timeout"
    )
    BAD_STREAM = _Outcome(
        "bad_stream",
        "the upstream sent a stream the gateway cannot read",
        "upstream_protocol_error",
    )
    SHUTDOWN = _Outcome("shutdown", "the gateway is shutting down", "server_shutting_down")
    ERROR = _Outcome("error", "the request was answered with an error")
    UPSTREAM_ERROR = _Outcome(
        "upstream_error", "the upstream answered with an error inside the stream"
    )


OVERLONG_LINE = "the upstream sent an SSE line longer than the gateway accepts"
"""What a pass-through client is told when a line is over the cap (a bad stream)."""


__all__ = ["OVERLONG_LINE", "Outcome"]
