# -*- test-case-name: tests.state.test_redis -*-
"""
A small Twisted-native Redis client: RESP2 over one pipelined connection.

The gateway needs few commands (scripts for atomic counters, a store), and
needs them never to block the reactor or hang a request: every command has a
timeout, a lost connection fails what was in flight and is re-made, and
while Redis is away commands fail at once and reconnection backs off (see
L{RedisClient}). Shared by the rate limiter and the response store, from one
C{redis:} config block.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlparse

from twisted.application.internet import backoffPolicy
from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: Reconnection after failed attempts: 0.5 s, 1, 2, 4, 8, then every 10 s,
#: each plus up to a quarter second so that replicas do not retry in step.
DEFAULT_RETRY = backoffPolicy(
    initialDelay=0.25, maxDelay=10.0, factor=2.0, jitter=lambda: random.random() / 4
)

#: Seconds a connection must have served for its loss to be retried at once
#: rather than on the backoff schedule.
STABLE = 1.0


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


class _RedisFactory(Factory):
    """Connections to Redis, made quietly: no C{Starting factory} line per attempt."""

    protocol = RedisProtocol
    noisy = False


class RedisClient:
    """
    One connection to Redis, kept open and re-made when it is lost.

    While Redis cannot be reached the client is I{down}: commands fail at
    once with L{RedisUnavailable}, with no connection attempt of their own,
    and reconnection goes on in the background on a backoff schedule
    (C{retryPolicy}), so an outage costs a few attempts, not one per
    request. The change of state is logged once each way (unavailable, then
    back), never per command, and never with the password.

    An established connection that is lost is re-made at once (a server
    restart, an idle timeout); only when that fails is Redis down.

    @param url: C{redis://[:password@]host[:port][/db]}.
    @param timeout: seconds a command, or a connection attempt (connect,
        C{AUTH}, C{SELECT} and a C{PING}), may take.
    @param retryPolicy: seconds to wait before the next attempt, given how
        many attempts in a row have failed (as for
        L{twisted.application.internet.ClientService}).
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        timeout: float = 1.0,
        retryPolicy: Callable[[int], float] | None = None,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError("expected a redis:// URL")  # never the URL: it may hold the password
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.db = int(parsed.path.lstrip("/") or 0)
        self.timeout = timeout
        host = f"[{self.host}]" if ":" in self.host else self.host
        #: Where Redis is, for logs and errors: C{host:port/db}, no password.
        self.address = f"{host}:{self.port}/{self.db}"
        #: Connection attempts made so far (each one a TCP connect).
        self.connectAttempts = 0
        self._clock: IReactorTime = reactor
        self._endpoint = _endpoint(reactor, self.host, self.port, timeout)
        self._factory = _RedisFactory()
        self._retryPolicy = DEFAULT_RETRY if retryPolicy is None else retryPolicy
        self._proto: RedisProtocol | None = None
        self._connectedAt = 0.0
        self._attempt: Deferred[RedisProtocol] | None = None
        self._waiters: list[Deferred[RedisProtocol]] = []
        self._retry: IDelayedCall | None = None
        self._failures = 0
        self._reason: str | None = None  # why Redis is down; None while it is not
        self._downSince = 0.0
        self._observers: list[Callable[[bool], object]] = []
        self._closed = False
        self._scripts: dict[str, str] = {}

    def __repr__(self) -> str:  # never the password
        return f"<RedisClient {self.address}>"

    @property
    def available(self) -> bool:
        """False from a failed connection attempt until one succeeds."""
        return self._reason is None

    def addAvailabilityObserver(self, observer: Callable[[bool], object]) -> None:
        """Call C{observer(available)} each time Redis goes down or comes back."""
        self._observers.append(observer)

    def _redact(self, text: str) -> str:
        """C{text} without the password, should an error ever echo it."""
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def _describe(self, failure: Failure) -> str:
        if failure.check(CancelledError, defer.TimeoutError, error.TimeoutError):
            return f"no answer within {self.timeout:g} s"
        return self._redact(f"{_name(failure)}: {failure.value}")

    # Connecting.

    async def _handshake(self) -> RedisProtocol:
        proto = cast(RedisProtocol, await self._endpoint.connect(self._factory))
        try:
            if self.password:
                await proto.command("AUTH", self.password)
            if self.db:
                await proto.command("SELECT", self.db)
            # Up means answering: a port that accepts and then says nothing
            # (a proxy with no Redis behind it, a server still loading) is not.
            await proto.command("PING")
        except BaseException:
            assert proto.transport is not None
            proto.transport.abortConnection()  # type: ignore[attr-defined]
            raise
        return proto

    def _connect(self) -> None:
        """Make one connection attempt (nothing else is in progress)."""
        self._retry = None
        self.connectAttempts += 1
        attempt = Deferred.fromCoroutine(self._handshake())
        attempt.addTimeout(self.timeout, self._clock)
        self._attempt = attempt
        attempt.addBoth(self._attempted)

    def _attempted(self, result: RedisProtocol | Failure) -> None:
        self._attempt = None
        waiters, self._waiters = self._waiters, []
        if isinstance(result, Failure):
            reason = "the client was closed" if self._closed else self._describe(result)
            if not self._closed:
                self._failures += 1
                delay = self._retryPolicy(self._failures)
                self._retry = self._clock.callLater(delay, self._connect)
                self._wentDown(reason)
            unavailable = Failure(
                RedisUnavailable(f"cannot connect to Redis {self.address}: {reason}")
            )
            for waiter in waiters:
                if not waiter.called:  # else cancelled by its command's timeout
                    waiter.errback(unavailable)
            return
        proto = result
        self._proto = proto
        self._connectedAt = self._clock.seconds()
        proto.lost.addCallback(lambda _: self._lost(proto))
        self._cameBack()
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(proto)

    def _lost(self, proto: RedisProtocol) -> None:
        if self._proto is not proto:
            return
        self._proto = None
        if self._closed:
            return
        if self._clock.seconds() - self._connectedAt >= STABLE:
            # It served for a while: a restart or an idle timeout. Try again
            # now; the backoff is for attempts that fail.
            self._failures = 0
        if self._failures == 0:
            self._connect()
        else:
            # It came back only to drop again: not a new start of the schedule.
            self._failures += 1
            self._retry = self._clock.callLater(self._retryPolicy(self._failures), self._connect)
            self._wentDown("connection lost right after it was made")

    def _wentDown(self, reason: str) -> None:
        first = self._reason is None
        self._reason = reason
        if not first:
            return
        self._downSince = self._clock.seconds()
        log.warn(
            "Redis {address} unavailable ({reason}); commands fail at once "
            "while it is away, reconnecting with backoff",
            address=self.address,
            reason=reason,
        )
        for observer in list(self._observers):
            observer(False)

    def _cameBack(self) -> None:
        if self._reason is None:
            return
        self._reason = None
        log.info(
            "Redis {address} is back after {outage:.1f} s",
            address=self.address,
            outage=self._clock.seconds() - self._downSince,
        )
        for observer in list(self._observers):
            observer(True)

    def _connection(self) -> Deferred[RedisProtocol]:
        if self._proto is not None:
            return succeed(self._proto)
        if self._closed:
            return fail(RedisUnavailable(f"Redis client for {self.address} is closed"))
        if self._reason is not None:
            # Down: fail now. Only the reconnection schedule tries Redis again.
            if self._retry is not None:
                left = max(0.0, self._retry.getTime() - self._clock.seconds())
                when = f"next attempt in {left:.1f} s"
            else:
                when = "reconnecting"
            return fail(
                RedisUnavailable(f"Redis {self.address} unavailable ({self._reason}); {when}")
            )
        waiter: Deferred[RedisProtocol] = Deferred()
        self._waiters.append(waiter)
        if self._attempt is None:
            self._connect()
        return waiter

    # Commands.

    def execute(self, *args: Any) -> Deferred[Any]:
        """Run one command; fails with L{RedisUnavailable} or L{RedisError}."""
        used: list[RedisProtocol] = []

        async def run() -> Any:
            proto = await self._connection()
            used.append(proto)
            return await proto.command(*args)

        d = Deferred.fromCoroutine(run())
        if d.called:  # failed fast (down), or cannot have been sent
            return d.addErrback(self._unexpected)
        call = self._clock.callLater(self.timeout, d.cancel)

        def finish(result: Any) -> Any:
            if call.active():
                call.cancel()
            if isinstance(result, Failure) and not result.check(RedisError, RedisUnavailable):
                # A timeout leaves replies out of step: start afresh.
                if used and used[0] is self._proto and used[0].transport is not None:
                    used[0].transport.abortConnection()  # type: ignore[attr-defined]
                return Failure(RedisUnavailable(f"Redis {self.address}: {self._describe(result)}"))
            return result

        return d.addBoth(finish)

    def _unexpected(self, failure: Failure) -> Failure:
        if failure.check(RedisError, RedisUnavailable):
            return failure
        return Failure(RedisUnavailable(f"Redis {self.address}: {self._describe(failure)}"))

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
        """Close the connection and stop reconnecting; later commands fail."""
        self._closed = True
        retry, self._retry = self._retry, None
        if retry is not None and retry.active():
            retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()


def _endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """An IP address is connected to directly; only a name goes through the resolver."""
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


__all__ = ["RedisClient", "RedisError", "RedisProtocol", "RedisUnavailable", "encode"]
