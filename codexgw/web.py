# -*- test-case-name: tests.test_service -*-
"""
The twisted.web L{Site} the gateway (and its demo model) serve with.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from codexgw.redaction import NO_SECRETS, Redactor, StreamRedactor

STANDARD_HEADERS: dict[bytes, bytes] = {
    b"server": b"codexgw",
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-store",
}
"""The headers every answer of the gateway carries (docs/api.md)."""


_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reasonPhrase(code: int) -> bytes | None:
    """The standard reason phrase of C{code} (RFC 9110), or L{None} for a non-standard code."""
    return _PHRASES.get(code)


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
        super().write(data)  # type: ignore[no-untyped-call]

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
    structured line per request instead) and without tracebacks in bodies.
    """

    noisy = False
    displayTracebacks = False
    requestFactory = GatewayRequest

    def __init__(
        self, resource: IResource, reactor: Any = None, maxBody: int | None = None
    ) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]
        self.maxBody = maxBody

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
