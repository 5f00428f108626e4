# -*- test-case-name: tests.http.test_exchange,tests.stream.test_stream_faults -*-
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

from codexgw.errors import errorObject
from codexgw.stream.interfaces import IEventAdapter
from codexgw.stream.outcomes import OVERLONG_LINE, Outcome
from codexgw.stream.sse import HEARTBEAT, SSEDecoder, SSEError, SSEEvent
from codexgw.stream.usage import findUsage

log = Logger()

COMPLETE = Outcome.COMPLETE
CLIENT_GONE = Outcome.CLIENT_GONE
UPSTREAM_BROKEN = Outcome.UPSTREAM_BROKEN
IDLE_TIMEOUT = Outcome.IDLE_TIMEOUT
TOTAL_TIMEOUT = Outcome.TOTAL_TIMEOUT
BAD_STREAM = Outcome.BAD_STREAM
SHUTDOWN = Outcome.SHUTDOWN

_CLEAN_END = (ResponseDone, PotentialDataLoss)
_BOM = b"\xef\xbb\xbf"


@implementer(IPushProducer)
class _Relay(Protocol):
    """
    What every relay shares: producer plumbing, client disconnect, timers and
    a single, idempotent end.

    @ivar outcome: how it ended (an L{Outcome}), or L{None}.
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
        self.outcome: Outcome | None = None
        self.firstByteAt: float | None = None
        self.bytesOut = 0
        self._onDone = onDone
        self._heartbeat = heartbeat
        self._idleTimeout = idleTimeout
        self._now = clock.seconds
        # When the upstream last sent something, and when the client last
        # got a keep-alive: a chunk only stores a time, and one timer per
        # interval decides from these (never one timer per chunk).
        self._lastData = self._lastBeat = clock.seconds()
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
        self._lastData = self._lastBeat = self._now()
        self._schedule()

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
        # Silence while the client was not reading is not the upstream's.
        self._lastData = self._now()
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        self._end(CLIENT_GONE)

    def _clientGone(self, reason: Failure) -> None:
        self._end(CLIENT_GONE)

    # Writing.

    # What one reactor turn gave the client, written once at its end; a
    # whole body (not a stream of small chunks) is written as it comes.
    _pending: list[bytes] | None = None
    _batch = True

    def write(self, data: bytes) -> None:
        """
        Queue C{data} for the client; it is written when this turn of the
        reactor ends (or the relay does). An upstream read of many small
        chunks (the HTTP client hands them over one by one) becomes one
        write, one redaction pass and one HTTP chunk instead of one each:
        bench/ showed per-chunk writes were most of a stream's cost.
        """
        if self.firstByteAt is None:
            self.firstByteAt = self.clock.seconds()
        self.bytesOut += len(data)
        if not self._batch:
            self.request.write(data)
            return
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self.clock.callLater(0, self.flush)
        else:
            pending.append(data)

    def flush(self) -> None:
        """Write what is queued, unless the client has gone."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        request = self.request
        if self.outcome is CLIENT_GONE or request.finished or request.channel is None:
            return
        request.write(pending[0] if len(pending) == 1 else b"".join(pending))

    # Timers.

    def _schedule(self) -> None:
        """Arm the timer for the next moment a keep-alive or the idle end is due."""
        now = self._now()
        due: list[float] = []
        if self._heartbeat:
            due.append(max(self._lastData, self._lastBeat) + self._heartbeat)
        if self._idleTimeout:
            due.append(self._lastData + self._idleTimeout)
        if due:
            self._ticker = self.clock.callLater(max(0.0, min(due) - now), self._tick)

    def _tick(self) -> None:
        """
        The idle timeout ends the relay exactly C{idle} seconds after the
        upstream's last byte; a keep-alive goes out after each C{heartbeat}
        seconds of silence. A paused client pauses both clocks.
        """
        self._ticker = None
        now = self._now()
        if self._paused:
            self._lastData = now
        else:
            quiet = now - self._lastData
            if self._idleTimeout and quiet >= self._idleTimeout - 1e-6:
                self._end(IDLE_TIMEOUT)
                return
            if self._heartbeat and now - max(self._lastData, self._lastBeat) >= (
                self._heartbeat - 1e-6
            ):
                self._lastBeat = now
                self.heartbeat()
        if self.outcome is None:
            self._schedule()

    def heartbeat(self) -> None:
        """Keep an idle client connection alive; subclasses decide how."""

    # Ending.

    def end(self, outcome: Outcome) -> None:
        """End the relay from outside (e.g. graceful shutdown)."""
        self._end(outcome)

    def _end(self, outcome: Outcome, reason: Failure | None = None) -> None:
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
            self.flush()
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

    def finishClient(self, outcome: Outcome, reason: Failure | None) -> bool:
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
    event a Chat client understands (or, given C{failureEvent}, the one the
    client's dialect has: Anthropic's C{event: error}).
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        onDone: Callable[[_Relay], None],
        *,
        sse: bool,
        maxLine: int = 4 * 1024 * 1024,
        failureEvent: Callable[[str, str], bytes] | None = None,
        usageAtStart: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(request, clock, onDone, **kw)
        self._sse = sse
        self._batch = sse
        self._failureEvent = failureEvent
        # Anthropic's streams say the input tokens in their first event
        # (message_start) and the output in message_delta, before
        # message_stop: with usageAtStart the first event is kept, until it
        # is whole (or 64 KiB), and the last read (whole lines) naming usage.
        self._head = b""
        self._headOpen = usageAtStart
        self._trackUsage = usageAtStart
        self._usageRead = b""
        self._maxLine = maxLine
        # The unfinished last line of an SSE body, held until its end comes:
        # a line is forwarded whole or not at all, so a stream that fails
        # (an over-long line, a broken upstream) never leaves the client a
        # fragment that its parser would join to the error event.
        self._partial: list[bytes] = []
        self._partialLength = 0
        self._fresh = True
        # The last two chunks, kept by reference (no copy): usage rides at
        # the very end of both JSON bodies and streams.
        self._prev = b""
        self._last = b""

    def dataReceived(self, data: bytes) -> None:
        if self.outcome is not None:
            return
        self._lastData = self._now()
        if self._sse:
            last = data[-1] if data else 0
            if last == 10 or last == 13:  # the usual read: whole lines
                end = len(data) - 1
            else:
                end = max(data.rfind(b"\n"), data.rfind(b"\r"))
            if end < 0:
                self._partialLength += len(data)
                if self._partialLength > self._maxLine:
                    self._end(BAD_STREAM, None)
                    return
                self._partial.append(data)
                return
            if self._partial:
                # Only a line split across reads is copied.
                self._partial.append(data)
                data = b"".join(self._partial)
                end += self._partialLength
                self._partial = []
                self._partialLength = 0
            if end + 1 < len(data):
                rest = data[end + 1 :]
                data = data[: end + 1]
                if len(rest) > self._maxLine:
                    self._end(BAD_STREAM, None)
                    return
                self._partial.append(rest)
                self._partialLength = len(rest)
            if self._fresh:
                self._fresh = False
                if data.startswith(_BOM):
                    # A client that follows the SSE spec drops one leading
                    # BOM, but a keep-alive sent first would make it a
                    # field-name prefix: the gateway drops it instead.
                    data = data[3:]
        if self._trackUsage:
            if self._headOpen:
                self._head += data
                if b"\n\n" in self._head or len(self._head) > _HEAD_MAX:
                    self._headOpen = False
            elif data.find(b'"usage"') != -1:
                self._usageRead = data
        self._prev, self._last = self._last, data
        self.write(data)

    def usage(self) -> dict[str, Any] | None:
        found = findUsage(self._usageRead or (self._prev + self._last))
        head = self._head
        if head:
            # The first event that names usage, not a later one in the read.
            end = head.find(b"\n\n", max(0, head.find(b'"usage"')))
            first = findUsage(head if end == -1 else head[:end])
            if first is not None:
                # The last word wins where both speak (output_tokens).
                found = {**first, **(found or {})}
        return found

    def _tail(self) -> bytes:
        """The last bytes relayed (a stream starts between events)."""
        return (b"\n\n" + self._prev[-4:] + self._last[-4:])[-4:]

    def heartbeat(self) -> None:
        if not self._sse:
            return
        tail = self._tail()
        if tail.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")):
            self.write(HEARTBEAT)
        elif tail.endswith((b"\n", b"\r")):
            # Inside an event but between lines: a comment line is legal
            # there, and a blank line would dispatch half an event.
            self.write(b": keep-alive\n")

    def finishClient(self, outcome: Outcome, reason: Failure | None) -> bool:
        if outcome == COMPLETE:
            if self._partial:
                # The upstream ended without a final line end: its last
                # line is whole, and its own business.
                self.write(b"".join(self._partial))
            return False
        if not self._sse:
            return True
        message = OVERLONG_LINE if outcome is BAD_STREAM else outcome.message
        sep = b"" if self._tail().endswith((b"\n\n", b"\r\r", b"\r\n\r\n")) else b"\n\n"
        # The code is the outcome's own word: what Chat clients of a relayed
        # stream have always been told.
        if self._failureEvent is not None:
            self.write(sep + self._failureEvent(outcome.value, message))
            return False
        error = errorObject(message, "upstream_error", code=outcome.value)
        self.write(sep + b"data: " + orjson.dumps(error) + b"\n\n")
        return False


