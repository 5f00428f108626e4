"""
Chat → Responses, pure: the request rules, the Responses stream back into
chat chunks (checked with the openai SDK's models), and round trips through
the forward translator.
"""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.request_to_hub import chat_to_responses
from codexgw.dialects.chat.stream_from_hub import ResponsesToChat
from codexgw.errors import InvalidRequest
from tests.dialects.helpers import run_fixture

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "w",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONVERSATION = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ],
    "tools": TOOLS,
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "max_tokens": 100,
    "temperature": 0.2,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}},
    },
    "reasoning_effort": "low",
    "stream": True,
    "stream_options": {"include_usage": True},
    "seed": 7,
}


class RequestTests(SynchronousTestCase):
    def test_messages_tools_and_options_map_to_a_responses_request(self) -> None:
        req = chat_to_responses(CONVERSATION, upstream_model="gpt-5")
        body = req.body
        self.assertEqual((body["model"], body["stream"], body["store"]), ("gpt-5", True, False))
        self.assertEqual(body["instructions"], "Be brief.")
        self.assertEqual(
            [i["type"] for i in body["input"]], ["message", "function_call", "function_call_output"]
        )
        self.assertEqual(
            body["input"][0]["content"][1],
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        )
        self.assertEqual(
            body["input"][1],
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
        )
        self.assertEqual(
            body["input"][2],
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        )
        self.assertEqual(body["tools"][0]["name"], "get_weather")
        self.assertEqual(body["tool_choice"], {"type": "function", "name": "get_weather"})
        self.assertEqual(body["max_output_tokens"], 100)
        self.assertEqual(body["text"]["format"]["type"], "json_schema")
        self.assertEqual(body["reasoning"], {"effort": "low"})
        self.assertTrue(req.client_stream and req.include_usage)
        self.assertEqual(req.dropped_fields, ["seed"])

    def test_bad_requests_name_the_field(self) -> None:
        for body, param in [
            ({"model": "m", "messages": []}, "messages"),
            ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
            (
                {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
                "messages[0].tool_call_id",
            ),
            ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ]:
            with self.assertRaises(InvalidRequest) as e:
                chat_to_responses(body)
            self.assertEqual(e.exception.param, param)

    def test_round_trip_chat_to_responses_to_chat_keeps_the_conversation(self) -> None:
        there = chat_to_responses(CONVERSATION)
        back = responses_to_chat(there.body, ChatDialect()).body
        roles = [m["role"] for m in back["messages"]]
        self.assertEqual(roles, ["system", "user", "assistant", "tool"])
        self.assertEqual(back["messages"][2]["tool_calls"][0]["id"], "call_1")
        self.assertEqual(
            back["messages"][2]["tool_calls"][0]["function"],
            {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        )
        self.assertEqual(back["messages"][3]["content"], "sunny")
        self.assertEqual(back["tools"][0]["function"]["name"], "get_weather")
        self.assertEqual(back["max_completion_tokens"], 100)


def chat_stream_back(
    fixture: str, include_usage: bool = True
) -> tuple[list[dict[str, Any]], ResponsesToChat]:
    """A Chat fixture → Responses events (forward translator) → chat chunks."""
    events = run_fixture(fixture)
    request = chat_to_responses(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": include_usage},
        }
    )
    back = ResponsesToChat(request, completion_id="chatcmpl-x", created=1)
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks += back.feed(event)
    chunks += back.finish()
    return chunks, back


class StreamTests(SynchronousTestCase):
    def test_text_round_trip_keeps_text_and_usage(self) -> None:
        chunks, back = chat_stream_back("openai_text")
        for chunk in chunks:
            ChatCompletionChunk.model_validate(chunk)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        self.assertTrue(text)
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertIsInstance(chunks[-1]["usage"]["prompt_tokens"], int)
        completion = ChatCompletion.model_validate(back.completion())
        self.assertEqual(completion.choices[0].message.content, text)

    def test_parallel_tool_calls_keep_ids_names_arguments_and_indexes(self) -> None:
        chunks, back = chat_stream_back("openai_parallel_tools")
        for chunk in chunks:
            ChatCompletionChunk.model_validate(chunk)
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for call in (
                (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []
            ):
                entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] = call.get("id") or entry["id"]
                entry["name"] = (call.get("function") or {}).get("name") or entry["name"]
                entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
        self.assertEqual([calls[i]["id"] for i in sorted(calls)], ["call_A", "call_B"])
        self.assertEqual(calls[0]["name"], "exec_command")
        self.assertEqual(calls[1]["arguments"], '{"path": "/tmp/ä.png"}')
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "tool_calls")
        message = ChatCompletion.model_validate(back.completion()).choices[0].message
        self.assertEqual(
            [c.function.name for c in message.tool_calls or []], ["exec_command", "view_image"]
        )

    def test_reasoning_becomes_reasoning_content(self) -> None:
        chunks, back = chat_stream_back("deepseek_reasoning")
        reasoning = "".join(
            c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"]
        )
        self.assertTrue(reasoning)
        self.assertEqual(back.completion()["choices"][0]["message"]["reasoning_content"], reasoning)

    def test_length_truncation_is_finish_reason_length(self) -> None:
        chunks, _ = chat_stream_back("length_truncated", include_usage=False)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")

    def test_failed_response_is_an_error_object_and_nothing_after(self) -> None:
        request = chat_to_responses({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        back = ResponsesToChat(request)
        out = back.feed(
            {
                "type": "response.failed",
                "response": {"error": {"code": "server_error", "message": "boom"}},
            }
        )
        self.assertEqual(
            out,
            [
                {
                    "error": {
                        "message": "boom",
                        "type": "upstream_error",
                        "param": None,
                        "code": "server_error",
                    }
                }
            ],
        )
        self.assertEqual(back.finish(), [])
