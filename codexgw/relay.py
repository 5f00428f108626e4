# -*- test-case-name: tests.test_relay -*-
"""
Moving an upstream body to the client, with backpressure and cancellation.

A relay is two things at once: the L{Protocol} that receives the upstream
body (C{IResponse.deliverBody}) and the L{IPushProducer} registered on the
client's request. When the client's socket buffer fills, twisted.web pauses
the request's producer and the relay pauses the upstream transport, so TCP
flow control reaches the model server and no buffer grows here. When the
client goes away the upstream connection is dropped at once, so no tokens are
generated for nobody.

L{PassThroughRelay} copies bytes as they come (pass-through bytes are never
parsed); L{EventRelay} decodes SSE and hands each event to a translator, for
the bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.server import Request
from zope.interface import implementer

from codexgw.sse import HEARTBEAT, SSEDecoder, SSEError, SSEEvent
from codexgw.usage import findUsage

log = Logger()

# How a relay ended; the caller counts and logs it.
COMPLETE = "complete"
CLIENT_GONE = "client_gone"
UPSTREAM_BROKEN = "upstream_broken"
IDLE_TIMEOUT = "idle_timeout"
TOTAL_TIMEOUT = "total_timeout"
BAD_STREAM = "bad_stream"
SHUTDOWN = "shutdown"

_CLEAN_END = (ResponseDone, PotentialDataLoss)


@implementer(IPushProducer)
class _Relay(Protocol):
    """
    What every relay shares: producer plumbing, client disconnect, timers and
    a single, idempotent end.

    @ivar outcome: how it ended (one of the constants above), or L{None}.
    @ivar firstByteAt: clock time of the first byte written to the client.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        onDone: Callable[[_Relay], None],
        *,
        heartbeat: float | None = None,
        idleTimeout: float | None = None,
        totalTimeout: float | None = None,
    ) -> None:
        self.request = request
        self.clock = clock
        self.outcome: str | None = None
        self.firstByteAt: float | None = None
        self.bytesOut = 0
        self._onDone = onDone
        self._heartbeat = heartbeat
        self._idleTimeout = idleTimeout
        self._active = False
        self._quiet = 0.0
        self._ticker: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._paused = False
        if totalTimeout:
            self._deadline = clock.callLater(totalTimeout, self._end, TOTAL_TIMEOUT)
        request.notifyFinish().addErrback(self._clientGone)

    # Upstream side.

    def connectionMade(self) -> None:
        if self.outcome is not None:
            # The client left while the upstream was answering.
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self.request.registerProducer(self, True)
        interval = self._tickInterval()
        if interval:
            self._ticker = self.clock.callLater(interval, self._tick)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.outcome is not None:
            return
        if reason.check(*_CLEAN_END):
            self._end(COMPLETE)
        else:
            self._end(UPSTREAM_BROKEN, reason)

    # Client side (IPushProducer).

    def pauseProducing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        self._end(CLIENT_GONE)

    def _clientGone(self, reason: Failure) -> None:
        self._end(CLIENT_GONE)

    # Writing.

    def write(self, data: bytes) -> None:
        if self.firstByteAt is None:
            self.firstByteAt = self.clock.seconds()
        self.bytesOut += len(data)
        self.request.write(data)

    # Timers.

    def _tickInterval(self) -> float | None:
        candidates = [t for t in (self._heartbeat, self._idleTimeout) if t]
        return min(candidates) if candidates else None

    def _tick(self) -> None:
        """
        Runs every interval instead of re-arming a timer per chunk: a chunk
        only sets a flag, which keeps the per-chunk cost at one assignment.
        """
        interval = self._tickInterval()
        assert interval is not None
        if self._active or self._paused:
            self._active = False
            self._quiet = 0.0
        else:
            self._quiet += interval
            if self._idleTimeout and self._quiet >= self._idleTimeout:
                self._end(IDLE_TIMEOUT)
                return
            if self._heartbeat:
                self.heartbeat()
        self._ticker = self.clock.callLater(interval, self._tick)

    def heartbeat(self) -> None:
        """Keep an idle client connection alive; subclasses decide how."""

    # Ending.

    def end(self, outcome: str) -> None:
        """End the relay from outside (e.g. graceful shutdown)."""
        self._end(outcome)

    def _end(self, outcome: str, reason: Failure | None = None) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        for call in (self._ticker, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._ticker = self._deadline = None
        if outcome != COMPLETE and self.transport is not None:
            # Dropping the upstream connection is what stops generation.
            self.transport.stopProducing()  # type: ignore[attr-defined]
        request = self.request
        drop = False
        if outcome != CLIENT_GONE:
            drop = self.finishClient(outcome, reason)
        if request.producer is self and request.channel is not None:
            request.unregisterProducer()
        # Account before finishing: finishing fires the route's completion,
        # which logs the exchange with the outcome set here.
        self._onDone(self)
        if drop:
            # A body cut short cannot be mended: closing the connection is
            # how HTTP tells the client it is incomplete (finishing would not).
            request.loseConnection()
        elif outcome != CLIENT_GONE and not request.finished and request.channel is not None:
            request.finish()

    def usage(self) -> dict[str, Any] | None:
        """The upstream's token usage for this answer, if it said."""
        return None

    def finishClient(self, outcome: str, reason: Failure | None) -> bool:
        """
        Write whatever closes the client's stream properly for C{outcome}.

        @return: C{True} to drop the client connection instead of finishing
            the response.
        """
        return False


class PassThroughRelay(_Relay):
    """
    Copies the upstream body unchanged.

    For SSE bodies (C{sse=True}) it also watches, cheaply, where lines end:
    to insert keep-alive comments only between lines, to enforce the line
    length cap without decoding, and to close a broken stream with an error
    event a Chat client understands.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        onDone: Callable[[_Relay], None],
        *,
        sse: bool,
        maxLine: int = 4 * 1024 * 1024,
        **kw: Any,
    ) -> None:
        super().__init__(request, clock, onDone, **kw)
        self._sse = sse
        self._maxLine = maxLine
        self._lineLength = 0
        self._tail = b"\n\n"
        # The last two chunks, kept by reference (no copy): usage rides at
        # the very end of both JSON bodies and streams.
        self._prev = b""
        self._last = b""

    def dataReceived(self, data: bytes) -> None:
        if self.outcome is not None:
            return
        self._active = True
        if self._sse:
            end = max(data.rfind(b"\n"), data.rfind(b"\r"))
            if end < 0:
                self._lineLength += len(data)
            else:
                self._lineLength = len(data) - end - 1
            if self._lineLength > self._maxLine:
                self._end(BAD_STREAM, None)
                return
            self._tail = data[-4:] if len(data) >= 4 else (self._tail + data)[-4:]
        self._prev, self._last = self._last, data
        self.write(data)

    def usage(self) -> dict[str, Any] | None:
        return findUsage(self._prev + self._last)

    def heartbeat(self) -> None:
        if not self._sse:
            return
        tail = self._tail
        if tail.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")):
            self.write(HEARTBEAT)
        elif tail.endswith((b"\n", b"\r")):
            # Inside an event but between lines: a comment line is legal
            # there, and a blank line would dispatch half an event.
            self.write(b": keep-alive\n")

    def finishClient(self, outcome: str, reason: Failure | None) -> bool:
        if outcome == COMPLETE:
            return False
        if not self._sse:
            return True
        message = _MESSAGES.get(outcome, "upstream stream failed")
        sep = b"" if self._tail.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")) else b"\n\n"
        self.write(
            sep
            + b"data: "
            + orjson.dumps(
                {
                    "error": {
                        "message": message,
                        "type": "upstream_error",
                        "param": None,
                        "code": outcome,
                    }
                }
            )
            + b"\n\n"
        )
        return False


_MESSAGES = {
    UPSTREAM_BROKEN: "the upstream connection broke before the stream ended",
    IDLE_TIMEOUT: "the upstream went silent for longer than the idle timeout",
    TOTAL_TIMEOUT: "the upstream stream exceeded the total timeout",
    BAD_STREAM: "the upstream sent an SSE line longer than the gateway accepts",
    SHUTDOWN: "the gateway is shutting down",
}


class EventRelay(_Relay):
    """
    Decodes the upstream SSE body and hands each event to C{onEvent}, which
    returns the bytes to send the client (possibly empty).

    @ivar translator: an object with C{event(SSEEvent) -> bytes},
        C{end(outcome, message) -> bytes} and C{keepalive() -> bytes}.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        onDone: Callable[[_Relay], None],
        translator: Any,
        *,
        maxLine: int = 4 * 1024 * 1024,
        **kw: Any,
    ) -> None:
        super().__init__(request, clock, onDone, **kw)
        self.translator = translator
        self._decoder = SSEDecoder(maxLine)
        self.error: str | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.outcome is not None:
            return
        self._active = True
        try:
            events = self._decoder.feed(data)
        except SSEError as e:
            self.error = str(e)
            self._end(BAD_STREAM)
            return
        self._deliver(events)

    def _deliver(self, events: list[SSEEvent]) -> None:
        translate = self.translator.event
        out = []
        for event in events:
            try:
                chunk = translate(event)
            except SSEError as e:
                self.error = str(e)
                self._end(BAD_STREAM)
                return
            if chunk:
                out.append(chunk)
            if self.translator.done:
                break
        if out:
            self.write(b"".join(out))
        if self.translator.done:
            self._end(COMPLETE)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.outcome is None and reason.check(*_CLEAN_END):
            try:
                events = self._decoder.close()
            except SSEError as e:
                self.error = str(e)
                self._end(BAD_STREAM)
                return
            self._deliver(events)
        super().connectionLost(reason)

    def usage(self) -> dict[str, Any] | None:
        usage = self.translator.usage
        return usage if isinstance(usage, dict) else None

    def heartbeat(self) -> None:
        data = self.translator.keepalive()
        if data:
            self.write(data)

    def finishClient(self, outcome: str, reason: Failure | None) -> bool:
        message = self.error or _MESSAGES.get(outcome, "upstream stream failed")
        data = self.translator.end(outcome, message)
        if data:
            self.write(data)
        return False
