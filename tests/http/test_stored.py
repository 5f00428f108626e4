"""
The stored-response routes and C{previous_response_id} through the whole
gateway, without sockets: a response store that cannot be reached is a 503
(never a 500 or a broken answer), and another key's response is exactly an
unknown id.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw.state.store import SQLiteStore, StoredResponse
from tests.fakes.chat_upstream import textStream
from tests.fakes.store import MemoryStore
from tests.harness import UPSTREAM_URL, ClientConnection, Harness, makeConfig
from tests.integration.test_integration import until

JSON = {b"content-type": b"application/json"}
SSE = {b"content-type": b"text/event-stream"}
RESPONSES = b"/v1/responses"
# The gateway's Redis client on the harness's memory reactor: the connection
# never completes, so every command times out after REDIS_TIMEOUT.
REDIS_TIMEOUT = 1.0
REDIS_DOWN = {
    "store": {"backend": "redis"},
    "redis": {"url": "redis://127.0.0.1:6379/0", "timeout": REDIS_TIMEOUT},
}
KEYS = {"auth": {"keys": [{"name": "alice", "key": "ka"}, {"name": "bob", "key": "kb"}]}}
ALICE = {b"authorization": b"Bearer ka"}
BOB = {b"authorization": b"Bearer kb"}


def bobsTurn(rid: str = "resp_bob") -> StoredResponse:
    return StoredResponse(
        id=rid,
        owner="bob",
        response={"id": rid, "object": "response", "output": [], "status": "completed"},
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": "secret"}],
    )


class LogCapture:
    """Every log event while a test runs."""

    def __init__(self, test: Any) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def at(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]

    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "log_failure" in e]


class StoreOutageTests(SynchronousTestCase):
    """Redis away with store.backend: redis."""

    def setUp(self) -> None:
        self.logs = LogCapture(self)
        self.h = Harness(makeConfig(REDIS_DOWN))

    def assertStoreUnavailable(self, client: ClientConnection) -> None:
        status, headers, body = client.response()
        self.assertEqual(client.raw.split(b"\r\n")[0], b"HTTP/1.1 503 Service Unavailable")
        self.assertEqual(headers[b"retry-after"], b"1")
        self.assertEqual(headers[b"content-type"], b"application/json")
        error = orjson.loads(body)["error"]
        self.assertEqual((error["type"], error["code"]), ("server_error", "store_unavailable"))
        self.assertNotIn("6379", error["message"], "the backend's details stay in the log")

    def assertLoggedAsWarningWithoutTraceback(self, count: int) -> None:
        self.assertEqual(self.logs.failures(), [])
        self.assertEqual(self.logs.at(LogLevel.critical), [])
        warnings = [w for w in self.logs.at(LogLevel.warn) if "response store unavailable" in w]
        self.assertEqual(len(warnings), count, warnings)
        self.assertIn("Redis", warnings[0])
        self.assertIn("request_id=gw-", warnings[0])

    def test_stored_response_routes_are_503_store_unavailable(self) -> None:
        for method, path in [
            (b"GET", b"/v1/responses/resp_1"),
            (b"DELETE", b"/v1/responses/resp_1"),
            (b"GET", b"/v1/responses/resp_1/input_items"),
        ]:
            client = self.h.connect()
            client.send(method, path)
            # The first waits for Redis; once it is known to be away, the
            # next ones are refused at once.
            self.h.reactor.advance(REDIS_TIMEOUT)
            self.assertStoreUnavailable(client)
        self.assertEqual(self.h.sent, [])
        # One line for the outage, not one beside every access line.
        self.assertLoggedAsWarningWithoutTraceback(1)
        self.assertEqual(
            self.h.metric(
                "codexgw_requests_total",
                route="/v1/responses/{id}",
                status="503",
                upstream="-",
                model="none",
            ),
            2.0,
        )

    def test_previous_response_id_is_503_and_nothing_is_sent_upstream(self) -> None:
        for stream in (False, True):
            client = self.h.connect()
            client.post(
                RESPONSES,
                {"model": "m", "input": "and?", "previous_response_id": "resp_1", "stream": stream},
            )
            self.h.reactor.advance(REDIS_TIMEOUT)
            self.assertStoreUnavailable(client)
        self.assertEqual(self.h.sent, [])
        self.assertLoggedAsWarningWithoutTraceback(1)

    def test_a_turn_that_cannot_be_saved_is_still_answered_whole(self) -> None:
        for stream in (False, True):
            client = self.h.connect()
            client.post(RESPONSES, {"model": "m", "input": "hi", "stream": stream})
            self.h.sent[-1].respond(200, SSE, b"".join(textStream(["Hello"])))
            answered = client.raw
            self.assertTrue(answered.endswith(b"\r\n0\r\n\r\n"), "the answer is complete")
            self.h.reactor.advance(REDIS_TIMEOUT)  # the save times out afterwards
            self.assertEqual(client.raw, answered, "nothing more is written")
            status, _, body = client.response()
            self.assertEqual(status, 200)
            self.assertIn(b"Hello", body)
        self.assertEqual(self.logs.failures(), [])
        self.assertEqual(self.logs.at(LogLevel.critical), [])
        unsaved = [w for w in self.logs.at(LogLevel.warn) if "could not store response" in w]
        self.assertEqual(len(unsaved), 1, unsaved)
        self.assertIn("Redis", unsaved[0])


class BrokenSQLiteTests(TestCase):
    """A SQLite store whose file is not a database: 503, no crash, no traceback."""

    timeout = 30

    def setUp(self) -> None:
        self.logs = LogCapture(self)
        self.path = os.path.abspath(self.mktemp())
        with open(self.path, "wb") as f:
            f.write(b"this is not a database\n" * 100)
        store = SQLiteStore(reactor, self.path, 3600, 1 << 20)
        self.h = Harness(store=store)
        self.addCleanup(store.close)

    async def answer(self, client: ClientConnection) -> tuple[int, dict[bytes, bytes], bytes]:
        self.assertTrue(await until(lambda: client.raw.endswith(b"\r\n0\r\n\r\n")))
        return client.response()

    async def test_reads_are_503_store_unavailable(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/v1/responses/resp_1")
        status, headers, body = await self.answer(client)
        self.assertEqual((status, headers[b"retry-after"]), (503, b"1"))
        self.assertEqual(orjson.loads(body)["error"]["code"], "store_unavailable")
        client = self.h.connect()
        client.post(RESPONSES, {"model": "m", "input": "x", "previous_response_id": "resp_1"})
        status, _, body = await self.answer(client)
        self.assertEqual(orjson.loads(body)["error"]["code"], "store_unavailable")
        self.assertEqual(self.h.sent, [])
        self.assertEqual(self.logs.failures(), [])
        # One line for the outage, not one per request.
        [first] = [w for w in self.logs.at(LogLevel.warn) if "response store unavailable" in w]
        self.assertIn("SQLite", first)

    async def test_a_turn_that_cannot_be_saved_is_still_answered(self) -> None:
        client = self.h.connect()
        client.post(RESPONSES, {"model": "m", "input": "hi"})
        self.h.sent[-1].respond(200, SSE, b"".join(textStream(["Hello"])))
        status, _, body = await self.answer(client)
        self.assertEqual(status, 200)
        self.assertEqual(orjson.loads(body)["output"][0]["content"][0]["text"], "Hello")
        self.assertTrue(
            await until(lambda: any("could not store" in w for w in self.logs.at(LogLevel.warn)))
        )
        self.assertEqual(self.logs.failures(), [])


class AnotherKeysResponseTests(SynchronousTestCase):
    """
    To alice, bob's stored response is an unknown id: each answer is compared
    with the answer to the same id once bob's record is gone.
    """

    def gateway(self, upstreams: dict[str, Any] | None = None) -> Harness:
        extra: dict[str, Any] = dict(KEYS)
        if upstreams is not None:
            extra["upstreams"] = upstreams
        self.store = MemoryStore()
        h = Harness(makeConfig(extra), store=self.store)
        return h

    def call(self, h: Harness, method: bytes, path: bytes, body: Any = None) -> tuple[Any, ...]:
        """What alice sees (status, headers, body) and what went upstream."""
        before = len(h.sent)
        client = h.connect()
        if body is None:
            client.send(method, path, headers=ALICE)
        else:
            client.post(path, body, ALICE)
        sent = h.sent[before:]
        for request in sent:
            request.respond(404, JSON, b'{"error": {"message": "upstream: no such response"}}')
        status, headers, raw = client.response()
        for varying in (b"date", b"x-request-id"):
            headers.pop(varying, None)
        upstream = [
            (
                r.method,
                r.uri,
                r.body,
                sorted(
                    (name.lower(), tuple(values))
                    for name, values in r.headers.getAllRawHeaders()
                    if name.lower() != b"x-request-id"
                ),
            )
            for r in sent
        ]
        return status, headers, raw, upstream

    def assertLikeUnknown(self, h: Harness, method: bytes, path: bytes, body: Any = None) -> Any:
        self.store.records = {"resp_bob": bobsTurn()}
        foreign = self.call(h, method, path, body)
        self.assertIn("resp_bob", self.store.records, "alice cannot delete bob's turn")
        self.store.records = {}
        unknown = self.call(h, method, path, body)
        self.assertEqual(foreign, unknown)
        self.assertNotIn(b"secret", foreign[2])
        return foreign

    def test_without_a_responses_upstream_it_is_the_same_404(self) -> None:
        h = self.gateway()
        for method, path in [
            (b"GET", b"/v1/responses/resp_bob"),
            (b"DELETE", b"/v1/responses/resp_bob"),
            (b"GET", b"/v1/responses/resp_bob/input_items"),
        ]:
            status, _, body, upstream = self.assertLikeUnknown(h, method, path)
            self.assertEqual(status, 404)
            self.assertEqual(orjson.loads(body)["error"]["param"], "response_id")
            self.assertEqual(upstream, [])

    def test_with_a_responses_upstream_it_is_relayed_like_an_unknown_id(self) -> None:
        h = self.gateway(
            {
                "main": {"base_url": UPSTREAM_URL, "retries": {"max_attempts": 1}},
                "oai": {
                    "base_url": "https://api.example.com/v1",
                    "wire_api": "responses",
                    "retries": {"max_attempts": 1},
                },
            }
        )
        for method, path in [
            (b"GET", b"/v1/responses/resp_bob"),
            (b"DELETE", b"/v1/responses/resp_bob"),
            (b"GET", b"/v1/responses/resp_bob/input_items?order=asc"),
        ]:
            status, _, body, upstream = self.assertLikeUnknown(h, method, path)
            self.assertEqual(status, 404)
            self.assertEqual(orjson.loads(body)["error"]["message"], "upstream: no such response")
            [(sentMethod, uri, _, _)] = upstream
            self.assertEqual((sentMethod, uri), (method, b"https://api.example.com" + path))

    def test_previous_response_id_is_the_same_404(self) -> None:
        h = self.gateway()
        for stream in (False, True):
            status, _, body, upstream = self.assertLikeUnknown(
                h,
                b"POST",
                RESPONSES,
                {
                    "model": "m",
                    "input": "and?",
                    "previous_response_id": "resp_bob",
                    "stream": stream,
                },
            )
            self.assertEqual(status, 404)
            self.assertEqual(orjson.loads(body)["error"]["code"], "previous_response_not_found")
            self.assertEqual(upstream, [])

    def test_the_owner_still_sees_it(self) -> None:
        h = self.gateway()
        self.store.records = {"resp_bob": bobsTurn()}
        client = h.connect()
        client.send(b"GET", b"/v1/responses/resp_bob", headers=BOB)
        self.assertEqual((client.response()[0], client.json()["id"]), (200, "resp_bob"))
