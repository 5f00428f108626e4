"""
The gateway's Redis client: txredisapi's protocol behind a small typed adapter.

txredisapi (Twisted-native, maintained) speaks RESP; this module owns what
the gateway needs around it and txredisapi's own factories do not give:
every command has a timeout, a lost connection fails what was in flight and
is re-made, and while Redis is away commands fail at once and reconnection
backs off (see L{RedisClient}). The handshake (C{AUTH [user] password},
C{SELECT}, C{PING}) is run here, under the same timeout, so a refused
password fails cleanly and its connection is closed, never left open.
C{rediss://} connects with TLS, verifying the server's certificate
(L{twisted.internet.ssl.optionsForClientTLS}) against the system's trust or
a configured CA file. Shared by the rate limiter and the response store,
from one C{redis:} config block.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlparse

import attrs
import txredisapi  # type: ignore[import-untyped]
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, error, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from codexgw.state.rediserrors import RedisError, RedisUnavailable

if TYPE_CHECKING:
    from codexgw.config import RedisConfig

log = Logger()

#: Reconnection after failed attempts: 0.5 s, 1, 2, 4, 8, then every 10 s,
#: each plus up to a quarter second so that replicas do not retry in step.
DEFAULT_RETRY = backoffPolicy(
    initialDelay=0.25, maxDelay=10.0, factor=2.0, jitter=lambda: random.random() / 4
)

#: Seconds a connection must have served for its loss to be retried at once
#: rather than on the backoff schedule.
STABLE = 1.0


def _name(failure: Failure) -> str:
    return failure.type.__name__ if failure.type is not None else "error"


class RedisProtocol(txredisapi.BaseRedisProtocol):  # type: ignore[misc]
    """
    txredisapi's RESP protocol, pipelined, with two changes for the client:

      - Nothing happens on connect: the handshake is the client's, under its
        timeout (txredisapi's own one reports a refused password to its
        factory and keeps no timeout).
      - Replies are values as Redis sent them: status lines as L{str},
        integers as L{int}, bulk strings as L{bytes} (no decoding, no
        guessing at numbers), nested arrays as lists; an error reply fails
        its command with L{RedisError}.

    A reply that completes a bulk string mid-read is parsed on in the same
    call, not on a later reactor turn as txredisapi's line receiver does
    (through the global reactor): replies stay in order with any reactor.
    """

    def __init__(self) -> None:
        super().__init__(charset=None, convertNumbers=False)
        #: Fires when the connection is lost, before what waited is failed.
        self.lost: Deferred[None] = Deferred()
        self._rest = b""
        self._why = "connection to Redis lost"

    def connectionMade(self) -> None:
        self._ready = True

    def command(self, *args: Any) -> Deferred[Any]:
        """Send one command; its reply, or L{RedisError}/L{RedisUnavailable}."""
        try:
            d: Deferred[Any] = self.execute_command(*args)
        except txredisapi.ConnectionError:
            return fail(RedisUnavailable(self._why))
        return d.addErrback(self._translate)

    def _translate(self, failure: Failure) -> Failure:
        """txredisapi's exceptions as ours: an error reply, or Redis not there."""
        if failure.check(txredisapi.ResponseError):
            return Failure(RedisError(str(failure.value)))
        if failure.check(txredisapi.ConnectionError):
            return Failure(RedisUnavailable(self._why))
        if failure.check(txredisapi.RedisError):  # InvalidResponse, InvalidData
            return Failure(RedisError(f"protocol error: {failure.value}"))
        return failure

    def setLineMode(self, extra: bytes | str = b"") -> None:
        self.line_mode = 1
        if extra:
            self._rest = extra if isinstance(extra, bytes) else extra.encode()

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        while True:
            super().dataReceived(data)
            data, self._rest = self._rest, b""
            if not data or self.transport is None or self.transport.disconnecting:
                return

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        # Tell the client first: failing the waiters runs their callbacks at
        # once, and a callback that sends again must not find this protocol.
        # Why it went is kept for what it fails: a refused TLS certificate
        # shows only here, as the handshake runs under the first command.
        if not reason.check(error.ConnectionDone):
            self._why = f"connection to Redis lost ({_name(reason)}: {reason.value})"
        self.lost.callback(None)
        super().connectionLost(reason)


class _RedisFactory(Factory):
    """Connections to Redis, made quietly: no C{Starting factory} line per attempt."""

    protocol = RedisProtocol
    noisy = False


