"""
The Responses API's WebSocket mode, driven in memory as Twisted's own
websocket tests do: a real HTTP channel on a StringTransport, a wsproto
client on the other side of it, a fake upstream agent and a memory clock.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WSRequest

from codexgw.stream.adapters import encodeEvents
from tests.dialects.oracle import check_stream
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.harness import ClientConnection, Harness, makeConfig

SSE = {b"content-type": b"text/event-stream"}
JSON = {b"content-type": b"application/json"}
KEYS = {"auth": {"keys": [{"name": "team", "key": "gw-key-1", "models": ["m*"]}]}}


class SocketClient:
    """A WebSocket client on one in-memory connection to the gateway."""

    def __init__(self, harness: Harness, headers: dict[bytes, bytes] | None = None) -> None:
        self.conn: ClientConnection = harness.connect()
        self.ws = WSConnection(ConnectionType.CLIENT)
        extra = list((headers if headers is not None else {}).items())
        self._read = 0
        self._text = ""
        self.closed: CloseConnection | None = None
        self.rejected: RejectConnection | None = None
        self.rejectBody = b""
        self.accepted = False
        self.conn.channel.dataReceived(
            self.ws.send(WSRequest(host="gw.test", target="/v1/responses", extra_headers=extra))
        )
        self.pump()

    def pump(self) -> list[Any]:
        """Everything the gateway sent since the last call, as client events."""
        data = self.conn.transport.value()[self._read :]
        self._read += len(data)
        if data:
            self.ws.receive_data(data)
        out: list[Any] = []
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.rejected = event
            elif isinstance(event, RejectData):
                self.rejectBody += event.data
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    out.append(orjson.loads(self._text))
                    self._text = ""
            elif isinstance(event, CloseConnection):
                self.closed = event
        return out

    def send(self, frame: Any) -> None:
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        self.conn.channel.dataReceived(self.ws.send(TextMessage(text)))

    def sendBytes(self, data: bytes) -> None:
        self.conn.channel.dataReceived(self.ws.send(BytesMessage(data)))

    def create(self, **body: Any) -> None:
        body.setdefault("model", "m1")
        body.setdefault("input", "hi")
        self.send({"type": "response.create", **body})

    def lose(self, reason: Failure | None = None) -> None:
        self.conn.channel.connectionLost(reason or Failure(ConnectionLost("client left")))


def answer(h: Harness, index: int, words: list[str]) -> None:
    h.sent[index].respond(200, SSE, b"".join(textStream(words)))


def upstreamBody(h: Harness, index: int) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(h.sent[index].body)
    return body


def roles(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in body["messages"]]


class Lines:
    """The access lines logged while a test runs."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "codexgw.access":
            self.lines.append(event["access_line"])


