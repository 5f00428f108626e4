"""
Both bridges, driven without sockets (L{tests.harness}): what a client is
sent is what the access line and C{codexgw_requests_total} record, the
response object's C{store} says whether the gateway keeps the turn, and a
turn answered with plain JSON is kept like any other.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed

from codexgw.stream.adapters import encodeEvents as encode
from codexgw.stream.sse import SSEDecoder
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.fakes.store import MemoryStore
from tests.harness import ClientConnection, Harness, makeConfig

RESPONSES = b"/v1/responses"
CHAT = b"/v1/chat/completions"
SSE = {b"content-type": b"text/event-stream"}
JSON = {b"content-type": b"application/json"}

# An upstream that fails inside a 200 stream, the way OpenAI-compatible
# servers report an error after the headers have gone.
IN_BAND_ERROR = (
    chatChunk({"role": "assistant", "content": "Hel"})
    + b'data: {"error": {"message": "the model crashed", "code": "server_error"}}\n\n'
)


def completion(text: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )


def events(body: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    return [orjson.loads(e.data) for e in decoder.feed(body) + decoder.close()]


class _AccessLog:
    """Captures the access lines of a test."""

    def captureAccess(self: Any) -> list[dict[str, Any]]:
        captured: list[dict[str, Any]] = []

        def observer(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "codexgw.access":
                captured.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return captured


class FailedWholeAnswerAccountingTests(_AccessLog, SynchronousTestCase):
    """
    A non-streamed bridged request that fails is answered 502; the access
    line and the request counter say 502 too, not the 200 the exchange was
    marked with before the answer turned into an error.
    """

    def setUp(self) -> None:
        self.access = self.captureAccess()

    def counted(self, h: Harness, route: str, status: str) -> float | None:
        return h.metric(
            "codexgw_requests_total", route=route, status=status, upstream="main", model="m1"
        )

    def assertAccounted(
        self, h: Harness, client: ClientConnection, route: str, status: int, outcome: str
    ) -> None:
        self.assertEqual(client.response()[0], status)
        [line] = self.access
        self.assertEqual((line["status"], line["outcome"]), (status, outcome))
        self.assertEqual(self.counted(h, route, str(status)), 1.0)
        self.assertIsNone(self.counted(h, route, "200" if status != 200 else "502"))

    def test_in_band_upstream_error_is_counted_as_the_502_sent(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi"})
        h.sent[0].respond(200, SSE, IN_BAND_ERROR)
        self.assertEqual(client.json()["error"]["code"], "server_error")
        self.assertAccounted(h, client, "/v1/responses", 502, "error")

    def test_broken_upstream_is_counted_as_the_502_sent_with_its_outcome(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi"})
        response = h.sent[0].respond(200, SSE)
        response.send(chatChunk({"role": "assistant", "content": "Hel"}))
        response.end(Failure(ResponseFailed([Failure(ConnectionError("reset"))])))
        self.assertAccounted(h, client, "/v1/responses", 502, "upstream_broken")

    def test_plain_json_that_is_no_completion_is_counted_as_the_502_sent(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi"})
        h.sent[0].respond(200, JSON, b"<html>oops</html>")
        self.assertEqual(client.json()["error"]["code"], "upstream_protocol_error")
        self.assertAccounted(h, client, "/v1/responses", 502, "bad_stream")

    def test_reverse_bridge_upstream_failure_is_counted_as_the_502_sent(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
        failed = encode(
            [
                {"type": "response.created", "response": {"id": "resp_1", "output": []}},
                {
                    "type": "response.failed",
                    "response": {
                        "id": "resp_1",
                        "status": "failed",
                        "output": [],
                        "error": {"code": "server_error", "message": "the model crashed"},
                    },
                },
            ]
        )
        h.sent[0].respond(200, SSE, failed)
        self.assertEqual(client.json()["error"]["code"], "server_error")
        self.assertAccounted(h, client, "/v1/chat/completions", 502, "error")

    def test_a_whole_answer_that_succeeds_is_still_200_complete(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi"})
        h.sent[0].respond(200, SSE, b"".join(textStream(["Hello"])))
        self.assertEqual(client.json()["status"], "completed")
        self.assertAccounted(h, client, "/v1/responses", 200, "complete")

    def test_a_stream_that_fails_stays_200_with_the_failure_as_outcome(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi", "stream": True})
        response = h.sent[0].respond(200, SSE)
        response.send(chatChunk({"role": "assistant", "content": "Hel"}))
        response.end(Failure(ResponseFailed([Failure(ConnectionError("reset"))])))
        self.assertEqual(events(client.response()[2])[-1]["type"], "response.failed")
        self.assertAccounted(h, client, "/v1/responses", 200, "upstream_broken")

    def test_a_client_gone_mid_stream_is_client_gone_and_stops_the_upstream(self) -> None:
        # Klein learns of the hang-up before the relay does; the access line
        # must still say the client left, not that the stream completed.
        for route, payload in (
            (RESPONSES, {"model": "m1", "input": "hi", "stream": True}),
            (
                CHAT,
                {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            ),
        ):
            del self.access[:]
            h = Harness(makeConfig(wire_api="responses") if route == CHAT else None)
            client = h.connect()
            client.post(route, payload)
            response = h.sent[0].respond(200, SSE)
            response.send(
                chatChunk({"role": "assistant", "content": "Hel"})
                if route == RESPONSES
                else encode([{"type": "response.created", "sequence_number": 0, "response": {}}])
            )
            client.disconnect()
            [line] = self.access
            self.assertEqual(line["outcome"], "client_gone", route)
            self.assertEqual(response.transport.producerState, "stopped")
            self.assertEqual(h.metric("codexgw_cancellations_total", route=route.decode()), 1.0)

    def test_a_stream_ending_in_the_upstreams_own_error_is_an_upstream_error(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi", "stream": True})
        h.sent[0].respond(200, SSE, IN_BAND_ERROR)
        self.assertEqual(events(client.response()[2])[-1]["type"], "response.failed")
        self.assertAccounted(h, client, "/v1/responses", 200, "upstream_error")
        self.assertEqual(
            h.metric("codexgw_upstream_errors_total", upstream="main", kind="stream"), 1.0
        )


class StoreFieldTests(SynchronousTestCase):
    """The response object's C{store} says whether the gateway keeps the turn."""

    def stored(self, h: Harness, request: dict[str, Any]) -> list[bool]:
        """C{store} of the final object, then of each streamed event's response."""
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi", **request})
        h.sent[-1].respond(200, SSE, b"".join(textStream(["Hello"])))
        whole = [client.json()["store"]]
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi", "stream": True, **request})
        h.sent[-1].respond(200, SSE, b"".join(textStream(["Hello"])))
        streamed = [e["response"]["store"] for e in events(client.response()[2]) if "response" in e]
        self.assertEqual(len(streamed), 3, "created, in_progress, completed")
        return whole + streamed

    def withStore(self) -> tuple[Harness, MemoryStore]:
        store = MemoryStore()
        return Harness(store=store), store

    def test_store_unset_is_true_and_the_turn_is_kept(self) -> None:
        h, store = self.withStore()
        self.assertEqual(self.stored(h, {}), [True] * 4)
        self.assertEqual(len(store.records), 2)

    def test_store_true_is_true(self) -> None:
        h, store = self.withStore()
        self.assertEqual(self.stored(h, {"store": True}), [True] * 4)
        self.assertEqual(len(store.records), 2)

    def test_store_false_is_false_and_nothing_is_kept(self) -> None:
        h, store = self.withStore()
        self.assertEqual(self.stored(h, {"store": False}), [False] * 4)
        self.assertEqual(store.records, {})

    def test_without_a_store_backend_it_is_false_even_when_asked(self) -> None:
        h = Harness()
        self.assertIsNone(h.gateway.store)
        self.assertEqual(self.stored(h, {"store": True}), [False] * 4)
        self.assertEqual(self.stored(h, {}), [False] * 4)


