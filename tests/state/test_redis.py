"""
The Redis client (txredisapi's protocol behind our adapter): replies parsed
at every split point, without sockets;
the connection's life through an outage (attempts on a backoff schedule,
commands failing at once, one log line each way) on a memory reactor and
clock; and the same against a real redis-server: plain, with a password
(right and wrong, the wrong one leaving no connection open), as an ACL user,
over TLS with the certificate verified, stopped and started.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw.config import ConfigError, parse
from codexgw.errors import StoreUnavailable
from codexgw.state.ratelimit import Limits, RedisRateLimiter
from codexgw.state.redis import (
    STABLE,
    RedisAddress,
    RedisClient,
    RedisError,
    RedisProtocol,
    RedisUnavailable,
)
from codexgw.state.store import RedisStore
from tests.redis_server import RedisServer, ThrowawayCA

NAMESPACE = "codexgw.state.redis"
PASSWORD = "s3cret-pw"


def clientLines(test: Any) -> list[tuple[LogLevel, str]]:
    """Every line the Redis client logs from now on: (level, text)."""
    lines: list[tuple[LogLevel, str]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == NAMESPACE:
            lines.append((event["log_level"], formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


async def until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll C{predicate} on the real reactor, for at most C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await pause(0.01)
    return bool(predicate())


async def pause(seconds: float) -> None:
    """Let the real reactor run for C{seconds}."""
    await deferLater(reactor, seconds, lambda: None)


def everything(test: Any) -> list[str]:
    """Every event anything logs from now on: its text and all its fields."""
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        seen.append(formatEvent(event) + " " + repr(event))

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return seen


def encode(args: tuple[Any, ...]) -> bytes:
    """A command as RESP puts it (the reference, not the client's own encoder)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


REPLIES = b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n$3\r\nabc\r\n*1\r\n+x\r\n-ERR boom\r\n$0\r\n\r\n"
EXPECTED: list[Any] = ["OK", 42, b"hello", None, [1, b"abc", ["x"]], RedisError("ERR boom"), b""]


class ParserTests(SynchronousTestCase):
    def run_split(self, pieces: list[bytes]) -> list[Any]:
        proto = RedisProtocol()
        proto.makeConnection(StringTransport())
        results: list[Any] = []
        for _ in EXPECTED:
            d = proto.command("PING")
            d.addCallbacks(results.append, lambda f: results.append(f.value))
        for piece in pieces:
            proto.dataReceived(piece)
        return results

    def assertReplies(self, results: list[Any]) -> None:
        self.assertEqual(len(results), len(EXPECTED))
        for got, want in zip(results, EXPECTED, strict=True):
            if isinstance(want, RedisError):
                self.assertIsInstance(got, RedisError)
                self.assertEqual(str(got), str(want))
            else:
                self.assertEqual(got, want)

    def test_replies_split_at_every_point_parse_the_same(self) -> None:
        for i in range(len(REPLIES) + 1):
            self.assertReplies(self.run_split([REPLIES[:i], REPLIES[i:]]))

    def test_byte_at_a_time(self) -> None:
        self.assertReplies(self.run_split([REPLIES[i : i + 1] for i in range(len(REPLIES))]))

    def test_commands_are_encoded_as_resp_arrays(self) -> None:
        proto = RedisProtocol()
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.command("SET", "k", 5)
        self.assertEqual(transport.value(), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n")

    def test_bulk_strings_stay_bytes_and_numbers_are_not_guessed(self) -> None:
        proto = RedisProtocol()
        proto.makeConnection(StringTransport())
        got = [proto.command("GET", "k") for _ in range(2)]
        proto.dataReceived(b"$2\r\n42\r\n$2\r\n\xff\xfe\r\n")
        self.assertEqual([self.successResultOf(d) for d in got], [b"42", b"\xff\xfe"])

    def test_lost_connection_fails_what_was_waiting(self) -> None:
        proto = RedisProtocol()
        proto.makeConnection(StringTransport())
        d = proto.command("GET", "k")
        proto.connectionLost()
        self.failureResultOf(d, RedisUnavailable)

    def test_password_never_shows_in_repr(self) -> None:
        client = RedisClient(reactor, "redis://:s3cret-pw@127.0.0.1:6390/2")
        self.assertNotIn("s3cret", repr(client))
        self.assertEqual((client.port, client.db, client.password), (6390, 2, "s3cret-pw"))
        self.assertNotIn("s3cret", repr(RedisAddress.fromURL("redis://u:s3cret-pw@h/1")))


class ConfigTests(SynchronousTestCase):
    def problems(self, redis: dict[str, Any]) -> str:
        with self.assertRaises(ConfigError) as caught:
            parse({"redis": redis}, "t.yaml", {})
        return str(caught.exception)

    def test_rediss_and_acl_urls_are_accepted(self) -> None:
        config = parse({"redis": {"url": "rediss://u:pw@h:6380/2"}}, "t.yaml", {})
        assert config.redis is not None
        self.assertEqual((config.redis.url, config.redis.ca_file), ("rediss://u:pw@h:6380/2", None))

    def test_a_ca_file_needs_rediss_and_must_exist(self) -> None:
        self.assertIn(
            "redis.ca_file: is for TLS", self.problems({"url": "redis://h", "ca_file": __file__})
        )
        missing = self.problems({"url": "rediss://h", "ca_file": "/nonexistent/ca.pem"})
        self.assertIn("redis.ca_file: no such file", missing)

    def test_other_schemes_are_refused(self) -> None:
        self.assertIn("redis.url: expected redis[s]://", self.problems({"url": "http://h"}))


class URLTests(SynchronousTestCase):
    def test_the_url_forms(self) -> None:
        for url, want in [
            ("redis://h", RedisAddress("h", 6379, 0)),
            ("redis://h:7000/3", RedisAddress("h", 7000, 3)),
            ("redis://:p%40ss@h/1", RedisAddress("h", 6379, 1, password="p@ss")),
            ("redis://alice:pw@h", RedisAddress("h", 6379, 0, username="alice", password="pw")),
            ("rediss://alice:pw@h:6380/2", RedisAddress("h", 6380, 2, True, "alice", "pw")),
            ("redis://[::1]:7000", RedisAddress("::1", 7000, 0)),
        ]:
            self.assertEqual(RedisAddress.fromURL(url), want, url)
            self.assertEqual(RedisAddress.fromURL(url).password, want.password, url)
        self.assertEqual(str(RedisAddress.fromURL("rediss://u:pw@[::1]:7000/2")), "[::1]:7000/2")

    def test_bad_urls_are_refused_without_echoing_them(self) -> None:
        for url in ["http://:pw@h", "redis://h:port", "redis://h/db", "redis://user@h"]:
            with self.assertRaises(ValueError) as caught:
                RedisAddress.fromURL(url)
            self.assertNotIn(url, str(caught.exception))


class RealRedisTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self)
        self.client = RedisClient(reactor, self.server.url, timeout=2)
        self.addCleanup(self.client.close)

    async def test_set_get_and_pipelined_commands(self) -> None:
        self.assertEqual(await self.client.execute("SET", "k", "v"), "OK")
        a = self.client.execute("INCR", "n")
        b = self.client.execute("INCR", "n")
        self.assertEqual((await a, await b), (1, 2))
        self.assertEqual(await self.client.execute("GET", "k"), b"v")

    async def test_scripts_load_on_first_use_then_run_by_sha(self) -> None:
        script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        self.assertEqual(await self.client.evalScript(script, ["c"], [5]), 5)
        self.assertEqual(await self.client.evalScript(script, ["c"], [5]), 10)

    async def test_error_reply_is_a_redis_error(self) -> None:
        await self.client.execute("SET", "s", "text")
        with self.assertRaises(RedisError):
            await self.client.execute("INCR", "s")

    async def test_reconnects_after_the_server_restarts(self) -> None:
        await self.client.execute("SET", "k", "v")
        self.server.restart()
        # The first command may find the old connection dead; the next reconnects.
        try:
            await self.client.execute("PING")
        except RedisUnavailable:
            pass
        self.assertEqual(await self.client.execute("PING"), "PONG")

    async def test_unreachable_redis_is_unavailable_not_a_hang(self) -> None:
        self.server.stop()
        client = RedisClient(reactor, self.server.url, timeout=0.5)
        self.addCleanup(client.close)
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")


class OutageTests(SynchronousTestCase):
    """
    The client on Twisted's memory reactor: each connection attempt is a
    C{connectTCP} the test refuses (as a port nobody listens on does) or
    accepts and answers as Redis would; time is the reactor's clock.
    """

    # 1, 2, 4, 8, 8, ... seconds after the first, second, ... failed attempt.
    policy = staticmethod(
        backoffPolicy(initialDelay=0.5, factor=2.0, maxDelay=8.0, jitter=lambda: 0)
    )

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000)
        self.lines = clientLines(self)
        self.client = RedisClient(
            self.reactor, f"redis://:{PASSWORD}@127.0.0.1:6390/2", 1.0, self.policy
        )
        self.changes: list[bool] = []
        self.client.addAvailabilityObserver(self.changes.append)

    def attempts(self) -> int:
        return len(self.reactor.tcpClients)

    def refuse(self) -> None:
        """The last attempt is refused."""
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[-1], Failure(ConnectionRefusedError())
        )

    def accept(self) -> tuple[Any, StringTransport]:
        """The last attempt connects; nothing is answered yet."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.assertEqual((host, port), ("127.0.0.1", 6390))
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def answer(self, proto: Any, transport: StringTransport, *exchange: tuple[Any, bytes]) -> None:
        """Expect each command in turn and send its reply."""
        for command, reply in exchange:
            self.assertEqual(transport.value(), encode(command))
            transport.clear()
            proto.dataReceived(reply)

    def connect(self) -> tuple[Any, StringTransport]:
        """The last attempt connects and its handshake is answered."""
        proto, transport = self.accept()
        self.answer(
            proto,
            transport,
            (("AUTH", PASSWORD), b"+OK\r\n"),
            (("SELECT", 2), b"+OK\r\n"),
            (("PING",), b"+PONG\r\n"),
        )
        return proto, transport

    def up(self) -> tuple[Any, StringTransport]:
        """A first command makes the connection and is answered."""
        d = self.client.execute("PING")
        proto, transport = self.connect()
        self.answer(proto, transport, (("PING",), b"+PONG\r\n"))
        self.assertEqual(self.successResultOf(d), "PONG")
        return proto, transport

    def assertFailsAtOnce(self) -> RedisUnavailable:
        before = self.attempts()
        failure = self.failureResultOf(self.client.execute("GET", "k"), RedisUnavailable)
        self.assertEqual(self.attempts(), before, "a command while down makes no attempt")
        return failure.value  # type: ignore[return-value]

    def test_commands_share_one_connection_made_on_first_use(self) -> None:
        first = self.client.execute("SET", "k", "v")
        second = self.client.execute("GET", "k")
        self.assertEqual(self.attempts(), 1)
        proto, transport = self.connect()
        self.assertEqual(transport.value(), encode(("SET", "k", "v")) + encode(("GET", "k")))
        proto.dataReceived(b"+OK\r\n$1\r\nv\r\n")
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), ("OK", b"v"))
        self.assertEqual((self.lines, self.changes, self.attempts()), ([], [], 1))

    def test_an_outage_costs_attempts_on_a_backoff_schedule_not_one_per_command(self) -> None:
        first = self.client.execute("GET", "k")
        self.refuse()
        self.failureResultOf(first, RedisUnavailable)
        self.assertFalse(self.client.available)
        for _ in range(100):
            self.assertFailsAtOnce()
        for delay in (1, 2, 4, 8, 8, 8):
            self.reactor.advance(delay - 0.01)
            error = self.assertFailsAtOnce()
            self.assertIn("next attempt in 0.0 s", str(error))
            before = self.attempts()
            self.reactor.advance(0.01)
            self.assertEqual(self.attempts(), before + 1, f"one attempt {delay} s later")
            self.assertFailsAtOnce()  # even while that attempt is under way
            self.refuse()
        self.assertEqual(self.attempts(), 7)
        self.assertEqual(len(self.lines), 1, self.lines)
        level, text = self.lines[0]
        self.assertEqual(level, LogLevel.warn)
        self.assertIn("Redis 127.0.0.1:6390/2 unavailable (ConnectionRefusedError", text)
        self.assertEqual(self.changes, [False])

        self.reactor.advance(8)
        proto, transport = self.connect()
        self.assertTrue(self.client.available)
        self.assertEqual(len(self.lines), 2, self.lines)
        self.assertEqual(
            self.lines[1], (LogLevel.info, "Redis 127.0.0.1:6390/2 is back after 39.0 s")
        )
        self.assertEqual(self.changes, [False, True])
        d = self.client.execute("GET", "k")
        self.answer(proto, transport, (("GET", "k"), b"$1\r\nv\r\n"))
        self.assertEqual(self.successResultOf(d), b"v")

    def test_commands_waiting_for_the_first_attempt_fail_with_it(self) -> None:
        waiting = [self.client.execute("GET", "k") for _ in range(3)]
        self.assertEqual(self.attempts(), 1)
        self.refuse()
        for d in waiting:
            error = self.failureResultOf(d, RedisUnavailable).value
            self.assertIn("cannot connect to Redis 127.0.0.1:6390/2", str(error))

    def test_a_lost_connection_is_made_again_at_once_without_a_log_line(self) -> None:
        proto, transport = self.up()
        self.reactor.advance(STABLE)
        inFlight = self.client.execute("GET", "k")
        proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(inFlight, RedisUnavailable)
        self.assertEqual(self.attempts(), 2, "reconnecting at once")
        waiting = self.client.execute("GET", "k")
        proto, transport = self.connect()
        self.answer(proto, transport, (("GET", "k"), b"$-1\r\n"))
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual((self.lines, self.changes), ([], []))

    def test_a_lost_connection_that_cannot_be_made_again_is_down(self) -> None:
        proto, _ = self.up()
        self.reactor.advance(STABLE)
        proto.connectionLost(Failure(ConnectionDone()))
        self.refuse()
        self.assertEqual(self.changes, [False])
        self.assertFailsAtOnce()
        self.reactor.advance(1)
        self.assertEqual(self.attempts(), 3)

    def test_a_connection_that_drops_as_soon_as_it_is_made_is_not_retried_at_once(self) -> None:
        first = self.client.execute("PING")
        self.refuse()
        self.failureResultOf(first, RedisUnavailable)
        self.reactor.advance(1)
        proto, _ = self.connect()  # back...
        proto.connectionLost(Failure(ConnectionDone()))  # ...and gone at once
        self.assertEqual(self.attempts(), 2, "no attempt at once: the schedule goes on")
        self.assertFailsAtOnce()
        self.assertEqual(self.changes, [False, True, False])
        self.reactor.advance(2)
        self.assertEqual(self.attempts(), 3)

    def test_a_port_that_accepts_but_never_answers_is_down_after_the_timeout(self) -> None:
        d = self.client.execute("GET", "k")
        proto, transport = self.accept()
        self.answer(proto, transport, (("AUTH", PASSWORD), b"+OK\r\n"), (("SELECT", 2), b"+OK\r\n"))
        self.assertEqual(transport.value(), encode(("PING",)))
        self.reactor.advance(1)
        error = self.failureResultOf(d, RedisUnavailable).value
        self.assertIn("no answer within 1 s", str(error))
        self.assertTrue(transport.disconnecting, "the silent connection is dropped")
        self.assertEqual(self.changes, [False])
        self.assertFailsAtOnce()

    def test_a_command_that_times_out_drops_the_connection_and_it_is_made_again(self) -> None:
        proto, transport = self.up()
        self.reactor.advance(STABLE)
        d = self.client.execute("GET", "k")
        self.reactor.advance(1)
        self.assertIn("no answer within 1 s", str(self.failureResultOf(d, RedisUnavailable).value))
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.attempts(), 2)

    def test_the_password_is_never_in_a_log_line_or_an_error(self) -> None:
        seen = everything(self)
        d = self.client.execute("GET", "k")
        proto, transport = self.accept()
        # A server that echoes what it was sent must not leak it either.
        self.answer(
            proto, transport, (("AUTH", PASSWORD), f"-WRONGPASS no {PASSWORD}\r\n".encode())
        )
        error = str(self.failureResultOf(d, RedisUnavailable).value)
        self.assertIn("WRONGPASS no ***", error)
        self.assertIn("WRONGPASS", self.lines[0][1])
        self.assertIn("WRONGPASS", str(self.assertFailsAtOnce()))
        for text in [error, repr(self.client), *seen]:
            self.assertNotIn(PASSWORD, text)
        self.assertTrue(transport.disconnecting, "a refused handshake drops the connection")

    def test_an_acl_user_logs_in_with_its_name_and_password(self) -> None:
        client = RedisClient(self.reactor, "redis://alice:pw@127.0.0.1:6390", 1.0, self.policy)
        d = client.execute("GET", "k")
        proto, transport = self.accept()
        self.answer(
            proto,
            transport,
            (("AUTH", "alice", "pw"), b"+OK\r\n"),
            (("PING",), b"+PONG\r\n"),
            (("GET", "k"), b"$1\r\nv\r\n"),
        )
        self.assertEqual(self.successResultOf(d), b"v")

    def test_a_refused_password_closes_its_connection_and_says_why(self) -> None:
        d = self.client.execute("GET", "k")
        proto, transport = self.accept()
        self.answer(
            proto,
            transport,
            (("AUTH", PASSWORD), b"-WRONGPASS invalid username-password pair\r\n"),
        )
        error = str(self.failureResultOf(d, RedisUnavailable).value)
        self.assertIn("authentication as the default user refused: WRONGPASS invalid", error)
        self.assertTrue(transport.disconnecting, "the refused connection is not kept")
        self.assertEqual(transport.value(), b"", "nothing sent after the refusal")
        self.assertEqual(self.changes, [False])

    def test_close_stops_reconnecting(self) -> None:
        first = self.client.execute("GET", "k")
        self.refuse()
        self.failureResultOf(first, RedisUnavailable)
        self.client.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertIn("closed", str(self.assertFailsAtOnce()))
        self.reactor.advance(100)
        self.assertEqual(self.attempts(), 1)

    def test_close_cancels_an_attempt_under_way(self) -> None:
        d = self.client.execute("GET", "k")
        self.client.close()
        self.failureResultOf(d, RedisUnavailable)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.changes, [], "closing is not an outage")


class RealOutageTests(TestCase):
    """A real redis-server stopped for a while, then started again on its port."""

    timeout = 60

    async def test_a_stopped_server_costs_a_few_attempts_and_one_log_line_each_way(self) -> None:
        server = RedisServer(self)
        lines = clientLines(self)
        policy = backoffPolicy(initialDelay=0.05, factor=2.0, maxDelay=0.4, jitter=lambda: 0)
        client = RedisClient(reactor, server.url, timeout=2, retryPolicy=policy)
        self.addCleanup(client.close)
        self.assertEqual(await client.execute("SET", "k", "v"), "OK")
        self.assertEqual(client.connectAttempts, 1)

        server.stop()
        self.assertTrue(await until(lambda: not client.available), "the loss is noticed")
        began, attempts = reactor.seconds(), client.connectAttempts
        commands = 0
        while reactor.seconds() - began < 1.5:
            d = client.execute("GET", "k")
            self.assertTrue(d.called, "fails at once, without waiting for a timeout")
            self.failureResultOf(d, RedisUnavailable)
            commands += 1
            await pause(0.01)
        elapsed = reactor.seconds() - began
        # 0.1, 0.2, 0.4, 0.4, ... s apart: about 1 + elapsed / 0.4 attempts.
        bound = 2 + int(elapsed / 0.4) + 1
        self.assertLessEqual(client.connectAttempts - attempts, bound)
        self.assertGreater(commands, 5 * bound, "many more commands than attempts")
        self.assertEqual(
            [level for level, _ in lines], [LogLevel.warn], "one line for the whole outage"
        )
        self.assertIn(f"Redis 127.0.0.1:{server.port}/0 unavailable", lines[0][1])

        server.start()
        self.assertTrue(await until(lambda: client.available), "the return is noticed")
        self.assertEqual([level for level, _ in lines], [LogLevel.warn, LogLevel.info])
        self.assertIn(f"Redis 127.0.0.1:{server.port}/0 is back", lines[1][1])
        self.assertEqual(await client.execute("SET", "k", "w"), "OK")
        self.assertEqual(await client.execute("GET", "k"), b"w")


class RealLoginTests(TestCase):
    """Logging in to a real redis-server: a password, an ACL user, a wrong password."""

    timeout = 60

    def client(self, url: str, **kwargs: Any) -> RedisClient:
        client = RedisClient(reactor, url, timeout=2, **kwargs)
        self.addCleanup(client.close)
        return client

    async def test_the_right_password_logs_in_and_selects_the_db(self) -> None:
        server = RedisServer(self, password=PASSWORD)
        client = self.client(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/3")
        self.assertEqual(await client.execute("SET", "k", "v"), "OK")
        self.assertIn(b" db=3 ", await client.execute("CLIENT", "INFO"))

    async def test_an_acl_user_logs_in_as_itself(self) -> None:
        server = RedisServer(self, password="default-pw", users=(("alice", "alice-pw"),))
        client = self.client(f"redis://alice:alice-pw@127.0.0.1:{server.port}/0")
        self.assertEqual(await client.execute("ACL", "WHOAMI"), b"alice")
        # Alice's password is hers: as the default user's it is refused.
        other = self.client(f"redis://:alice-pw@127.0.0.1:{server.port}/0")
        with self.assertRaises(RedisUnavailable) as caught:
            await other.execute("PING")
        self.assertIn("WRONGPASS", str(caught.exception))

    async def test_a_wrong_password_fails_clearly_logs_once_and_leaves_no_connection(
        self,
    ) -> None:
        server = RedisServer(self, password=PASSWORD)
        lines = clientLines(self)
        seen = everything(self)
        slow = backoffPolicy(initialDelay=30, factor=1.0, maxDelay=30, jitter=lambda: 0)
        client = self.client(f"redis://:wrong-pw@127.0.0.1:{server.port}/0", retryPolicy=slow)
        with self.assertRaises(RedisUnavailable) as caught:
            await client.execute("PING")
        error = str(caught.exception)
        self.assertIn(f"cannot connect to Redis 127.0.0.1:{server.port}/0", error)
        self.assertIn("authentication as the default user refused: WRONGPASS", error)
        for _ in range(20):
            self.assertIn("WRONGPASS", str(self.failureResultOf(client.execute("GET", "k")).value))
        self.assertEqual(client.connectAttempts, 1)
        self.assertEqual([level for level, _ in lines], [LogLevel.warn], lines)
        self.assertIn("WRONGPASS", lines[0][1])
        self.assertTrue(await until(lambda: server.connectedClients() == 0), "no connection left")
        for text in seen:
            self.assertNotIn("wrong-pw", text)

        # What the store and the limiter make of it: a 503, and the policy.
        store = RedisStore(client, ttl=60, maxBytes=1024)
        failure = self.failureResultOf(store.get("resp_1"), StoreUnavailable)
        self.assertIn("WRONGPASS", str(failure.value))
        limiter = RedisRateLimiter(client, reactor, "closed")
        decision = await limiter.check("alice", Limits(requests_per_minute=1))
        self.assertEqual((decision.allowed, decision.unavailable), (False, True))
        self.assertEqual(server.connectedClients(), 0)

    async def test_no_password_for_a_server_that_wants_one_says_so(self) -> None:
        server = RedisServer(self, password=PASSWORD)
        client = self.client(server.url)
        with self.assertRaises(RedisUnavailable) as caught:
            await client.execute("PING")
        self.assertIn("NOAUTH", str(caught.exception))
        self.assertTrue(await until(lambda: server.connectedClients() == 0), "no connection left")

    async def test_a_wrong_acl_password_is_refused_as_that_user(self) -> None:
        server = RedisServer(self, users=(("alice", "alice-pw"),))
        client = self.client(f"redis://alice:nope@127.0.0.1:{server.port}/0")
        with self.assertRaises(RedisUnavailable) as caught:
            await client.execute("PING")
        self.assertIn(
            "authentication as ACL user 'alice' refused: WRONGPASS", str(caught.exception)
        )
        self.assertNotIn("nope", str(caught.exception))

    async def test_a_wrong_acl_password_leaves_no_connection_after_many_attempts(self) -> None:
        server = RedisServer(self, users=(("alice", "alice-pw"),))
        fast = backoffPolicy(initialDelay=0.01, factor=1.0, maxDelay=0.01, jitter=lambda: 0)
        client = self.client(f"redis://alice:nope@127.0.0.1:{server.port}/0", retryPolicy=fast)
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")
        self.assertTrue(await until(lambda: client.connectAttempts >= 20), "it keeps trying")
        client.close()
        self.assertTrue(await until(lambda: server.connectedClients() == 0), "none leaked")


class RealTLSTests(TestCase):
    """C{rediss://} to a redis-server listening with TLS only, its certificate from a throwaway CA."""

    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self, password=PASSWORD, users=(("alice", "alice-pw"),), tls=True)
        assert self.server.ca is not None
        self.caFile = self.server.ca.certFile

    def client(self, url: str, **kwargs: Any) -> RedisClient:
        client = RedisClient(reactor, url, timeout=2, **kwargs)
        self.addCleanup(client.close)
        return client

    async def test_tls_with_the_certificate_verified_against_the_configured_ca(self) -> None:
        client = self.client(
            f"rediss://alice:alice-pw@127.0.0.1:{self.server.port}/0", caFile=self.caFile
        )
        self.assertEqual(await client.execute("SET", "k", "v"), "OK")
        self.assertEqual(await client.execute("GET", "k"), b"v")
        self.assertEqual(await client.execute("ACL", "WHOAMI"), b"alice")
        # The name in the certificate counts as well as the address.
        byName = self.client(
            f"rediss://:{PASSWORD}@localhost:{self.server.port}/0", caFile=self.caFile
        )
        self.assertEqual(await byName.execute("GET", "k"), b"v")

    async def test_a_certificate_from_another_ca_is_refused(self) -> None:
        other = ThrowawayCA(self.mktemp(), "some other CA")
        lines = clientLines(self)
        client = self.client(
            f"rediss://:{PASSWORD}@127.0.0.1:{self.server.port}/0", caFile=other.certFile
        )
        with self.assertRaises(RedisUnavailable) as caught:
            await client.execute("PING")
        self.assertIn("cannot connect to Redis", str(caught.exception))
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn(PASSWORD, lines[0][1])

    async def test_the_system_trust_does_not_know_a_throwaway_ca(self) -> None:
        client = self.client(f"rediss://:{PASSWORD}@127.0.0.1:{self.server.port}/0")
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")

    async def test_plain_redis_to_a_tls_port_is_unavailable_not_a_hang(self) -> None:
        client = self.client(f"redis://:{PASSWORD}@127.0.0.1:{self.server.port}/0")
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")

    async def test_a_config_with_rediss_and_its_ca_file_connects(self) -> None:
        url = f"rediss://alice:${{ALICE_PW}}@localhost:{self.server.port}/1"
        config = parse(
            {"redis": {"url": url, "ca_file": self.caFile, "timeout": 2}},
            "t.yaml",
            {"ALICE_PW": "alice-pw"},
        )
        assert config.redis is not None
        client = RedisClient.fromConfig(reactor, config.redis)
        self.addCleanup(client.close)
        self.assertEqual(await client.execute("ACL", "WHOAMI"), b"alice")
        self.assertEqual((client.db, client.timeout), (1, 2))

    async def test_reconnects_over_tls_after_the_server_restarts(self) -> None:
        client = self.client(
            f"rediss://:{PASSWORD}@127.0.0.1:{self.server.port}/0", caFile=self.caFile
        )
        self.assertEqual(await client.execute("SET", "k", "v"), "OK")
        self.server.restart()
        # The first command may find the old connection dead; a later one reconnects.
        for _ in range(100):
            try:
                self.assertEqual(await client.execute("PING"), "PONG")
                break
            except RedisUnavailable:
                await pause(0.05)
        else:
            self.fail("no PONG over TLS after the restart")
        self.assertEqual(await client.execute("GET", "k"), None, "a new, empty server")
