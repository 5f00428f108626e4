"""
Stored responses: one store suite run against SQLite and a real Redis; and
the openai SDK using previous_response_id through the gateway.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from codexgw.errors import GatewayError
from codexgw.state.redis import RedisClient
from codexgw.state.store import RedisStore, SQLiteStore, StoredResponse, StoreFull
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.http.test_bridge_sdk import serveBytes
from tests.integration.test_integration import LiveGateway, until
from tests.redis_server import RedisServer


def record(rid: str, owner: str = "alice", previous: str | None = None) -> StoredResponse:
    return StoredResponse(
        id=rid,
        owner=owner,
        response={
            "id": rid,
            "object": "response",
            "output": [{"type": "message", "id": "m" + rid}],
        },
        input_items=[{"id": "i" + rid, "type": "message", "role": "user", "content": "hi"}],
        previous_id=previous,
    )


async def assertUnavailable(test: TestCase, d: Any) -> GatewayError:
    """C{d} fails with the gateway's 503 C{store_unavailable}, not the backend's error."""
    error: GatewayError = await test.assertFailure(d, GatewayError)
    test.assertEqual((error.status, error.code), (503, "store_unavailable"))
    test.assertEqual(error.headers, {b"retry-after": b"1"})
    return error


class StoreSuite:
    store: Any

    async def test_saved_records_come_back(self) -> None:
        await self.store.save(record("resp_1"))
        got = await self.store.get("resp_1")
        self.assertEqual(got, record("resp_1"))

    async def test_unknown_is_none_and_delete_forgets(self) -> None:
        self.assertIsNone(await self.store.get("resp_nope"))
        await self.store.save(record("resp_2"))
        self.assertTrue(await self.store.delete("resp_2"))
        self.assertIsNone(await self.store.get("resp_2"))
        self.assertFalse(await self.store.delete("resp_2"))

    async def test_entries_over_the_cap_are_refused(self) -> None:
        big = StoredResponse("resp_big", "a", {"x": "y" * 5000}, [])
        with self.assertRaises(StoreFull):
            await self.store.save(big)


class SQLiteStoreTests(StoreSuite, TestCase):
    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "nested", "r.sqlite3")
        self.store = SQLiteStore(reactor, self.path, ttl=3600, maxBytes=4096)
        self.addCleanup(self.store.close)

    async def test_records_survive_a_restart(self) -> None:
        await self.store.save(record("resp_keep"))
        await self.store.close()
        self.store = SQLiteStore(reactor, self.path, ttl=3600, maxBytes=4096)
        self.addCleanup(self.store.close)
        self.assertEqual((await self.store.get("resp_keep")).id, "resp_keep")

    async def test_a_file_that_is_not_a_database_fails_each_call_until_it_is_fixed(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"garbage " * 1000)
        broken = SQLiteStore(reactor, path, ttl=3600, maxBytes=4096)  # does not raise
        self.addCleanup(broken.close)
        for d in (broken.get("resp_1"), broken.save(record("resp_1")), broken.delete("resp_1")):
            error = await assertUnavailable(self, d)
            self.assertIn("SQLite", str(error))
        os.remove(path)
        await broken.save(record("resp_1"))
        self.assertEqual(await broken.get("resp_1"), record("resp_1"))

    async def test_a_path_that_cannot_be_created_is_unavailable(self) -> None:
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        store = SQLiteStore(reactor, os.path.join(blocker, "r.sqlite3"), 3600, 4096)
        self.addCleanup(store.close)
        await assertUnavailable(self, store.get("resp_1"))
        await assertUnavailable(self, store.save(record("resp_1")))

    async def test_an_unreadable_record_is_unavailable(self) -> None:
        await self.store.save(record("resp_bad"))

        def spoil(db: Any) -> None:
            db.execute("UPDATE responses SET data = ? WHERE id = ?", (b"{not json", "resp_bad"))

        await self.store._run(spoil)
        await assertUnavailable(self, self.store.get("resp_bad"))

    async def test_expired_entries_are_gone(self) -> None:
        short = SQLiteStore(reactor, self.path + "2", ttl=-1, maxBytes=4096)
        self.addCleanup(short.close)
        await short.save(record("resp_old"))
        self.assertIsNone(await short.get("resp_old"))


class RedisStoreTests(StoreSuite, TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self)
        self.client = RedisClient(reactor, self.server.url)
        self.addCleanup(self.client.close)
        self.store = RedisStore(self.client, ttl=3600, maxBytes=4096)

    async def test_redis_away_is_unavailable_at_once_and_its_return_is_noticed(self) -> None:
        await self.store.save(record("resp_1"))
        self.server.stop()
        self.assertTrue(await until(lambda: not self.client.available), "the loss is noticed")
        attempts = self.client.connectAttempts
        for d in (
            self.store.get("resp_1"),
            self.store.save(record("resp_2")),
            self.store.delete("resp_1"),
        ):
            self.assertTrue(d.called, "a 503 at once, not after a timeout")
            error = await assertUnavailable(self, d)
            self.assertIn(f"Redis 127.0.0.1:{self.server.port}/0 unavailable", str(error))
        self.assertEqual(self.client.connectAttempts, attempts, "no attempt per call")
        self.server.start()  # empty again: nothing is saved to disk
        self.assertTrue(await until(lambda: self.client.available), "the return is noticed")
        await self.store.save(record("resp_3"))
        self.assertEqual(await self.store.get("resp_3"), record("resp_3"))

    async def test_an_unreadable_record_is_unavailable(self) -> None:
        await self.client.execute("SET", "codexgw:resp:resp_bad", "{not json")
        await assertUnavailable(self, self.store.get("resp_bad"))


class PreviousResponseTests(TestCase):
    """The SDK holds only ids; the gateway rebuilds the conversation."""

    timeout = 60

    async def test_three_turns_with_a_tool_call_retrieve_list_delete(self) -> None:
        path = os.path.abspath(self.mktemp())
        live = LiveGateway(self, store=SQLiteStore(reactor, path, 3600, 1 << 20))
        from openai import OpenAI

        client = OpenAI(base_url=live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(client.close)
        call = b"".join(
            [
                chatChunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                            }
                        ],
                    }
                ),
                chatChunk({}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        )
        live.upstream.script += [
            serveBytes(b"".join(textStream(["Hello"]))),
            serveBytes(call),
            serveBytes(b"".join(textStream(["Done"]))),
        ]
        tools = [
            {
                "type": "function",
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ]
        r1 = await deferToThread(client.responses.create, model="m", input="first", tools=tools)
        r2 = await deferToThread(
            client.responses.create,
            model="m",
            input="second",
            tools=tools,
            previous_response_id=r1.id,
        )
        self.assertEqual(r2.output[0].type, "function_call")
        r3 = await deferToThread(
            client.responses.create,
            model="m",
            tools=tools,
            previous_response_id=r2.id,
            input=[
                {"type": "function_call_output", "call_id": r2.output[0].call_id, "output": "42"}
            ],
        )
        self.assertEqual(r3.output_text, "Done")
        third = live.upstream.received[2].body["messages"]
        self.assertEqual(
            [m["role"] for m in third], ["user", "assistant", "user", "assistant", "tool"]
        )
        self.assertEqual(third[0]["content"], "first")
        self.assertEqual(third[3]["tool_calls"][0]["id"], "call_1")
        self.assertEqual(third[4]["content"], "42")

        got = await deferToThread(client.responses.retrieve, r3.id)
        self.assertEqual(got.id, r3.id)
        items = await deferToThread(client.responses.input_items.list, r3.id, order="asc")
        self.assertEqual([i.type for i in items.data][-1], "function_call_output")
        await deferToThread(client.responses.delete, r3.id)
        from openai import NotFoundError

        await self.assertFailure(deferToThread(client.responses.retrieve, r3.id), NotFoundError)

    async def test_unknown_previous_id_is_404(self) -> None:
        live = LiveGateway(
            self, store=SQLiteStore(reactor, os.path.abspath(self.mktemp()), 3600, 1 << 20)
        )
        from openai import NotFoundError, OpenAI

        client = OpenAI(base_url=live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(client.close)
        error = await self.assertFailure(
            deferToThread(
                client.responses.create, model="m", input="x", previous_response_id="resp_nope"
            ),
            NotFoundError,
        )
        self.assertEqual(error.body["code"], "previous_response_not_found")

    async def test_store_false_saves_nothing(self) -> None:
        live = LiveGateway(
            self, store=SQLiteStore(reactor, os.path.abspath(self.mktemp()), 3600, 1 << 20)
        )
        from openai import NotFoundError, OpenAI

        client = OpenAI(base_url=live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(client.close)
        r = await deferToThread(client.responses.create, model="m", input="x", store=False)
        await self.assertFailure(deferToThread(client.responses.retrieve, r.id), NotFoundError)


class SharedStateTests(TestCase):
    timeout = 60

    async def test_another_key_cannot_see_it_and_two_gateways_share_it_through_redis(self) -> None:
        from openai import NotFoundError, OpenAI

        from codexgw.config import parse
        from codexgw.service import Gateway
        from tests.fakes.chat_upstream import FakeChatUpstream
        from tests.integration.test_integration import serve

        server = RedisServer(self)
        upstream = FakeChatUpstream()
        upstreamPort = serve(self, upstream)
        config = parse(
            {
                "upstreams": {
                    "main": {"base_url": f"http://127.0.0.1:{upstreamPort.getHost().port}/v1"}
                },
                "auth": {"keys": [{"name": "alice", "key": "ka"}, {"name": "bob", "key": "kb"}]},
                "redis": {"url": server.url},
                "store": {"backend": "redis"},
            },
            "t.yaml",
            {},
        )
        # One gateway in this process, the other a separate `twistd codexgw`.
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        bases = [f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1"]
        bases.append(await startTwistd(self, configText(upstreamPort.getHost().port, server.url)))
        clients = {}
        for name, base, key in [
            ("a1", bases[0], "ka"),
            ("a2", bases[1], "ka"),
            ("b2", bases[1], "kb"),
        ]:
            clients[name] = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=20)
            self.addCleanup(clients[name].close)
        first = await deferToThread(clients["a1"].responses.create, model="m", input="remember 7")
        second = await deferToThread(
            clients["a2"].responses.create, model="m", input="and?", previous_response_id=first.id
        )
        history = upstream.received[-1].body["messages"]
        self.assertEqual([m["role"] for m in history], ["user", "assistant", "user"])
        self.assertEqual(history[0]["content"], "remember 7")
        self.assertTrue(second.id)
        await self.assertFailure(
            deferToThread(clients["b2"].responses.retrieve, first.id), NotFoundError
        )
        await self.assertFailure(
            deferToThread(
                clients["b2"].responses.create, model="m", input="x", previous_response_id=first.id
            ),
            NotFoundError,
        )
        got = await deferToThread(clients["a2"].responses.retrieve, first.id)
        self.assertEqual(got.id, first.id)


def configText(upstreamPort: int, redisURL: str) -> str:
    return (
        f"upstreams:\n  main:\n    base_url: http://127.0.0.1:{upstreamPort}/v1\n"
        "auth:\n  keys:\n    - {name: alice, key: ka}\n    - {name: bob, key: kb}\n"
        f"redis:\n  url: {redisURL}\nstore:\n  backend: redis\n"
    )


async def startTwistd(test: TestCase, config: str) -> str:
    """A real `twistd -n codexgw` on a free port; stopped by cleanup. Returns its /v1 URL."""
    import sys

    from tests.integration.test_integration import httpClient, until
    from tests.test_service import freePort
    from tests.test_shutdown import _Process

    port = freePort()
    path = os.path.abspath(test.mktemp())
    with open(path, "w") as f:
        f.write(f'listen: "tcp:{port}:interface=127.0.0.1"\n' + config)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    proto = _Process()
    process = reactor.spawnProcess(
        proto,
        twistd,
        [twistd, "-n", "--pidfile=", "codexgw", "--config", path],
        env=dict(os.environ),
        path=os.path.dirname(path),
    )

    async def stop() -> None:
        if not proto.ended.called:
            process.signalProcess("TERM")
            await proto.ended

    test.addCleanup(stop)
    http = httpClient(test)
    for _ in range(100):
        try:
            response = await http.get(f"http://127.0.0.1:{port}/health/live")
            await response.content()
            break
        except Exception:
            await until(lambda: False, timeout=0.1)
    return f"http://127.0.0.1:{port}/v1"