@attrs.frozen
class RedisAddress:
    """
    Where Redis is and how to log in, from a URL.

    @ivar tls: C{rediss://}: TLS, the server's certificate verified for C{host}.
    @ivar username: an ACL user; L{None} for the default user.
    """

    host: str
    port: int
    db: int
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def fromURL(cls, url: str) -> RedisAddress:
        """
        C{redis://[[user]:password@]host[:port][/db]}, or C{rediss://...} for TLS.

        @raise ValueError: not such a URL (the message never holds the URL:
            it may hold the password).
        """
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError("expected a redis:// or rediss:// URL")
        try:
            port = parsed.port or 6379
            db = int(parsed.path.lstrip("/") or 0)
        except ValueError:
            raise ValueError("expected redis[s]://host[:port][/db], a number for each") from None
        password = unquote(parsed.password) if parsed.password is not None else None
        username = unquote(parsed.username) if parsed.username else None
        if password is None and username is not None:
            raise ValueError("an ACL user needs its password: redis://user:password@host")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=port,
            db=db,
            tls=parsed.scheme == "rediss",
            username=username,
            password=password,
        )

    def __str__(self) -> str:
        """C{host:port/db}, for logs and errors: never the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.db}"


def trustRoot(caFile: str | None) -> Any:
    """
    What a C{rediss://} server's certificate is checked against: the CA
    certificates in C{caFile} (PEM, one or more), else the system's trust.
    """
    if caFile is None:
        return ssl.platformTrust()
    with open(caFile, "rb") as f:
        pem = f.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError(f"no PEM certificate in {caFile}")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])


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

    @param url: C{redis://[[user]:password@]host[:port][/db]}, or
        C{rediss://...} for TLS (see L{RedisAddress}).
    @param timeout: seconds a command, or a connection attempt (connect,
        C{AUTH}, C{SELECT} and a C{PING}), may take.
    @param retryPolicy: seconds to wait before the next attempt, given how
        many attempts in a row have failed (as for
        L{twisted.application.internet.ClientService}).
    @param caFile: for C{rediss://}, the PEM file of the CA(s) that signed
        the server's certificate; L{None} for the system's trust.
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        timeout: float = 1.0,
        retryPolicy: Callable[[int], float] | None = None,
        caFile: str | None = None,
    ) -> None:
        where = RedisAddress.fromURL(url)
        self.host, self.port, self.db = where.host, where.port, where.db
        self.username, self.password = where.username, where.password
        self.tls = where.tls
        self.timeout = timeout
        #: Where Redis is, for logs and errors: C{host:port/db}, no password.
        self.address = str(where)
        #: Connection attempts made so far (each one a TCP connect).
        self.connectAttempts = 0
        self._clock: IReactorTime = reactor
        self._endpoint = _endpoint(reactor, where, timeout, caFile)
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

    @classmethod
    def fromConfig(cls, reactor: Any, config: RedisConfig) -> RedisClient:
        """The client for a C{redis:} config block."""
        return cls(reactor, config.url, config.timeout, caFile=config.ca_file)

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
            if self.password is not None:
                login = (self.username, self.password) if self.username else (self.password,)
                try:
                    await proto.command("AUTH", *login)
                except RedisError as e:
                    who = f"ACL user {self.username!r}" if self.username else "the default user"
                    raise RedisError(f"authentication as {who} refused: {e}") from None
            if self.db:
                await proto.command("SELECT", self.db)
            # Up means answering: a port that accepts and then says nothing
            # (a proxy with no Redis behind it, a server still loading) is not.
            await proto.command("PING")
        except BaseException:
            assert proto.transport is not None
            proto.transport.abortConnection()
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
                    used[0].transport.abortConnection()
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


def _endpoint(
    reactor: Any, where: RedisAddress, timeout: float, caFile: str | None
) -> IStreamClientEndpoint:
    """
    An IP address is connected to directly; only a name goes through the
    resolver. With TLS the certificate must be valid for C{where.host} (a
    name or an IP address) and signed by a trusted CA.
    """
    host, port = where.host, where.port
    tcp: IStreamClientEndpoint
    if isIPAddress(host):
        tcp = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    elif isIPv6Address(host):
        tcp = TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    else:
        tcp = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if not where.tls:
        return tcp
    options = ssl.optionsForClientTLS(host, trustRoot=trustRoot(caFile))
    return wrapClientTLS(options, tcp)


__all__ = [
    "RedisAddress",
    "RedisClient",
    "RedisError",
    "RedisProtocol",
    "RedisUnavailable",
    "trustRoot",
]
