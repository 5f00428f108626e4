"""
A fake upstream at the C{IAgent} level: tests see every request the gateway
makes, answer it when they choose, and drive the response body byte by byte
through a L{StringTransport}, so relay behaviour (pause, resume, abort) is
observable without sockets.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer


@attrs.define
class SentRequest:
    """One request the gateway sent upstream, and the means to answer it."""

    method: bytes
    uri: bytes
    headers: Headers
    body: bytes
    deferred: Deferred[IResponse]
    cancelled: bool = False

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def respond(
        self,
        code: int = 200,
        headers: dict[bytes, bytes] | None = None,
        body: bytes | None = None,
        length: int | None = None,
    ) -> FakeResponse:
        """
        Answer with a response; if C{body} is given it is delivered whole and
        the body ends, else the test drives L{FakeResponse.protocol}.
        """
        response = FakeResponse(code, headers or {}, length)
        if body is not None:
            response.length = len(body) if length is None else length
            response.autoBody = body
        self.deferred.callback(response)
        return response


@implementer(IResponse)
class FakeResponse:
    version = (b"HTTP", 1, 1)
    request = None
    previousResponse = None

    def __init__(self, code: int, headers: dict[bytes, bytes], length: int | None) -> None:
        self.code = code
        self.phrase = b"OK" if code < 400 else b"ERROR"
        self.headers = Headers({k: [v] for k, v in headers.items()})
        self.length = UNKNOWN_LENGTH if length is None else length
        self.transport = StringTransport()
        self.protocol: IProtocol | None = None
        self.autoBody: bytes | None = None

    def deliverBody(self, protocol: IProtocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        if self.autoBody is not None:
            if self.autoBody:
                protocol.dataReceived(self.autoBody)
            self.end()

    def send(self, data: bytes) -> None:
        assert self.protocol is not None
        self.protocol.dataReceived(data)

    def end(self, reason: Failure | None = None) -> None:
        assert self.protocol is not None
        self.protocol.connectionLost(reason or Failure(ResponseDone()))

    def setPreviousResponse(self, response: IResponse) -> None:
        pass


@implementer(IAgent)
class FakeAgent:
    """Collects requests; each is answered later by the test."""

    def __init__(self) -> None:
        self.requests: list[SentRequest] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        chunks: list[bytes] = []
        if bodyProducer is not None:

            class Consumer:
                def write(self, data: bytes) -> None:
                    chunks.append(data)

                def registerProducer(self, p: Any, s: bool) -> None:
                    pass

                def unregisterProducer(self) -> None:
                    pass

            bodyProducer.startProducing(Consumer())  # type: ignore[arg-type]

        def cancel(d: Deferred[IResponse]) -> None:
            # As twisted.web's Agent does once the request is on the wire:
            # the connection is aborted and the request's Deferred fails
            # with ResponseNeverReceived wrapping a CancelledError.
            sent.cancelled = True
            d.errback(Failure(ResponseNeverReceived([Failure(CancelledError())])))

        d: Deferred[IResponse] = Deferred(cancel)
        sent = SentRequest(method, uri, headers or Headers(), b"".join(chunks), d)
        self.requests.append(sent)
        return d


__all__ = ["FakeAgent", "FakeResponse", "SentRequest", "succeed"]
