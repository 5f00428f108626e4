# -*- test-case-name: tests.http.test_connections,tests.test_service -*-
"""
The twisted.web L{Site} the gateway (and its demo model) serve with, and the
HTTP/1.1 channel it speaks.

The channel bounds what one client can hold: a request must arrive whole
within the site's request timeout (twisted.web's own timer is an idle timer,
reset by every byte, so a client trickling one byte a second holds its
connection forever), and the site counts open connections and refuses those
past its cap. Framing the channel cannot parse is answered in OpenAI's error
shape, where twisted.web writes a bare C{400} or drops the connection.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from codexgw.errors import (
    GatewayError,
    HeadersTooLarge,
    MalformedRequest,
    RequestTimeout,
    TooManyConnections,
    error_body,
)
from codexgw.obs.redaction import NO_SECRETS, Redactor, StreamRedactor

log = Logger()

STANDARD_HEADERS: dict[bytes, bytes] = {
    b"server": b"codexgw",
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-store",
}
"""The headers every answer of the gateway carries (docs/api.md)."""

LINGER = 2.0
"""
Seconds a connection the channel answered and closed itself keeps reading,
and discarding, after the answer and a FIN. Closing a socket that still has
unread request bytes sends a reset, which can destroy the answer in the
client's buffer before the client reads it (nginx's C{lingering_close}).
"""

FD_RESERVE = 64
"""File descriptors kept out of the connection cap: listeners, the store, logs."""


_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reasonPhrase(code: int) -> bytes | None:
    """The standard reason phrase of C{code} (RFC 9110), or L{None} for a non-standard code."""
    return _PHRASES.get(code)


def errorResponse(error: GatewayError, now: float) -> bytes:
    """
    A whole HTTP/1.1 response carrying C{error}, for the answers the channel
    writes itself, before (or instead of) any L{Request}: the standard
    headers, C{Connection: close} and OpenAI's error body.

    @param now: the time for the C{Date} header, in seconds since the epoch.
    """
    body = error_body(error)
    headers = Headers({name: [value] for name, value in STANDARD_HEADERS.items()})
    for name, value in error.headers.items():
        headers.setRawHeaders(name, [value])
    headers.setRawHeaders(b"content-type", [b"application/json"])
    headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
    headers.setRawHeaders(b"connection", [b"close"])
    headers.setRawHeaders(b"date", [datetimeToString(now)])
    phrase = reasonPhrase(error.status) or b"Error"
    lines = [b"HTTP/1.1 %d %s" % (error.status, phrase)]
    for name, values in headers.getAllRawHeaders():
        lines.extend(name + b": " + value for value in values)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def openFileLimit() -> int | None:
    """The process's soft C{RLIMIT_NOFILE}, or L{None} where there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connectionCap(configured: int | None, fileLimit: int | None) -> int | None:
    """
    The most client connections to serve at once: C{configured}, lowered to
    what C{fileLimit} open files can hold, since each proxied request holds
    an upstream connection as well as its own and L{FD_RESERVE} are kept for
    everything else. A cap above that would let descriptors run out first,
    and C{accept()} fail, before any connection is refused cleanly.

    @param configured: C{server.max_connections}; L{None} or 0 for no cap.
    @param fileLimit: see L{openFileLimit}.
    """
    if not configured:
        return None
    if fileLimit is None:
        return configured
    return max(1, min(configured, (fileLimit - FD_RESERVE) // 2))


def _lengthProblem(header: bytes, value: bytes, decided: bool) -> str | None:
    """
    What is wrong with a C{Content-Length} or C{Transfer-Encoding} header,
    if twisted.web will refuse it (see C{HTTPChannel._maybeChooseTransferDecoder}).

    @param decided: whether an earlier header already framed the body.
    """
    if header == b"Content-Length":
        if not value.isdigit():
            return "Content-Length must be a whole number of bytes"
    elif header == b"Transfer-Encoding":
        if value.lower() == b"identity":
            return None
        if value.lower() != b"chunked":
            return "Transfer-Encoding must be chunked"
    else:
        return None
    if decided:
        return (
            "the body's length is given twice: Content-Length with "
            "Transfer-Encoding: chunked, or either of them repeated"
        )
    return None


_CHUNKED = "the request body's chunked framing is malformed"
_HEAD = "the request line or a header is malformed"


class GatewayChannel(HTTPChannel):
    """
    An L{HTTPChannel} that gives each request a deadline, counts itself on
    its site, and answers what it cannot parse in OpenAI's error shape.

    The deadline (the site's C{requestTimeout}) is armed when the connection
    opens and when the first byte of a later request arrives, and cancelled
    once a request's content is fully received; it is never armed while a
    request is being answered, so a streamed response is never cut by it.
    When it fires, a client that had started a request is answered 408; one
    that has sent nothing is closed without a word.

    Every answer the channel writes itself ends the connection: it is
    written, our side is half-closed (FIN) and whatever the client still
    sends is read and dropped until it closes, or for L{LINGER} seconds
    before the connection is aborted. A transport that cannot half-close
    (TLS) is closed at once.
    """

    site: GatewaySite
    _deadline: IDelayedCall | None = None
    _requestStarted = False
    _closing = False
    _admitted = False
    _framingProblem: str | None = None

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """
        The status line and headers as one write: twisted.web hands the
        transport a sequence of four pieces a header, each checked and
        buffered on its own (a twentieth of a relayed request's cost).
        """
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)  # type: ignore[no-untyped-call]
            return
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.transport.write(b"".join(parts))  # type: ignore[union-attr]

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        if not self.site.connectionOpened():
            self._answerAndClose(
                TooManyConnections(
                    "the gateway has as many connections open as it serves; retry shortly",
                    headers={b"retry-after": b"1"},
                )
            )
            return
        self._admitted = True
        self._armDeadline()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelDeadline()
        if self._admitted:
            self._admitted = False
            self.site.connectionClosed()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._handlingRequest:
            self._requestStarted = True
            self._armDeadline()
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        self._headTooLarge()

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        self._framingProblem = _lengthProblem(header, data, self._transferDecoder is not None)
        try:
            return bool(super()._maybeChooseTransferDecoder(header, data))  # type: ignore[no-untyped-call]
        finally:
            self._framingProblem = None

    def rawDataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        # Only the chunked decoder raises: an identity body cannot be malformed.
        self._framingProblem = _CHUNKED
        try:
            super().rawDataReceived(data)
        finally:
            self._framingProblem = None

    def allContentReceived(self) -> None:
        self._cancelDeadline()
        self._requestStarted = False
        # Rendering may finish at once and replay a pipelined request.
        self._framingProblem = None
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web calls this for every problem; the head's size and
        # header count (checked by it per line, so no override of our own
        # has to run per line) tell a 431 from a 400.
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._headTooLarge()
        elif self._receivedHeaderCount > self.maxHeaders:
            self._answerAndClose(
                HeadersTooLarge(f"a request may carry at most {self.maxHeaders} headers")
            )
        else:
            self._answerAndClose(MalformedRequest(self._framingProblem or _HEAD))

    def _headTooLarge(self) -> None:
        self._answerAndClose(
            HeadersTooLarge(f"the request line and headers are over {self.totalHeadersSize} bytes")
        )

    def _armDeadline(self) -> None:
        timeout = self.site.requestTimeout
        if timeout and self._deadline is None:
            self._deadline = self.callLater(timeout, self._deadlineReached)  # type: ignore[no-untyped-call]

    def _cancelDeadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadlineReached(self) -> None:
        self._deadline = None
        if self._handlingRequest:  # pragma: no cover - cancelled before
            return
        if not self._requestStarted:
            self._answerAndClose(None)
            return
        self._answerAndClose(
            RequestTimeout(
                f"the request was not received in full within {self.site.requestTimeout:g} seconds"
            )
        )

    def _answerAndClose(self, error: GatewayError | None) -> None:
        """
        Write C{error} (if any) and end the connection, reading and dropping
        what the client still sends for at most L{LINGER} seconds.
        """
        if self._closing:
            return
        self._closing = True
        # What else the client sends goes to rawDataReceived, which drops it.
        self.setRawMode()  # type: ignore[no-untyped-call]
        self._cancelDeadline()
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        transport: Any = self.transport
        if transport is None or transport.disconnecting:
            return
        self._networkProducer.unregisterProducer()  # type: ignore[attr-defined]
        if error is not None:
            transport.write(errorResponse(error, self.site.reactor.seconds()))
        halfClose = getattr(transport, "loseWriteConnection", None)
        if halfClose is not None:
            halfClose()
            wait = LINGER
        else:
            transport.loseConnection()
            wait = self.abortTimeout
        self._abortingCall = self.callLater(wait, self._abort)  # type: ignore[no-untyped-call]

    def _abort(self) -> None:
        self._abortingCall = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


_write = Request.write


class GatewayRequest(Request):
    """
    A request that stops storing its body once it passes the site's limit,
    and that answers every status with its standard reason phrase.

    twisted.web reads the whole body before rendering; counting here means an
    oversized body is refused (413) without being kept, and one far over the
    limit closes the connection instead of being read to the end.

    twisted.web's own phrase table lacks 429, 422 and others (it writes
    C{Unknown Status}) and spells a few the old way (C{Gateway Time-out}).
    """

    tooLarge = False
    _received = 0
    _redacting: StreamRedactor | None = None
    _redactor: Redactor = NO_SECRETS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The gateway takes JSON only. Twisted would otherwise parse every
        # POST's Content-Type with the email package looking for form data:
        # a tenth of the per-request cost in bench/.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if message is None:
            message = reasonPhrase(code)
        super().setResponseCode(code, message)

    def redactWith(self, redactor: Redactor) -> None:
        """Pass every byte of the answer through C{redactor} (see L{Redacting})."""
        if redactor.active:
            self._redactor = redactor
            self._redacting = redactor.stream()

    def write(self, data: bytes) -> None:
        redacting = self._redacting
        if redacting is not None:
            if not self.startedWriting:
                redactHeaders(self, self._redactor)
            data = redacting.feed(data)
            if not data and self.startedWriting:
                return
        _write(self, data)  # type: ignore[no-untyped-call]

    def finish(self) -> None:
        redacting = self._redacting
        if redacting is not None and not self.finished and self.channel is not None:
            held = redacting.flush()
            if held:
                super().write(held)  # type: ignore[no-untyped-call]
        super().finish()  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        site = getattr(self.channel, "site", None)
        limit = getattr(site, "maxBody", None)
        self._received += len(data)
        if limit is not None and self._received > limit:
            if not self.tooLarge:
                self.tooLarge = True
                self.content.seek(0)  # type: ignore[union-attr]
                self.content.truncate()  # type: ignore[union-attr]
            transport = self.channel.transport if self.channel is not None else None
            if self._received > 4 * limit + 1024 * 1024 and transport is not None:
                transport.loseConnection()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]


