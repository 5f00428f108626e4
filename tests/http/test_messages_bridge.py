"""
Every client onto every upstream through the hub, for the Messages dialect:
a Messages client onto Chat and Responses upstreams, and Chat and Responses
clients onto a Messages upstream, streamed and not, with a tool round trip,
errors in the client's shape and keep-alives while the upstream is silent.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.stream.adapters import encodeEvents
from codexgw.stream.sse import SSEDecoder
from tests.dialects.helpers import run_fixture
from tests.fakes import messages_upstream as anthropic
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.harness import Harness, makeConfig

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")

MESSAGES = b"/v1/messages"
CHAT = b"/v1/chat/completions"
RESPONSES = b"/v1/responses"
UPSTREAM_KEY = "sk-ant-upstream-0123456789"
SSE = {b"content-type": b"text/event-stream"}
TOOL = {
    "name": "Bash",
    "description": "run a command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}


def events(body: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """An SSE body as (event name, data) pairs."""
    decoder = SSEDecoder()
    out = []
    for e in decoder.feed(body) + decoder.close():
        if e.data != "[DONE]":
            out.append((e.event, orjson.loads(e.data)))
    return out


def messagesUpstream(**extra: Any) -> Harness:
    return Harness(
        makeConfig(extra, wire_api="messages", provider="anthropic", api_key=UPSTREAM_KEY)
    )


def chatToolCall(name: str, arguments: str, id: str = "call_1") -> list[bytes]:
    return [
        chatChunk({"role": "assistant", "content": None}),
        chatChunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        ),
        chatChunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
        chatChunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


class MessagesClientOnChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig())

    def test_a_streamed_answer_is_the_messages_event_sequence(self) -> None:
        client = self.h.connect()
        client.post(
            MESSAGES + b"?beta=true", anthropic.request("hi", stream=True, system="be brief")
        )
        [sent] = self.h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/chat/completions")
        body = orjson.loads(sent.body)
        self.assertEqual(body["messages"][0], {"role": "system", "content": "be brief"})
        self.assertEqual(body["messages"][-1]["role"], "user")
        sent.respond(200, SSE, b"".join(textStream(["Hel", "lo"])))
        status, headers, raw = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/event-stream")
        self.assertNotIn(b"[DONE]", raw)
        got = events(raw)
        names = [name for name, _ in got]
        self.assertEqual(names[0], "message_start")
        self.assertEqual(names[-1], "message_stop")
        self.assertEqual([name for name, data in got], [data["type"] for _, data in got])
        text = "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta")
        self.assertEqual(text, "Hello")
        [delta] = [d for n, d in got if n == "message_delta"]
        self.assertEqual(delta["delta"]["stop_reason"], "end_turn")
        self.assertEqual(delta["usage"]["output_tokens"], 2)

    def test_system_messages_among_the_turns_stay_in_their_place(self) -> None:
        # Claude Code, for a model it does not know, sends its reminders as
        # a trailing role "system" message (the 2026 API).
        client = self.h.connect()
        billing = "x-anthropic-billing-header: cc_version=2.1.197.1f8; cc_entrypoint=sdk-cli;"
        client.post(
            MESSAGES,
            anthropic.request(
                system=[{"type": "text", "text": billing}, {"type": "text", "text": "Be brief."}],
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "system", "content": [{"type": "text", "text": "Agents: none."}]},
                ],
            ),
        )
        body = orjson.loads(self.h.sent[0].body)
        self.assertEqual(
            body["messages"],
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "Agents: none."},
            ],
        )

    def test_a_whole_answer_is_one_message(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request("hi"))
        self.h.sent[0].respond(200, SSE, b"".join(textStream(["Hi", " there"])))
        status, _, raw = client.response()
        self.assertEqual(status, 200)
        message = orjson.loads(raw)
        self.assertEqual(message["type"], "message")
        self.assertEqual(message["role"], "assistant")
        self.assertEqual(message["content"], [{"type": "text", "text": "Hi there"}])
        self.assertEqual(message["stop_reason"], "end_turn")
        self.assertEqual(message["usage"]["input_tokens"], 5)

    def test_a_tool_round_trip(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request("list files", stream=True, tools=[TOOL]))
        sent = self.h.sent[0]
        tools = orjson.loads(sent.body)["tools"]
        self.assertEqual(tools[0]["function"]["name"], "Bash")
        sent.respond(200, SSE, b"".join(chatToolCall("Bash", '{"command": "ls"}')))
        got = events(client.response()[2])
        [start] = [d for n, d in got if n == "content_block_start"]
        block = start["content_block"]
        self.assertEqual((block["type"], block["name"]), ("tool_use", "Bash"))
        joined = "".join(
            d["delta"]["partial_json"]
            for n, d in got
            if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
        )
        self.assertEqual(orjson.loads(joined), {"command": "ls"})
        [delta] = [d for n, d in got if n == "message_delta"]
        self.assertEqual(delta["delta"]["stop_reason"], "tool_use")

        # The next turn answers the call: the upstream gets a tool message.
        second = self.h.connect()
        second.post(
            MESSAGES,
            anthropic.request(
                "list files",
                tools=[TOOL],
                messages=[
                    {"role": "user", "content": "list files"},
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "tool_use",
                                "id": block["id"],
                                "name": "Bash",
                                "input": {"command": "ls"},
                            }
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": block["id"], "content": "a.txt"}
                        ],
                    },
                ],
            ),
        )
        upstream = orjson.loads(self.h.sent[1].body)["messages"]
        assistant = next(m for m in upstream if m["role"] == "assistant")
        self.assertEqual(assistant["tool_calls"][0]["function"]["name"], "Bash")
        tool = next(m for m in upstream if m["role"] == "tool")
        self.assertEqual(tool["tool_call_id"], assistant["tool_calls"][0]["id"])
        self.assertIn("a.txt", orjson.dumps(tool["content"]).decode())
        self.h.sent[1].respond(200, SSE, b"".join(textStream(["done"])))
        self.assertEqual(orjson.loads(second.response()[2])["content"][0]["text"], "done")

    def test_an_upstream_429_is_a_rate_limit_error_with_retry_after(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        self.h.sent[0].respond(
            429,
            {b"content-type": b"application/json", b"retry-after": b"3"},
            b'{"error": {"message": "slow down", "type": "rate_limit_error"}}',
        )
        status, headers, raw = client.response()
        self.assertEqual(status, 429)
        self.assertEqual(headers[b"retry-after"], b"3")
        error = orjson.loads(raw)
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["type"], "rate_limit_error")

    def test_an_upstream_500_is_an_api_error(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        self.h.sent[0].respond(500, {b"content-type": b"application/json"}, b'{"error": "boom"}')
        status, _, raw = client.response()
        self.assertEqual(status, 500)
        self.assertEqual(orjson.loads(raw)["error"]["type"], "api_error")

    def test_a_context_overflow_is_anthropics_prompt_is_too_long(self) -> None:
        # The words Claude Code compacts on, with the numbers it reads.
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        self.h.sent[0].respond(
            400,
            {b"content-type": b"application/json"},
            orjson.dumps(
                {
                    "error": {
                        "message": "This model's maximum context length is 128000 tokens. "
                        "However, your messages resulted in 130000 tokens. Please reduce the "
                        "length of the messages.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                }
            ),
        )
        status, _, raw = client.response()
        self.assertEqual(status, 400)
        self.assertEqual(
            orjson.loads(raw)["error"],
            {
                "type": "invalid_request_error",
                "message": "prompt is too long: 130000 tokens > 128000 maximum",
            },
        )

    def test_ping_events_keep_a_client_waiting_on_a_silent_upstream(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        interval = self.h.config.heartbeat_interval
        self.h.reactor.advance(interval)
        self.h.reactor.advance(interval)
        status, headers, raw = client.response()
        self.assertEqual(status, 200)
        got = events(raw)
        self.assertEqual(got[0][0], "message_start")
        self.assertIn(("ping", {"type": "ping"}), got)
        response = self.h.sent[0].respond(200, SSE)
        for chunk in textStream(["late"])[:2]:
            response.send(chunk)
        self.h.reactor.advance(interval)
        self.assertIn(("ping", {"type": "ping"}), events(client.response()[2])[-2:])
        response.end()
        got = events(client.response()[2])
        self.assertEqual([n for n, _ in got].count("message_start"), 1)
        self.assertEqual(got[-1][0], "message_stop")

    def test_a_whole_answer_whose_upstream_breaks_is_a_502_api_error(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        response = self.h.sent[0].respond(200, SSE)
        response.send(textStream(["half"])[1])
        response.end(Failure(ConnectionLost()))
        status, _, raw = client.response()
        self.assertEqual(status, 502)
        error = orjson.loads(raw)
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["type"], "api_error")

    def test_a_stream_that_breaks_ends_in_an_error_event(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        response = self.h.sent[0].respond(200, SSE)
        response.send(textStream(["half"])[1])
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        response.end(Failure(ConnectionLost()))
        got = events(client.response()[2])
        self.assertEqual(got[-1][0], "error")
        self.assertEqual(got[-1][1]["type"], "error")


class MessagesClientOnResponsesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(wire_api="responses"))

    def test_streamed(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request("hi", stream=True))
        [sent] = self.h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/responses")
        body = orjson.loads(sent.body)
        self.assertIs(body["stream"], True)
        self.assertEqual(body["input"][0]["role"], "user")
        sent.respond(200, SSE, encodeEvents(run_fixture("openai_text")))
        got = events(client.response()[2])
        self.assertEqual(got[0][0], "message_start")
        self.assertEqual(got[-1][0], "message_stop")
        self.assertTrue(any(n == "content_block_delta" for n, _ in got))

    def test_not_streamed_with_tool_calls(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request("ls", tools=[TOOL]))
        self.h.sent[0].respond(200, SSE, encodeEvents(run_fixture("openai_parallel_tools")))
        message = orjson.loads(client.response()[2])
        self.assertEqual(message["type"], "message")
        uses = [b for b in message["content"] if b["type"] == "tool_use"]
        self.assertEqual([u["name"] for u in uses], ["exec_command", "view_image"])
        self.assertEqual(uses[0]["input"], {"cmd": "ls -la"})
        self.assertEqual(message["stop_reason"], "tool_use")

    def test_a_silent_upstream_gets_the_client_message_start_and_pings(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        interval = self.h.config.heartbeat_interval
        self.h.reactor.advance(interval)
        self.h.reactor.advance(interval)
        status, _, raw = client.response()
        self.assertEqual(status, 200)
        self.assertEqual([n for n, _ in events(raw)], ["message_start", "ping"])
        self.h.sent[0].respond(200, SSE, encodeEvents(run_fixture("openai_text")))
        got = events(client.response()[2])
        self.assertEqual([n for n, _ in got].count("message_start"), 1)
        self.assertEqual(got[-1][0], "message_stop")

    def test_an_upstream_error_after_an_early_start_is_an_error_event(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        self.h.reactor.advance(self.h.config.heartbeat_interval)
        self.h.sent[0].respond(
            429,
            {b"content-type": b"application/json"},
            b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}',
        )
        status, _, raw = client.response()
        self.assertEqual(status, 200)
        name, data = events(raw)[-1]
        self.assertEqual(name, "error")
        self.assertEqual(data["error"]["type"], "rate_limit_error")

    def test_an_upstream_error_is_in_anthropics_shape(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        self.h.sent[0].respond(
            404,
            {b"content-type": b"application/json"},
            b'{"error": {"message": "no such model", "type": "invalid_request_error", "code": "model_not_found"}}',
        )
        status, _, raw = client.response()
        self.assertEqual(status, 404)
        self.assertEqual(orjson.loads(raw)["error"]["type"], "not_found_error")

    def failedTooLong(self) -> bytes:
        shell = {"id": "resp_big", "object": "response", "status": "in_progress", "output": []}
        error = {
            "code": "context_length_exceeded",
            "message": "Your input exceeds the context window of this model.",
        }
        return encodeEvents(
            [
                {"type": "response.created", "sequence_number": 0, "response": shell},
                {
                    "type": "response.failed",
                    "sequence_number": 1,
                    "response": dict(shell, status="failed", error=error),
                },
            ]
        )

    def test_a_stream_failed_for_a_context_overflow_ends_in_prompt_is_too_long(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        self.h.sent[0].respond(200, SSE, self.failedTooLong())
        name, data = events(client.response()[2])[-1]
        self.assertEqual(name, "error")
        self.assertEqual(
            data["error"],
            {
                "type": "invalid_request_error",
                "message": "prompt is too long: Your input exceeds the context window of this "
                "model.",
            },
        )

    def test_a_whole_answer_failed_for_a_context_overflow_is_a_400(self) -> None:
        # Anthropic answers a prompt too long 400: a 5xx would be retried.
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        self.h.sent[0].respond(200, SSE, self.failedTooLong())
        status, _, raw = client.response()
        self.assertEqual(status, 400)
        error = orjson.loads(raw)["error"]
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertTrue(error["message"].startswith("prompt is too long: "), error)


class ResponsesClientOnMessagesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = messagesUpstream()

    def test_streamed(self) -> None:
        client = self.h.connect()
        client.post(RESPONSES, {"model": "claude-sonnet-4-5", "input": "hi", "stream": True})
        [sent] = self.h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/messages")
        self.assertEqual(sent.header(b"x-api-key"), UPSTREAM_KEY.encode())
        self.assertEqual(sent.header(b"anthropic-version"), b"2023-06-01")
        body = orjson.loads(sent.body)
        self.assertEqual(body["max_tokens"], 32000)
        self.assertEqual(body["messages"][0]["role"], "user")
        sent.respond(200, anthropic.SSE, anthropic.stream(anthropic.textEvents(["Hel", "lo"])))
        got = events(client.response()[2])
        names = [n for n, _ in got]
        self.assertEqual(names[0], "response.created")
        self.assertEqual(names[-1], "response.completed")
        done = got[-1][1]["response"]
        self.assertEqual(done["output"][-1]["content"][0]["text"], "Hello")
        # Input counts cache reads and writes, as OpenAI's does.
        self.assertEqual(done["usage"]["input_tokens"], 11 + 2 + 5)
        self.assertEqual(done["usage"]["input_tokens_details"]["cached_tokens"], 5)

    def test_not_streamed_with_a_tool_call(self) -> None:
        client = self.h.connect()
        client.post(
            RESPONSES,
            {
                "model": "claude-sonnet-4-5",
                "input": "ls",
                "max_output_tokens": 500,
                "tools": [
                    {
                        "type": "function",
                        "name": "exec_command",
                        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
                    }
                ],
            },
        )
        sent = self.h.sent[0]
        body = orjson.loads(sent.body)
        self.assertEqual(body["max_tokens"], 500)
        self.assertEqual(body["tools"][0]["name"], "exec_command")
        sent.respond(
            200,
            anthropic.SSE,
            anthropic.stream(anthropic.toolEvents("exec_command", {"cmd": "ls"})),
        )
        response = orjson.loads(client.response()[2])
        [call] = [i for i in response["output"] if i["type"] == "function_call"]
        self.assertEqual(call["name"], "exec_command")
        self.assertEqual(orjson.loads(call["arguments"]), {"cmd": "ls"})
        self.assertEqual(call["call_id"], "toolu_01A")

    def test_the_tool_output_goes_back_as_a_tool_result(self) -> None:
        client = self.h.connect()
        tools = [
            {
                "type": "function",
                "name": "exec_command",
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
            }
        ]
        client.post(
            RESPONSES,
            {
                "model": "claude-sonnet-4-5",
                "store": False,
                "tools": tools,
                "input": [
                    {"role": "user", "content": "ls"},
                    {
                        "type": "function_call",
                        "call_id": "toolu_01A",
                        "name": "exec_command",
                        "arguments": '{"cmd": "ls"}',
                    },
                    {"type": "function_call_output", "call_id": "toolu_01A", "output": "a.txt"},
                ],
            },
        )
        messages = orjson.loads(self.h.sent[0].body)["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "user"])
        [use] = [b for b in messages[1]["content"] if b["type"] == "tool_use"]
        self.assertEqual(
            (use["id"], use["name"], use["input"]), ("toolu_01A", "exec_command", {"cmd": "ls"})
        )
        result = messages[2]["content"][0]
        self.assertEqual((result["type"], result["tool_use_id"]), ("tool_result", "toolu_01A"))
        self.assertIn("a.txt", orjson.dumps(result["content"]).decode())
        self.h.sent[0].respond(
            200, anthropic.SSE, anthropic.stream(anthropic.textEvents(["a.txt"]))
        )
        self.assertEqual(orjson.loads(client.response()[2])["status"], "completed")

    def test_a_profile_default_max_tokens_is_used(self) -> None:
        h = Harness(
            makeConfig(
                {
                    "profiles": {
                        "small-claude": {"extends": "anthropic", "default_max_tokens": 4096}
                    }
                },
                wire_api="messages",
                provider="small-claude",
            )
        )
        client = h.connect()
        client.post(RESPONSES, {"model": "claude-haiku-3-5", "input": "hi"})
        self.assertEqual(orjson.loads(h.sent[0].body)["max_tokens"], 4096)
        self.assertEqual(h.sent[0].header(b"anthropic-version"), b"2023-06-01")

    def test_overloaded_is_a_retryable_5xx_in_openais_shape(self) -> None:
        client = self.h.connect()
        client.post(RESPONSES, {"model": "claude-sonnet-4-5", "input": "hi"})
        self.h.sent[0].respond(
            529, anthropic.JSON, anthropic.error("overloaded_error", "Overloaded")
        )
        status, _, raw = client.response()
        self.assertEqual(status, 529)
        error = orjson.loads(raw)["error"]
        self.assertEqual(error["message"], "Overloaded")

    def test_prompt_too_long_is_context_length_exceeded(self) -> None:
        client = self.h.connect()
        client.post(RESPONSES, {"model": "claude-sonnet-4-5", "input": "hi"})
        self.h.sent[0].respond(
            400,
            anthropic.JSON,
            anthropic.error(
                "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"
            ),
        )
        status, _, raw = client.response()
        self.assertEqual(status, 400)
        self.assertEqual(orjson.loads(raw)["error"]["code"], "context_length_exceeded")


class ChatClientOnMessagesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = messagesUpstream()

    def test_streamed(self) -> None:
        client = self.h.connect()
        client.post(
            CHAT,
            {
                "model": "claude-sonnet-4-5",
                "messages": [
                    {"role": "system", "content": "terse"},
                    {"role": "user", "content": "hi"},
                ],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        [sent] = self.h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/messages")
        body = orjson.loads(sent.body)
        self.assertEqual(body["system"][0]["text"], "terse")
        [user] = body["messages"]
        self.assertEqual(user["role"], "user")
        self.assertEqual(user["content"][0]["text"], "hi")
        sent.respond(200, anthropic.SSE, anthropic.stream(anthropic.textEvents(["Hel", "lo"])))
        status, headers, raw = client.response()
        self.assertEqual(status, 200)
        self.assertTrue(raw.rstrip().endswith(b"data: [DONE]"))
        chunks = [d for _, d in events(raw)]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
        self.assertEqual(text, "Hello")
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
        self.assertEqual(finish[-1], "stop")
        usage = chunks[-1]["usage"]
        self.assertEqual(usage["prompt_tokens"], 18)
        self.assertEqual(usage["completion_tokens"], 7)

    def test_not_streamed_with_a_tool_call(self) -> None:
        client = self.h.connect()
        client.post(
            CHAT,
            {
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "ls"}],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "exec_command",
                            "parameters": {
                                "type": "object",
                                "properties": {"cmd": {"type": "string"}},
                            },
                        },
                    }
                ],
            },
        )
        self.h.sent[0].respond(
            200,
            anthropic.SSE,
            anthropic.stream(anthropic.toolEvents("exec_command", {"cmd": "ls"})),
        )
        completion = orjson.loads(client.response()[2])
        choice = completion["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        [call] = choice["message"]["tool_calls"]
        self.assertEqual(call["function"]["name"], "exec_command")
        self.assertEqual(orjson.loads(call["function"]["arguments"]), {"cmd": "ls"})

    def test_an_upstream_error_is_in_openais_shape(self) -> None:
        client = self.h.connect()
        client.post(
            CHAT, {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        )
        self.h.sent[0].respond(
            429,
            {**anthropic.JSON, b"retry-after": b"2"},
            anthropic.error("rate_limit_error", "Number of requests has exceeded your rate limit"),
        )
        status, headers, raw = client.response()
        self.assertEqual(status, 429)
        self.assertEqual(headers[b"retry-after"], b"2")
        self.assertEqual(orjson.loads(raw)["error"]["type"], "rate_limit_error")


def claudeCodeRequest() -> tuple[dict[bytes, bytes], dict[str, Any]]:
    """Claude Code's recorded second request of a turn, with its headers."""
    path = os.path.join(FIXTURES, "messages_streams", "claude-code-2.1-request.json")
    with open(path, "rb") as f:
        recorded = orjson.loads(f.read())
    keep = ("anthropic-version", "anthropic-beta", "X-Claude-Code-Session-Id", "x-app")
    headers = {k.lower().encode(): v.encode() for k, v in recorded["headers"].items() if k in keep}
    return headers, recorded["body"]