_HEAD_MAX = 64 * 1024


def _describe(error: Exception) -> str:
    """What a translator's exception says about the upstream's event."""
    if isinstance(error, SSEError):
        return str(error)
    return f"upstream sent an event of the wrong shape ({type(error).__name__}: {error})"


class EventRelay(_Relay):
    """
    Decodes the upstream SSE body and hands each event to C{onEvent}, which
    returns the bytes to send the client (possibly empty).

    @ivar translator: the L{IEventAdapter} it drives.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        onDone: Callable[[_Relay], None],
        translator: IEventAdapter,
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
        self._lastData = self._now()
        try:
            events = self._decoder.feed(data)
        except SSEError as e:
            self._unreadable(str(e))
            return
        self._deliver(events)

    def _deliver(self, events: list[SSEEvent]) -> None:
        translator = self.translator
        translate = translator.event
        out: list[bytes] = []
        done = False
        for event in events:
            try:
                chunk = translate(event)
            except Exception as e:
                # The relay is the boundary: whatever a translator raises on
                # what an upstream sent fails this stream, in order (what the
                # earlier events of this read became is delivered first).
                # Left to propagate, twisted.web's client would swallow it
                # as a broken connection.
                if out:
                    self.write(b"".join(out))
                self._unreadable(_describe(e))
                return
            if chunk:
                out.append(chunk)
            if translator.done:
                done = True
                break
        if out:
            self.write(out[0] if len(out) == 1 else b"".join(out))
        if done or (not events and translator.done):
            self._end(COMPLETE)

    def _unreadable(self, error: str) -> None:
        self.error = error
        self._end(BAD_STREAM)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.outcome is None and reason.check(*_CLEAN_END):
            try:
                events = self._decoder.close()
            except SSEError as e:
                self._unreadable(str(e))
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

    def finishClient(self, outcome: Outcome, reason: Failure | None) -> bool:
        message = self.error or outcome.message
        data = self.translator.end(outcome, message)
        if data:
            self.write(data)
        return False
