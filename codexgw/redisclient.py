# -*- test-case-name: tests.test_redisclient -*-
"""
A small Twisted-native Redis client: RESP2 over one pipelined connection.

The gateway needs few commands (scripts for atomic counters, later a store),
and needs them never to block the reactor or hang a request: every command
has a timeout, a lost connection fails what was in flight and the next
command reconnects. Shared by the rate limiter and, later, a response store,
from one C{redis:} config block.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlparse

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure


class RedisError(Exception):
    """Redis answered with an error reply."""


class RedisUnavailable(Exception):
    """Redis could not be reached, or did not answer in time."""


class _Incomplete(Exception):
    pass


def _parse(buf: bytes, at: int) -> tuple[Any, int]:
    """One RESP2 reply from C{buf[at:]}: (value, next offset)."""
    end = buf.find(b"\r\n", at)
    if end < 0:
        raise _Incomplete()
    kind, line = buf[at : at + 1], buf[at + 1 : end]
    at = end + 2
    if kind == b"+":
        return line.decode(), at
    if kind == b"-":
        return RedisError(line.decode(errors="replace")), at
    if kind == b":":
        return int(line), at
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, at
        if len(buf) < at + n + 2:
            raise _Incomplete()
        return buf[at : at + n], at + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, at
        items = []
        for _ in range(n):
            item, at = _parse(buf, at)
            items.append(item)
        return items, at
    raise RedisError(f"protocol error: unexpected reply type {kind!r}")


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int | float):
            arg = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _name(failure: Failure) -> str:
    return failure.type.__name__ if failure.type is not None else "error"


class RedisProtocol(Protocol):
    """Pipelined commands; replies are matched to them in order."""

    def __init__(self) -> None:
        self._buf = b""
        self._waiting: deque[Deferred[Any]] = deque()
        self.lost: Deferred[None] = Deferred()

    def command(self, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiting.append(d)
        assert self.transport is not None
        self.transport.write(encode(args))
        return d

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data
        at = 0
        while at < len(buf):
            try:
                value, at = _parse(buf, at)
            except _Incomplete:
                break
            except (RedisError, ValueError) as e:
                self._failAll(Failure(RedisError(f"protocol error: {e}")))
                assert self.transport is not None
                self.transport.loseConnection()
                return
            if not self._waiting:
                continue
            d = self._waiting.popleft()
            if isinstance(value, RedisError):
                d.errback(value)
            else:
                d.callback(value)
        self._buf = buf[at:]

    def _failAll(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(failure)

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        # Tell the client first: failing the waiters runs their callbacks at
        # once, and a callback that sends again must not find this protocol.
        self.lost.callback(None)
        self._failAll(Failure(RedisUnavailable("connection to Redis lost")))


class RedisClient:
    """
    @param url: C{redis://[:password@]host[:port][/db]}.
    @param timeout: seconds a command (connect included) may take.
    """

    def __init__(self, reactor: Any, url: str, timeout: float = 1.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"expected a redis:// URL, got {url!r}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.db = int(parsed.path.lstrip("/") or 0)
        self.timeout = timeout
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._proto: RedisProtocol | None = None
        self._waiters: list[Deferred[RedisProtocol]] = []
        self._scripts: dict[str, str] = {}

    def __repr__(self) -> str:  # never the password
        return f"<RedisClient {self.host}:{self.port}/{self.db}>"

    async def _connect(self) -> RedisProtocol:
        endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self.timeout)
        proto = cast(RedisProtocol, await endpoint.connect(Factory.forProtocol(RedisProtocol)))
        proto.lost.addCallback(lambda _: self._forget(proto))
        if self.password:
            await proto.command("AUTH", self.password)
        if self.db:
            await proto.command("SELECT", self.db)
        return proto

    def _forget(self, proto: RedisProtocol) -> None:
        if self._proto is proto:
            self._proto = None

    def _connection(self) -> Deferred[RedisProtocol]:
        if self._proto is not None:
            return succeed(self._proto)
        waiter: Deferred[RedisProtocol] = Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            Deferred.fromCoroutine(self._connect()).addBoth(self._connected)
        return waiter

    def _connected(self, result: Any) -> None:
        waiters, self._waiters = self._waiters, []
        if isinstance(result, RedisProtocol):
            self._proto = result
        for waiter in waiters:
            if waiter.called:  # cancelled by its command's timeout
                continue
            if isinstance(result, Failure):
                waiter.errback(RedisUnavailable(f"cannot connect to Redis: {_name(result)}"))
            else:
                waiter.callback(result)

    def execute(self, *args: Any) -> Deferred[Any]:
        """Run one command; fails with L{RedisUnavailable} or L{RedisError}."""

        async def run() -> Any:
            proto = await self._connection()
            return await proto.command(*args)

        d = Deferred.fromCoroutine(run())
        call = self._clock.callLater(self.timeout, d.cancel)

        def finish(result: Any) -> Any:
            if call.active():
                call.cancel()
            if isinstance(result, Failure) and not result.check(RedisError):
                if not result.check(RedisUnavailable):
                    # A timeout leaves replies out of step: start afresh.
                    proto, self._proto = self._proto, None
                    if proto is not None and proto.transport is not None:
                        proto.transport.abortConnection()  # type: ignore[attr-defined]
                    return Failure(RedisUnavailable(f"Redis did not answer: {_name(result)}"))
            return result

        return d.addBoth(finish)

    async def evalScript(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, loading the script with EVAL the first time (NOSCRIPT)."""
        sha = self._scripts.get(script)
        if sha is None:
            sha = self._scripts[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except RedisError as e:
            if "NOSCRIPT" not in str(e):
                raise
        return await self.execute("EVAL", script, len(keys), *keys, *args)

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()


__all__ = ["RedisClient", "RedisError", "RedisProtocol", "RedisUnavailable", "encode"]
