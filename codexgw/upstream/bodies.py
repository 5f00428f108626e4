# -*- test-case-name: tests.upstream.test_bodies -*-
"""
Reading the small bodies of upstream answers (errors, listings) with a cap.

Streams go through relays; everything else an upstream sends is read here,
so no upstream can make the gateway hold more than it chose to.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import IResponse
from zope.interface import implementer

ERROR_BODY_LIMIT = 64 * 1024
"""
The most of an upstream's error (or other unwanted) body that is read. An
error answer is a few hundred bytes; a server that sends megabytes with a 500
must not make the gateway hold them.
"""


class _CappedReader(Protocol):
    """Collects a body up to C{limit} bytes, then drops the rest unread."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._done = done

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        room = self._limit - self._size
        if len(data) >= room:
            self._parts.append(data[:room])
            self._finish()
            # Whatever else the upstream wanted to send is not wanted here:
            # closing the connection is cheaper than reading it.
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self._parts.append(data)
        self._size += len(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        # A body cut short is still worth what it holds: it is an error's
        # description, not an answer.
        self._finish()

    def _finish(self) -> None:
        if not self._done.called:
            self._done.callback(b"".join(self._parts))


def readCapped(response: IResponse, limit: int = ERROR_BODY_LIMIT) -> Deferred[bytes]:
    """
    At most C{limit} bytes of C{response}'s body: for error answers and
    small listings, never for a stream. Cancelling it drops the connection.
    """
    reader: _CappedReader

    def cancel(d: Deferred[bytes]) -> None:
        if reader.transport is not None:
            reader.transport.stopProducing()  # type: ignore[attr-defined]

    done: Deferred[bytes] = Deferred(cancel)
    reader = _CappedReader(limit, done)
    response.deliverBody(reader)
    return done


@implementer(IPushProducer)
class _Read:
    """The transport of a body already read: nothing left to pause or stop."""

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IResponse)
class _Replayed:
    """An upstream's answer whose body was read already, delivered again."""

    def __init__(self, response: IResponse, body: bytes) -> None:
        self.version = response.version
        self.code = response.code
        self.phrase = response.phrase
        self.headers = response.headers
        self.length = len(body)
        self.request = response.request
        self.previousResponse = response.previousResponse
        self._body = body

    def deliverBody(self, protocol: IProtocol) -> None:
        protocol.makeConnection(_Read())  # type: ignore[arg-type]
        if self._body:
            protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response


def replayed(response: IResponse, body: bytes) -> IResponse:
    """
    C{response} as it came, but for its body, which was read already (by
    L{readCapped}, to look into it) and is delivered again as C{body}: what
    reads the answer next need not know that it was looked at.
    """
    return _Replayed(response, body)
