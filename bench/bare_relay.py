"""
The baseline for bench/run.py: a bare twisted.web relay, what a competent
engineer writes in sixty lines. POST bodies go upstream through treq on a
persistent pool; the answer streams back chunk by chunk. No parsing, no
metrics, no logging, no auth.

Usage: python bench/bare_relay.py PORT UPSTREAM_BASE_URL
"""

from __future__ import annotations

import sys
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.protocol import Protocol
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


class Copy(Protocol):
    def __init__(self, request: Any) -> None:
        self.request = request

    def dataReceived(self, data: bytes) -> None:
        self.request.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.request.finished and self.request.channel is not None:
            self.request.finish()


class Relay(Resource):
    isLeaf = True

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 256

    def render_POST(self, request: Any) -> Any:
        d = treq.post(
            self.base + request.path.decode()[len("/v1") :],
            data=request.content.read(),
            headers={b"content-type": b"application/json"},
            pool=self.pool,
            unbuffered=True,
        )

        def got(response: Any) -> None:
            request.setResponseCode(response.code)
            ctype = response.headers.getRawHeaders(b"content-type")
            if ctype:
                request.setHeader(b"content-type", ctype[0])
            response.deliverBody(Copy(request))

        def failed(f: Any) -> None:
            request.setResponseCode(502)
            request.finish()

        d.addCallbacks(got, failed)
        return NOT_DONE_YET


class QuietSite(Site):
    def log(self, request: Any) -> None:
        pass


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), QuietSite(Relay(sys.argv[2])), interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()