class PlainJSONAnswerIsStoredTests(SynchronousTestCase):
    """
    A Chat upstream that answers C{stream: true} with a plain
    C{chat.completion} still makes a turn the next one can follow.
    """

    def test_previous_response_id_finds_a_turn_answered_with_plain_json(self) -> None:
        for stream in (False, True):
            store = MemoryStore()
            h = Harness(store=store)
            client = h.connect()
            client.post(RESPONSES, {"model": "m1", "input": "remember 7", "stream": stream})
            h.sent[0].respond(200, JSON, completion("noted"))
            if stream:
                first = events(client.response()[2])[-1]["response"]
            else:
                first = client.json()
            self.assertEqual(first["status"], "completed")
            self.assertIn(first["id"], store.records)

            client = h.connect()
            client.post(
                RESPONSES, {"model": "m1", "input": "and?", "previous_response_id": first["id"]}
            )
            self.assertEqual(len(h.sent), 2, "answered 404 instead of asking the upstream")
            messages = orjson.loads(h.sent[1].body)["messages"]
            self.assertEqual(
                [(m["role"], m["content"]) for m in messages],
                [("user", "remember 7"), ("assistant", "noted"), ("user", "and?")],
            )
            h.sent[1].respond(200, JSON, completion("7"))
            self.assertEqual(client.json()["output"][0]["content"][0]["text"], "7")

    def test_its_tokens_are_counted(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(RESPONSES, {"model": "m1", "input": "hi"})
        h.sent[0].respond(200, JSON, completion("hello"))
        self.assertEqual(client.json()["usage"]["total_tokens"], 4)
        for direction, count in (("input", 3.0), ("output", 1.0)):
            self.assertEqual(
                h.metric("codexgw_tokens_total", direction=direction, model="m1", key="anonymous"),
                count,
            )
