"""
Driving a whole gateway without sockets: a real twisted.web HTTPChannel on a
StringTransport on the client side, a L{FakeAgent} on the upstream side, and
a L{MemoryReactorClock} for time.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.http import HTTPChannel

from codexgw.config import Config, parse
from codexgw.http.site import GatewaySite
from codexgw.service import Gateway
from tests.fakes.agent import FakeAgent

UPSTREAM_URL = "http://upstream.test/v1"


def makeConfig(extra: dict[str, Any] | None = None, **upstream: Any) -> Config:
    """
    One upstream, C{main}, at L{UPSTREAM_URL}. Retries are off unless a test
    asks for them, so each test sees exactly the attempts it scripts.
    """
    upstream.setdefault("retries", {"max_attempts": 1})
    data: dict[str, Any] = {
        # Memory-clock tests have no thread for SQLite; the store has its own tests.
        "store": {"backend": "none"},
        "upstreams": {"main": dict({"base_url": UPSTREAM_URL, "wire_api": "chat"}, **upstream)},
        "default_upstream": "main",
    }
    data.update(extra or {})
    return parse(data, "test.yaml", {})


class ClientConnection:
    """One client connection to the gateway, speaking raw HTTP/1.1."""

    def __init__(self, site: GatewaySite) -> None:
        self.transport = StringTransport()
        self.channel: HTTPChannel = site.buildProtocol(None)  # type: ignore[assignment]
        self.channel.makeConnection(self.transport)

    def send(
        self,
        method: bytes,
        path: bytes,
        body: bytes = b"",
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: gw.test"]
        hdrs = {b"content-type": b"application/json"} if body else {}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            lines.append(k + b": " + v)
        lines.append(b"Content-Length: %d" % len(body))
        self.channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def post(self, path: bytes, payload: Any, headers: dict[bytes, bytes] | None = None) -> None:
        self.send(b"POST", path, orjson.dumps(payload), headers)

    @property
    def raw(self) -> bytes:
        return self.transport.value()

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """Parse what the gateway wrote so far (status, headers, de-chunked body)."""
        head, _, rest = self.raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b": ")
            headers[k.lower()] = v
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while rest:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                body += rest[:n]
                rest = rest[n + 2 :]
        else:
            body = rest
        return status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.response()[2])

    def disconnect(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.channel.connectionLost(Failure(ConnectionLost("client went away")))


class Harness:
    """A gateway on a memory reactor with a fake upstream agent."""

    def __init__(self, config: Config | None = None, store: Any = None) -> None:
        self.reactor = MemoryReactorClock()
        self.agent = FakeAgent()
        self.config = config or makeConfig()
        self.gateway = Gateway(self.config, self.reactor, agent=self.agent, store=store)
        self.site = self.gateway.makeSite(self.reactor)

    def connect(self) -> ClientConnection:
        return ClientConnection(self.site)

    @property
    def sent(self):  # type: ignore[no-untyped-def]
        return self.agent.requests

    def metric(self, name: str, **labels: str) -> float | None:
        return self.gateway.metrics.registry.get_sample_value(name, labels)