class UpgradeTests(SynchronousTestCase):
    def test_the_upgrade_is_answered_101_and_a_turn_streams_frames(self) -> None:
        h = Harness()
        c = SocketClient(h)
        self.assertTrue(c.accepted)
        c.create(input="hi", store=False)
        self.assertEqual(len(h.sent), 1)
        self.assertEqual(h.sent[0].uri, b"http://upstream.test/v1/chat/completions")
        answer(h, 0, ["Hello", " there"])
        frames = c.pump()
        # The same events an SSE stream has, one frame each, complete and in order.
        response = check_stream(frames)
        self.assertEqual(frames[0]["type"], "response.created")
        self.assertEqual(frames[-1]["type"], "response.completed")
        self.assertEqual([f["sequence_number"] for f in frames], list(range(len(frames))))
        self.assertEqual(response["output"][0]["content"][0]["text"], "Hello there")
        self.assertIsNone(c.closed)

    def test_stream_and_background_in_a_frame_are_ignored(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create(stream=True, stream_options={"include_obfuscation": False}, background=False)
        body = upstreamBody(h, 0)
        self.assertIs(body["stream"], True)
        answer(h, 0, ["ok"])
        self.assertEqual(c.pump()[-1]["type"], "response.completed")

    def test_websocket_false_answers_426(self) -> None:
        h = Harness(makeConfig({"server": {"websocket": False}}))
        c = SocketClient(h)
        self.assertFalse(c.accepted)
        assert c.rejected is not None
        self.assertEqual(c.rejected.status_code, 426)
        c.pump()
        self.assertEqual(orjson.loads(c.rejectBody)["error"]["code"], "upgrade_required")
        self.assertEqual(h.sent, [])

    def test_a_plain_get_is_426(self) -> None:
        h = Harness()
        conn = h.connect()
        conn.send(b"GET", b"/v1/responses")
        status, headers, body = conn.response()
        self.assertEqual(status, 426)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upgrade_required")

    def test_a_missing_or_wrong_key_is_401_before_upgrading(self) -> None:
        for headers in ({}, {b"authorization": b"Bearer nope"}):
            h = Harness(makeConfig(KEYS))
            c = SocketClient(h, headers)
            self.assertFalse(c.accepted)
            assert c.rejected is not None
            self.assertEqual(c.rejected.status_code, 401)
            c.pump()
            self.assertEqual(orjson.loads(c.rejectBody)["error"]["type"], "authentication_error")
            self.assertEqual(h.site.openConnections, 1)

    def test_the_key_of_the_upgrade_serves_every_turn_and_its_model_rules_apply(self) -> None:
        h = Harness(makeConfig(KEYS))
        c = SocketClient(h, {b"authorization": b"Bearer gw-key-1"})
        self.assertTrue(c.accepted)
        c.create(model="other")
        [error] = c.pump()
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["status"], 403)
        self.assertEqual(error["error"]["param"], "model")
        self.assertEqual(h.sent, [])
        c.create(model="m1")
        answer(h, 0, ["ok"])
        self.assertEqual(c.pump()[-1]["type"], "response.completed")
        # The upstream is sent its own key, never the gateway's.
        self.assertEqual(h.sent[0].header(b"authorization"), None)

    def test_rate_limits_apply_to_every_turn(self) -> None:
        config = makeConfig(
            {"auth": {"keys": [{"name": "a", "key": "ka", "limits": {"requests_per_minute": 1}}]}}
        )
        h = Harness(config)
        c = SocketClient(h, {b"authorization": b"Bearer ka"})
        c.create()
        answer(h, 0, ["one"])
        self.assertEqual(c.pump()[-1]["type"], "response.completed")
        c.create()
        [error] = c.pump()
        self.assertEqual(error["status"], 429)
        self.assertEqual(error["error"]["code"], "rate_limit_exceeded")
        seconds = int(error["headers"]["retry-after"])
        self.assertGreaterEqual(seconds, 1)
        self.assertIn("try again in", error["error"]["message"])
        self.assertEqual(len(h.sent), 1)
        self.assertIsNone(c.closed)