class GatewaySite(Site):
    """
    A Site without twisted.web's own access log (the gateway writes one
    structured line per request instead) and without tracebacks in bodies,
    speaking HTTP/1.1 through L{GatewayChannel}.

    @param maxBody: the largest request body, in bytes; L{None} for any.
    @param requestTimeout: seconds a request has to arrive whole; L{None}
        or 0 for no deadline.
    @param maxConnections: client connections served at once; more are
        answered 503 and closed. L{None} or 0 for no cap.
    @ivar openConnections: the connections being served now.
    @ivar refused: connections refused since the site was made.
    """

    noisy = False
    displayTracebacks = False
    requestFactory = GatewayRequest
    protocol = GatewayChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        reactor: Any = None,
        maxBody: int | None = None,
        requestTimeout: float | None = None,
        maxConnections: int | None = None,
    ) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]
        self.maxBody = maxBody
        self.requestTimeout = requestTimeout or None
        self.maxConnections = maxConnections or None
        self.openConnections = 0
        self.refused = 0
        self._warnedAt = -math.inf

    def connectionOpened(self) -> bool:
        """Count a new connection in, or say it is one too many (L{False})."""
        if self.maxConnections is None or self.openConnections < self.maxConnections:
            self.openConnections += 1
            return True
        self.refused += 1
        now = self.reactor.seconds()
        # One line a minute however hard the cap is hit.
        if now - self._warnedAt >= 60:
            self._warnedAt = now
            log.warn(
                "{open} connections open, the most server.max_connections allows: "
                "refusing new ones with 503 ({refused} refused so far)",
                open=self.openConnections,
                refused=self.refused,
            )
        return False

    def connectionClosed(self) -> None:
        """A counted connection has gone."""
        self.openConnections -= 1

    def log(self, request: Any) -> None:
        pass


