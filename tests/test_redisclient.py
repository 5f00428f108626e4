"""
The Redis client: the RESP parser at every split point, without sockets;
and a few commands against a real redis-server.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw.redisclient import RedisClient, RedisError, RedisProtocol, RedisUnavailable, encode
from tests.redis_server import RedisServer

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
        self.assertEqual(encode(("SET", "k", 5)), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n")

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
