"""
Streams that fail cleanly: a bridged stream cut mid-item never hands the
client half an item; one bad upstream chunk fails one stream, in order; an
over-long upstream line on a relayed Chat stream is never forwarded in part.
What is asserted is what the client receives (and, for the SDK tests, what
the official openai SDK makes of it).
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
from twisted.internet.error import ConnectionLost
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseFailed
from twisted.web.server import NOT_DONE_YET

from codexgw.stream.sse import SSEDecoder
from tests.dialects.oracle import check_stream
from tests.fakes.chat_upstream import chatChunk
from tests.harness import ClientConnection, Harness, makeConfig
from tests.integration.test_integration import LiveGateway

SSE = {b"content-type": b"text/event-stream"}


def events(body: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    return [orjson.loads(e.data) for e in decoder.feed(body) + decoder.close()]


def types(evs: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in evs]


def call(index: int, call_id: str | None, name: str | None, args: str) -> bytes:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    tc: dict[str, Any] = {"index": index, "function": function}
    if call_id:
        tc["id"] = call_id
        tc["type"] = "function"
    return chatChunk({"tool_calls": [tc]})


class Bridged:
    def bridged(self, h: Harness, stream: bool = True) -> tuple[ClientConnection, Any]:
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi", "stream": stream})
        return client, h.sent[-1].respond(200, SSE)


class CutMidItemTests(Bridged, SynchronousTestCase):
    """Unfinished items are abandoned: no output_item.done, not in output."""

    def test_text_cut_mid_answer_is_not_handed_over_as_a_message(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        upstream.send(chatChunk({"reasoning_content": "Let me think."}))
        upstream.send(chatChunk({"content": "The answer is 4"}))
        upstream.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        evs = events(client.response()[2])
        final = check_stream(evs)
        self.assertEqual(evs[-1]["type"], "response.failed")
        self.assertEqual(final["error"]["code"], "upstream_stream_broken")
        done = [e["item"]["type"] for e in evs if e["type"] == "response.output_item.done"]
        self.assertEqual(done, ["reasoning"])  # finished before the text began
        self.assertNotIn("response.output_text.done", types(evs))
        self.assertEqual([i["type"] for i in final["output"]], ["reasoning"])

    def test_a_tool_call_cut_mid_arguments_is_never_done(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        upstream.send(call(0, "call_1", "exec_command", '{"cmd": "ls'))
        upstream.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        evs = events(client.response()[2])
        final = check_stream(evs)
        self.assertIn("response.function_call_arguments.delta", types(evs))
        self.assertNotIn("response.function_call_arguments.done", types(evs))
        self.assertNotIn("response.output_item.done", types(evs))
        self.assertEqual(final["output"], [])

    def test_a_second_call_cut_leaves_the_first_one_whole(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        upstream.send(call(0, "call_1", "exec_command", '{"cmd": "ls"}'))
        upstream.send(call(1, "call_2", "exec_command", '{"cmd": "rm'))
        h.reactor.advance(h.config.default.timeouts.idle)
        evs = events(client.response()[2])
        final = check_stream(evs)
        self.assertEqual(final["error"]["code"], "upstream_idle_timeout")
        # A call is only finished when the upstream says so; both were open.
        self.assertEqual(final["output"], [])

    def test_a_whole_answer_cut_short_is_an_error_not_a_half_response(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h, stream=False)
        upstream.send(chatChunk({"content": "The answer is 4"}))
        upstream.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        status, _, body = client.response()
        self.assertEqual(status, 502)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upstream_stream_broken")

    def test_the_reverse_bridge_never_finishes_a_cut_tool_call(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        client = h.connect()
        client.post(
            b"/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        upstream = h.sent[-1].respond(200, SSE)
        added = {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f"},
        }
        delta = {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_1",
            "output_index": 0,
            "delta": '{"a": ',
        }
        for e in (added, delta):
            upstream.send(b"data: " + orjson.dumps(e) + b"\n\n")
        upstream.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        chunks = events(client.response()[2])
        # No finish_reason ever: the SDK raises on the error, it never sees
        # a finished tool call with torn arguments.
        finishes = [c["finish_reason"] for chunk in chunks for c in chunk.get("choices") or []]
        self.assertEqual([f for f in finishes if f], [])
        self.assertEqual(chunks[-1]["error"]["code"], "upstream_stream_broken")


class BadChunkTests(Bridged, SynchronousTestCase):
    """One bad upstream chunk fails one stream, cleanly and in order."""

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def assertFailedInOrder(self, client: ClientConnection) -> list[dict[str, Any]]:
        evs = events(client.response()[2])
        final = check_stream(evs)  # sequence numbers 0.. without a gap, items added first
        self.assertEqual(final["error"]["code"], "upstream_protocol_error")
        self.assertIn("response.output_item.added", types(evs))
        self.assertIn("response.output_text.delta", types(evs))
        self.assertTrue(client.raw.endswith(b"\r\n0\r\n\r\n"))
        lines = [
            e
            for e in self.logged
            if "cannot read" in e.get("log_format", "") and e.get("upstream") == "main"
        ]
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0]["request_id"].startswith("gw-"))
        return evs

    def test_wrong_shape_after_good_chunks_in_the_same_read(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        upstream.send(chatChunk({"content": "Hi"}) + b'data: {"choices":[1]}\n\n')
        self.assertFailedInOrder(client)
        self.assertEqual(upstream.transport.producerState, "stopped")

    def test_invalid_json_after_good_chunks_in_the_same_read(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        upstream.send(chatChunk({"content": "Hi"}) + b"data: {not json\n\n")
        self.assertFailedInOrder(client)

    def test_a_first_chunk_that_trips_halfway_loses_nothing(self) -> None:
        h = Harness()
        client, upstream = self.bridged(h)
        bad = {
            "choices": [{"delta": {"content": "Hi", "tool_calls": [{"index": 0, "function": 3}]}}]
        }
        upstream.send(b"data: " + orjson.dumps(bad) + b"\n\n")
        self.assertFailedInOrder(client)


class OverlongLineTests(SynchronousTestCase):
    def test_a_relayed_chat_stream_never_forwards_part_of_a_line(self) -> None:
        h = Harness(makeConfig({"server": {"max_sse_line_bytes": 1000}}))
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
        upstream = h.sent[0].respond(200, SSE)
        upstream.send(chatChunk({"content": "fine"}) + b"data: " + b"x" * 600)
        upstream.send(b"x" * 600)
        self.assertEqual(upstream.transport.producerState, "stopped")
        body = client.response()[2]
        self.assertNotIn(b"xxx", body)
        parsed = [orjson.loads(e.data) for e in SSEDecoder().feed(body)]
        self.assertEqual(parsed[0]["choices"][0]["delta"]["content"], "fine")
        self.assertEqual(parsed[-1]["error"]["code"], "bad_stream")


class SDKTests(TestCase):
    """The openai SDK sees an API error, never a JSON error or half an item."""

    def client(self, live: LiveGateway) -> Any:
        return openai.OpenAI(base_url=live.base, api_key="unused", max_retries=0, timeout=10)

    async def test_overlong_line_is_an_api_error_for_the_sdk(self) -> None:
        live = LiveGateway(self, max_sse_line_bytes=2048)

        def overlong(request: Any, body: Any) -> Any:
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(chatChunk({"content": "Hel"}))
            request.write(b'data: {"choices": [{"delta": {"content": "' + b"x" * 8192)
            return NOT_DONE_YET

        live.upstream.script.append(overlong)

        def consume() -> Exception:
            stream = self.client(live).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            try:
                for _ in stream:
                    pass
            except Exception as e:
                return e
            raise AssertionError("the stream ended without an error")

        error = await deferToThread(consume)
        self.assertIsInstance(error, openai.APIError)
        self.assertIn("longer than the gateway accepts", str(error))

    async def test_bad_chunk_is_an_api_error_after_the_text_before_it(self) -> None:
        live = LiveGateway(self)

        def bad(request: Any, body: Any) -> Any:
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(chatChunk({"content": "Hel"}) + b'data: {"choices":[1]}\n\n')
            request.finish()
            return NOT_DONE_YET

        live.upstream.script.append(bad)

        def consume() -> tuple[list[str], Exception | None]:
            seen: list[str] = []
            try:
                with self.client(live).responses.stream(model="m", input="hi") as stream:
                    for event in stream:
                        seen.append(event.type)
            except Exception as e:
                return seen, e
            return seen, None

        seen, error = await deferToThread(consume)
        self.assertIn("response.output_text.delta", seen)
        self.assertEqual(seen[-1], "response.failed")
        # The SDK's accumulator followed every event ("content event before
        # its output item" would have been raised otherwise).
        self.assertNotIsInstance(error, RuntimeError)