class ClaudeCodeRequestTests(SynchronousTestCase):
    def test_onto_a_chat_upstream(self) -> None:
        h = Harness(makeConfig())
        headers, body = claudeCodeRequest()
        client = h.connect()
        client.post(MESSAGES + b"?beta=true", body, headers)
        [sent] = h.sent
        chat = orjson.loads(sent.body)
        self.assertEqual(len(chat["tools"]), len(body["tools"]))
        roles = [m["role"] for m in chat["messages"]]
        self.assertEqual(roles[0], "system")
        self.assertIn("tool", roles)
        self.assertIsNone(sent.header(b"anthropic-beta"))
        sent.respond(200, SSE, b"".join(textStream(["All", " done"])))
        got = events(client.response()[2])
        self.assertEqual(got[0][0], "message_start")
        self.assertEqual(got[-1][0], "message_stop")

    def test_onto_a_responses_upstream(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        headers, body = claudeCodeRequest()
        client = h.connect()
        client.post(MESSAGES + b"?beta=true", body, headers)
        [sent] = h.sent
        hub = orjson.loads(sent.body)
        kinds = [i.get("type") for i in hub["input"]]
        self.assertIn("function_call", kinds)
        self.assertIn("function_call_output", kinds)
        sent.respond(200, SSE, encodeEvents(run_fixture("openai_text")))
        got = events(client.response()[2])
        self.assertEqual(got[-1][0], "message_stop")

    def test_onto_a_messages_upstream_it_is_relayed_as_it_came(self) -> None:
        h = messagesUpstream()
        headers, body = claudeCodeRequest()
        raw = orjson.dumps(body)
        client = h.connect()
        client.send(
            b"POST",
            MESSAGES + b"?beta=true",
            raw,
            {**headers, b"content-type": b"application/json"},
        )
        [sent] = h.sent
        self.assertEqual(sent.body, raw)
        self.assertEqual(sent.header(b"anthropic-beta"), headers[b"anthropic-beta"])


class ComposedTests(SynchronousTestCase):
    """The composed translator on its own: a Chat stream to Messages events."""

    def translator(self) -> Any:
        from codexgw.dialects.chat import CHAT
        from codexgw.dialects.chat.dialect import ChatDialect
        from codexgw.dialects.messages import MESSAGES
        from codexgw.stream.compose import Composed

        hub = MESSAGES.requestToHub(anthropic.request(stream=True), upstream_model="up")
        chat = CHAT.requestFromHub(hub.body, ChatDialect(), upstream_model="up")
        return Composed(CHAT.streamToHub(chat, model="claude"), MESSAGES.streamFromHub(hub))

    def test_it_provides_the_stream_translator_contract(self) -> None:
        from zope.interface.verify import verifyObject

        from codexgw.dialects.interfaces import IStreamTranslator

        self.assertTrue(verifyObject(IStreamTranslator, self.translator()))

    def test_a_chat_stream_becomes_one_messages_stream_and_then_nothing(self) -> None:
        t = self.translator()
        out = t.start()
        decoder = SSEDecoder()
        for raw in textStream(["a", "b"]):
            for e in decoder.feed(raw):
                if e.data != "[DONE]":
                    out += t.feed(orjson.loads(e.data))
        out += t.finish()
        kinds = [e["type"] for e in out]
        self.assertEqual(kinds.count("message_start"), 1)
        self.assertEqual(kinds[-1], "message_stop")
        self.assertTrue(t.done)
        self.assertIsNone(t.failure)
        self.assertEqual((t.finish(), t.fail("x", "y"), t.keepalive()), ([], [], []))
        self.assertEqual(t.answer()["content"], [{"type": "text", "text": "ab"}])
        # Usage is the hub's: what token accounting reads.
        self.assertEqual(t.usage["input_tokens"], 5)

    def test_a_failure_ends_both_sides_once(self) -> None:
        t = self.translator()
        t.start()
        out = t.fail("upstream_broken", "cut")
        self.assertEqual(out[-1]["type"], "error")
        self.assertTrue(t.done)
        self.assertIsNotNone(t.failure)
        self.assertEqual(t.fail("again", "no"), [])