class FrameErrorTests(SynchronousTestCase):
    def assertErrorThenUsable(
        self, h: Harness, c: SocketClient, code: str | None, param: str | None = None
    ) -> dict[str, Any]:
        [error] = c.pump()
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["status"], 400)
        self.assertIsInstance(error["error"]["code"], str)
        if code is not None:
            self.assertEqual(error["error"]["code"], code)
        if param is not None:
            self.assertEqual(error["error"]["param"], param)
        self.assertIsNone(c.closed)
        before = len(h.sent)
        c.create()
        answer(h, before, ["fine"])
        self.assertEqual(c.pump()[-1]["type"], "response.completed")
        return error

    def test_a_frame_over_the_body_limit_is_refused_and_closes_1009(self) -> None:
        h = Harness(makeConfig({"server": {"max_body_bytes": 2048}}))
        c = SocketClient(h)
        # Sent in fragments, as a client streaming a huge frame would: the
        # gateway must not hold it all before deciding.
        c.conn.channel.dataReceived(
            c.ws.send(TextMessage('{"type": "response.create", "input": "', message_finished=False))
        )
        for _ in range(3):
            c.conn.channel.dataReceived(c.ws.send(TextMessage("x" * 1000, message_finished=False)))
        [error] = c.pump()
        self.assertEqual(error["status"], 413)
        assert c.closed is not None
        self.assertEqual(c.closed.code, 1009)
        self.assertEqual(h.sent, [])

    def test_a_frame_that_is_not_json(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.send("{not json")
        self.assertErrorThenUsable(h, c, "invalid_json")

    def test_a_frame_that_is_not_an_object(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.send("[1, 2]")
        self.assertErrorThenUsable(h, c, "invalid_json")

    def test_a_binary_frame(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.sendBytes(b'{"type": "response.create"}')
        self.assertErrorThenUsable(h, c, None)
        self.assertEqual(
            h.metric("codexgw_websocket_frames_total", direction="in", type="binary"), 1
        )

    def test_an_unknown_type(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.send({"type": "response.cancel"})
        self.assertErrorThenUsable(h, c, "unknown_event_type", "type")

    def test_an_invalid_body(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.send({"type": "response.create", "model": "m1", "input": "hi", "temperature": "hot"})
        error = self.assertErrorThenUsable(h, c, None, "temperature")
        self.assertEqual(error["error"]["type"], "invalid_request_error")

    def test_a_body_without_a_model(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.send({"type": "response.create", "input": "hi"})
        self.assertErrorThenUsable(h, c, None, "model")


class ContinuationTests(SynchronousTestCase):
    def firstTurn(self, h: Harness, c: SocketClient, **body: Any) -> str:
        c.create(input="What is 2+2?", store=False, **body)
        answer(h, len(h.sent) - 1, ["4"])
        frames = c.pump()
        self.assertEqual(frames[-1]["type"], "response.completed")
        rid: str = frames[-1]["response"]["id"]
        return rid

    def test_a_continuation_sends_the_whole_history_upstream(self) -> None:
        h = Harness()
        c = SocketClient(h)
        first = self.firstTurn(h, c, instructions="Be brief.")
        c.create(input="And 3+3?", previous_response_id=first, store=False)
        body = upstreamBody(h, 1)
        self.assertEqual(
            roles(body),
            [("user", "What is 2+2?"), ("assistant", "4"), ("user", "And 3+3?")],
        )
        answer(h, 1, ["6"])
        second = c.pump()[-1]["response"]["id"]
        # And a third turn continues the second: everything so far.
        c.create(input="Thanks", previous_response_id=second, store=False)
        self.assertEqual(
            [r for r, _ in roles(upstreamBody(h, 2))],
            ["user", "assistant", "user", "assistant", "user"],
        )

    def test_an_unknown_id_is_an_error_and_the_socket_stays_usable(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create(input="hi", previous_response_id="resp_unknown", store=False)
        [error] = c.pump()
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["code"], "previous_response_not_found")
        self.assertEqual(h.sent, [])
        self.firstTurn(h, c)

    def test_another_sockets_turn_is_not_known_here(self) -> None:
        h = Harness()
        one, two = SocketClient(h), SocketClient(h)
        rid = self.firstTurn(h, one)
        two.create(input="more", previous_response_id=rid, store=False)
        [error] = two.pump()
        self.assertEqual(error["error"]["code"], "previous_response_not_found")

    def test_a_failed_continuation_evicts_the_id_it_continued(self) -> None:
        h = Harness()
        c = SocketClient(h)
        first = self.firstTurn(h, c)
        c.create(input="next", previous_response_id=first, store=False)
        h.sent[1].respond(500, JSON, b'{"error": {"message": "boom", "type": "server_error"}}')
        [error] = c.pump()
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["status"], 500)
        c.create(input="again", previous_response_id=first, store=False)
        [error] = c.pump()
        self.assertEqual(error["error"]["code"], "previous_response_not_found")
        self.assertEqual(len(h.sent), 2)

    def test_a_tool_output_for_no_call_is_a_400_and_evicts(self) -> None:
        h = Harness()
        c = SocketClient(h)
        first = self.firstTurn(h, c)
        c.create(
            input=[{"type": "function_call_output", "call_id": "call_nowhere", "output": "1"}],
            previous_response_id=first,
            store=False,
        )
        [error] = c.pump()
        self.assertEqual(error["status"], 400)
        self.assertEqual(error["error"]["param"], "input")
        self.assertIn("call_nowhere", error["error"]["message"])
        self.assertEqual(len(h.sent), 1)
        c.create(input="x", previous_response_id=first, store=False)
        self.assertEqual(c.pump()[0]["error"]["code"], "previous_response_not_found")

    def test_a_tool_round_trip_continues_with_only_the_output(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create(
            input="list files",
            store=False,
            tools=[{"type": "function", "name": "ls", "parameters": {"type": "object"}}],
        )
        call = chatChunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "ls", "arguments": "{}"},
                    }
                ]
            }
        )
        h.sent[0].respond(200, SSE, call + chatChunk({}, "tool_calls") + b"data: [DONE]\n\n")
        frames = c.pump()
        response = check_stream(frames)
        self.assertEqual(response["output"][-1]["type"], "function_call")
        c.create(
            input=[{"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}],
            previous_response_id=response["id"],
            store=False,
        )
        messages = upstreamBody(h, 1)["messages"]
        self.assertEqual(messages[1]["tool_calls"][0]["id"], "call_1")
        self.assertEqual(
            messages[2], {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}
        )

    def test_the_cache_keeps_a_bounded_number_of_turns(self) -> None:
        h = Harness(makeConfig({"server": {"websocket_cache_responses": 2}}))
        c = SocketClient(h)
        ids = [self.firstTurn(h, c) for _ in range(3)]
        c.create(input="x", previous_response_id=ids[0], store=False)
        self.assertEqual(c.pump()[0]["error"]["code"], "previous_response_not_found")
        c.create(input="x", previous_response_id=ids[2], store=False)
        self.assertEqual(len(h.sent), 4)

    def test_the_cache_keeps_a_bounded_number_of_bytes_and_always_the_newest(self) -> None:
        h = Harness(makeConfig({"server": {"websocket_cache_bytes": 10}}))
        c = SocketClient(h)
        ids = [self.firstTurn(h, c) for _ in range(2)]
        c.create(input="x", previous_response_id=ids[0], store=False)
        self.assertEqual(c.pump()[0]["error"]["code"], "previous_response_not_found")
        c.create(input="x", previous_response_id=ids[1], store=False)
        self.assertEqual(len(h.sent), 3)


class WarmupTests(SynchronousTestCase):
    def test_generate_false_calls_no_model_and_its_input_is_kept(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create(
            generate=False,
            instructions="You are Codex.",
            input=[{"type": "message", "role": "user", "content": "<environment>"}],
            tools=[{"type": "function", "name": "shell", "parameters": {"type": "object"}}],
            store=False,
        )
        frames = c.pump()
        self.assertEqual([f["type"] for f in frames], ["response.created", "response.completed"])
        self.assertEqual([f["sequence_number"] for f in frames], [0, 1])
        done = frames[1]["response"]
        self.assertEqual(done["output"], [])
        self.assertEqual(done["status"], "completed")
        self.assertEqual(done["usage"]["total_tokens"], 0)
        self.assertEqual(done["instructions"], "You are Codex.")
        self.assertEqual(h.sent, [])
        c.create(input="hi", previous_response_id=done["id"], store=False)
        self.assertEqual(
            roles(upstreamBody(h, 0))[-2:], [("user", "<environment>"), ("user", "hi")]
        )

    def test_a_warmup_obeys_the_keys_model_rules(self) -> None:
        h = Harness(makeConfig(KEYS))
        c = SocketClient(h, {b"authorization": b"Bearer gw-key-1"})
        c.create(model="other", generate=False)
        [error] = c.pump()
        self.assertEqual(error["status"], 403)


class OrderTests(SynchronousTestCase):
    def test_turns_run_one_at_a_time_in_order(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create(input="first", store=False)
        c.create(input="second", store=False)
        self.assertEqual(len(h.sent), 1)
        self.assertEqual(roles(upstreamBody(h, 0)), [("user", "first")])
        answer(h, 0, ["1"])
        self.assertEqual(len(h.sent), 2)
        self.assertEqual(roles(upstreamBody(h, 1)), [("user", "second")])
        answer(h, 1, ["2"])
        frames = c.pump()
        done = [f for f in frames if f["type"] == "response.completed"]
        self.assertEqual(
            [d["response"]["output"][0]["content"][0]["text"] for d in done], ["1", "2"]
        )
        # Each response numbers its own events from 0.
        self.assertEqual([f["sequence_number"] for f in frames].count(0), 2)

    def test_too_many_waiting_frames_are_refused(self) -> None:
        h = Harness()
        c = SocketClient(h)
        for _ in range(10):
            c.create(store=False)
        errors = [f for f in c.pump() if f["type"] == "error"]
        self.assertEqual([e["error"]["code"] for e in errors], ["too_many_queued"])
        self.assertEqual(len(h.sent), 1)


class FailureTests(SynchronousTestCase):
    def test_an_upstream_error_before_any_stream_is_an_error_event(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create()
        h.sent[0].respond(
            429, {**JSON, b"retry-after": b"7"}, b'{"error": {"message": "slow down"}}'
        )
        [error] = c.pump()
        self.assertEqual(error["status"], 429)
        self.assertEqual(error["headers"], {"retry-after": "7"})
        self.assertIn("try again in 7s", error["error"]["message"])

    def test_a_stream_that_breaks_is_response_failed_without_half_items(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create()
        response = h.sent[0].respond(200, SSE)
        response.send(chatChunk({"role": "assistant", "content": "The answer is hal"}))
        response.end(Failure(ConnectionLost("upstream died")))
        frames = c.pump()
        self.assertEqual(frames[-1]["type"], "response.failed")
        self.assertNotIn("response.output_item.done", [f["type"] for f in frames])
        self.assertEqual(frames[-1]["response"]["output"], [])
        self.assertIsNone(c.closed)

    def test_a_secret_echoed_by_the_upstream_never_reaches_a_frame(self) -> None:
        h = Harness(makeConfig(api_key="sk-upstream-very-secret"))
        c = SocketClient(h)
        c.create()
        h.sent[0].respond(
            200, SSE, b"".join(textStream(["your key is sk-upstream-very-secret", "!"]))
        )
        raw = c.conn.transport.value()
        self.assertNotIn(b"sk-upstream-very-secret", raw)
        self.assertEqual(c.pump()[-1]["type"], "response.completed")


class RelayTests(SynchronousTestCase):
    def test_a_responses_upstream_is_relayed_event_by_event(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        c = SocketClient(h)
        c.create(input="hi", store=False)
        self.assertEqual(h.sent[0].uri, b"http://upstream.test/v1/responses")
        events = [
            {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_up"}},
            {"type": "response.output_text.delta", "sequence_number": 1, "delta": "yo"},
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": {
                    "id": "resp_up",
                    "status": "completed",
                    "output": [
                        {
                            "type": "message",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": "yo"}],
                        }
                    ],
                },
            },
        ]
        h.sent[0].respond(200, SSE, encodeEvents(events) + b": keep-alive\n\n")
        self.assertEqual(c.pump(), events)
        # The upstream keeps nothing (store: false): it is sent the history.
        c.create(input="more", previous_response_id="resp_up", store=False)
        body = upstreamBody(h, 1)
        self.assertNotIn("previous_response_id", body)
        self.assertEqual([i.get("role") for i in body["input"]], ["user", "assistant", "user"])

    def test_an_unknown_id_goes_to_the_responses_upstream(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        c = SocketClient(h)
        c.create(input="hi", previous_response_id="resp_stored_upstream")
        self.assertEqual(upstreamBody(h, 0)["previous_response_id"], "resp_stored_upstream")

    def test_a_relayed_stream_cut_short_is_an_error_event(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        c = SocketClient(h)
        c.create()
        response = h.sent[0].respond(200, SSE)
        response.send(
            encodeEvents([{"type": "response.created", "sequence_number": 0, "response": {}}])
        )
        response.end(Failure(ConnectionLost("upstream died")))
        frames = c.pump()
        self.assertEqual(frames[-1]["type"], "error")
        self.assertIsNone(c.closed)


class LifecycleTests(SynchronousTestCase):
    def test_a_slow_reader_pauses_the_upstream(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create()
        response = h.sent[0].respond(200, SSE)
        response.send(chatChunk({"role": "assistant", "content": "a"}))
        producer = c.conn.transport.producer
        self.assertIsNotNone(producer)
        producer.pauseProducing()
        self.assertEqual(response.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(response.transport.producerState, "producing")
        response.send(chatChunk({}, "stop"))
        response.end()
        self.assertEqual(c.pump()[-1]["type"], "response.completed")
        # Between turns the transport has no producer.
        self.assertIsNone(c.conn.transport.producer)

    def test_a_client_that_closes_mid_response_aborts_the_upstream(self) -> None:
        h = Harness()
        c = SocketClient(h)
        lines = Lines(self)
        c.create()
        response = h.sent[0].respond(200, SSE)
        response.send(chatChunk({"role": "assistant", "content": "a"}))
        c.lose()
        self.assertEqual(response.transport.producerState, "stopped")
        self.assertTrue(
            any(" outcome=client_gone" in line and line.startswith("WS ") for line in lines.lines)
        )
        self.assertEqual(h.site.openConnections, 0)
        self.assertEqual(h.metric("codexgw_websockets_open"), 0)

    def test_a_client_that_closes_before_the_upstream_answers_cancels_it(self) -> None:
        h = Harness()
        c = SocketClient(h)
        c.create()
        c.lose()
        self.assertTrue(h.sent[0].cancelled)
        self.assertEqual(h.gateway.proxy.inflight, set())

    def test_an_idle_socket_is_closed(self) -> None:
        h = Harness(makeConfig({"server": {"websocket_idle_timeout": 30}}))
        c = SocketClient(h)
        h.reactor.advance(29)
        c.pump()
        self.assertIsNone(c.closed)
        c.create()
        h.reactor.advance(40)
        # A turn in flight keeps it open, however long the model thinks.
        c.pump()
        self.assertIsNone(c.closed)
        answer(h, 0, ["ok"])
        h.reactor.advance(30)
        c.pump()
        assert c.closed is not None
        self.assertEqual(c.closed.code, 1000)

    def test_the_connection_age_limit_ends_with_an_error_event(self) -> None:
        h = Harness(makeConfig({"server": {"websocket_max_age": 60, "websocket_idle_timeout": 0}}))
        c = SocketClient(h)
        c.create()
        h.reactor.advance(61)
        # The turn in flight finishes first.
        self.assertIsNone(c.closed)
        answer(h, 0, ["ok"])
        frames = c.pump()
        self.assertEqual(frames[-2]["type"], "response.completed")
        self.assertEqual(frames[-1]["error"]["code"], "websocket_connection_limit_reached")
        assert c.closed is not None
        self.assertEqual(c.closed.code, 1000)

    def test_the_drain_lets_the_turn_finish_then_closes_1001(self) -> None:
        h = Harness()
        busy, idle = SocketClient(h), SocketClient(h)
        busy.create()
        drained = h.gateway.drain(30)
        idle.pump()
        assert idle.closed is not None
        self.assertEqual(idle.closed.code, 1001)
        idle.lose(Failure(ConnectionDone()))
        self.assertFalse(drained.called)
        busy.pump()
        self.assertIsNone(busy.closed)
        answer(h, 0, ["done"])
        frames = busy.pump()
        self.assertEqual(frames[-1]["type"], "response.completed")
        assert busy.closed is not None
        self.assertEqual(busy.closed.code, 1001)
        busy.lose(Failure(ConnectionDone()))
        self.assertTrue(drained.called)

    def test_a_new_upgrade_while_draining_is_503(self) -> None:
        h = Harness()
        h.gateway.drain(30)
        c = SocketClient(h)
        assert c.rejected is not None
        self.assertEqual(c.rejected.status_code, 503)

    def test_the_http_channels_idle_timer_does_not_cut_a_socket(self) -> None:
        h = Harness(makeConfig({"server": {"websocket_idle_timeout": 0, "websocket_max_age": 0}}))
        c = SocketClient(h)
        h.reactor.advance(24 * 3600)
        c.pump()
        self.assertIsNone(c.closed)
        self.assertFalse(c.conn.transport.disconnecting)


class AccountingTests(SynchronousTestCase):
    def test_access_lines_metrics_and_the_connection_count(self) -> None:
        h = Harness()
        lines = Lines(self)
        c = SocketClient(h)
        self.assertEqual(h.metric("codexgw_websockets_open"), 1)
        for i in range(2):
            c.create(store=False)
            answer(h, i, ["ok"])
        c.send("nope")
        turns = [line for line in lines.lines if line.startswith("WS /v1/responses 200 ")]
        self.assertEqual(len(turns), 2)
        sockets = {line.split("socket=")[1].split()[0] for line in turns}
        self.assertEqual(len(sockets), 1)
        socket = sockets.pop()
        self.assertFalse(any(line.startswith("POST ") for line in lines.lines))
        self.assertFalse(any(line.startswith("GET ") for line in lines.lines))
        c.lose(Failure(ConnectionDone()))
        [upgrade] = [line for line in lines.lines if line.startswith("GET /v1/responses 101 ")]
        self.assertIn(f"socket={socket}", upgrade)
        self.assertIn("turns=2", upgrade)
        self.assertEqual(h.metric("codexgw_websockets_open"), 0)
        self.assertEqual(h.metric("codexgw_websocket_turns_count"), 1)
        self.assertEqual(h.metric("codexgw_websocket_turns_sum"), 2)
        self.assertEqual(
            h.metric("codexgw_websocket_frames_total", direction="in", type="response.create"), 2
        )
        self.assertEqual(
            h.metric("codexgw_websocket_frames_total", direction="in", type="invalid"), 1
        )
        self.assertEqual(
            h.metric("codexgw_websocket_frames_total", direction="out", type="response.completed"),
            2,
        )
        self.assertEqual(
            h.metric(
                "codexgw_requests_total",
                route="/v1/responses",
                status="101",
                upstream="-",
                model="none",
            ),
            1,
        )
        self.assertEqual(h.site.openConnections, 0)