@implementer(IResource)
class Redacting:
    """
    The gateway's root resource: every answer below it is written through
    one L{Redactor}, whatever the route, so no upstream can hand a client a
    credential. A host's own L{Site} (embedding) gets the same guard: its
    requests' C{write} and C{finish} are wrapped one request at a time.
    """

    isLeaf = True

    def __init__(self, resource: IResource, redactor: Redactor = NO_SECRETS) -> None:
        self._resource = resource
        self.redactor = redactor

    def render(self, request: Any) -> Any:
        redactor = self.redactor
        if redactor.active:
            if isinstance(request, GatewayRequest):
                request.redactWith(redactor)
            else:
                _wrapWrites(request, redactor)
        return self._resource.render(request)

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the gateway's routes are its own")


def redactHeaders(request: Any, redactor: Redactor) -> None:
    """Redact the response's header values (some are copied from the upstream)."""
    headers = request.responseHeaders
    # One search over all values, the usual answer being "none": walking
    # the headers one by one canonicalises every name (a tenth of a relayed
    # request's cost in bench/).
    raw = getattr(headers, "_rawHeaders", None)
    if raw is not None:
        joined = b"\n".join([v for values in raw.values() for v in values])
        if redactor.redact(joined) is joined:
            return
    redact = redactor.redact
    for name, values in list(headers.getAllRawHeaders()):
        clean = [redact(v) for v in values]
        if clean != values:
            headers.setRawHeaders(name, clean)


def _wrapWrites(request: Any, redactor: Redactor) -> None:
    """L{GatewayRequest}'s redaction for another site's request."""
    redacting = redactor.stream()
    write, finish = request.write, request.finish

    def redactedWrite(data: bytes) -> None:
        if not request.startedWriting:
            redactHeaders(request, redactor)
        data = redacting.feed(data)
        if data or not request.startedWriting:
            write(data)

    def redactedFinish() -> None:
        if not request.finished and request.channel is not None:
            held = redacting.flush()
            if held:
                write(held)
        finish()

    request.write = redactedWrite
    request.finish = redactedFinish


async def closePort(port: Any, factory: Any) -> None:
    """
    Stop listening on C{port} and cut the connections its C{factory} (a
    L{twisted.protocols.policies.WrappingFactory}) still holds open, so a
    server that stops leaves nothing behind.
    """
    stopped = port.stopListening()
    for protocol in list(factory.protocols):
        protocol.transport.abortConnection()
    if stopped is not None:
        await stopped
