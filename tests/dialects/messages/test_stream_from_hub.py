"""
Tests for L{codexgw.dialects.messages.stream_from_hub}: hub events (as the
Chat and Messages spokes make them, and as OpenAI sends them) in, Messages
stream events out, checked with the anthropic SDK's own models and
accumulator (L{check_messages_stream}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.messages.request_to_hub import HubRequest, messages_to_responses
from codexgw.dialects.messages.stream_from_hub import (
    ResponsesToMessages,
    messages_usage,
    tool_use_id,
)
from codexgw.dialects.messages.thinking import unpack_reasoning
from tests.dialects.helpers import run_fixture as run_chat_fixture
from tests.dialects.helpers import translator as chat_translator
from tests.dialects.messages.helpers import (
    check_message,
    check_messages_stream,
    claude_code_body,
    run_fixture,
)
from tests.dialects.oracle import check_stream


def hub_request(thinking: bool = True) -> HubRequest:
    body = (
        claude_code_body()
        if thinking
        else {
            "model": "claude",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    return messages_to_responses(body)


def down(
    events: list[dict[str, Any]], thinking: bool = True
) -> tuple[ResponsesToMessages, list[dict[str, Any]]]:
    t = ResponsesToMessages(hub_request(thinking), message_id="msg_fixture")
    out = t.start()
    for event in events:
        out += t.feed(event)
    out += t.finish()
    return t, out


def openai_reasoning_stream() -> list[dict[str, Any]]:
    """What OpenAI sends for a reasoning model: two summary parts, then a call."""
    seq = iter(range(1000))
    response = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "o",
        "output": [],
    }
    rs = {"id": "rs_1", "type": "reasoning", "summary": []}
    fc = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "Bash",
        "arguments": "",
        "status": "in_progress",
    }
    done_rs = {
        **rs,
        "summary": [{"type": "summary_text", "text": "A"}, {"type": "summary_text", "text": "B"}],
        "encrypted_content": "gAAAA-enc",
    }
    done_fc = {**fc, "arguments": '{"command": "ls"}', "status": "completed"}
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 120,
    }
    return [
        {"type": "response.created", "sequence_number": next(seq), "response": response},
        {
            "type": "response.output_item.added",
            "sequence_number": next(seq),
            "output_index": 0,
            "item": rs,
        },
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "delta": "A",
        },
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 1,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 1,
            "delta": "B",
        },
        {"type": "response.output_item.done", "output_index": 0, "item": done_rs},
        {"type": "response.output_item.added", "output_index": 1, "item": fc},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_1",
            "output_index": 1,
            "delta": '{"command":',
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_1",
            "output_index": 1,
            "delta": ' "ls"}',
        },
        {"type": "response.output_item.done", "output_index": 1, "item": done_fc},
        {
            "type": "response.completed",
            "response": {
                **response,
                "status": "completed",
                "output": [done_rs, done_fc],
                "usage": usage,
            },
        },
    ]


class StreamTests(SynchronousTestCase):
    def test_the_translator_provides_the_stream_translator_interface(self) -> None:
        self.assertTrue(verifyObject(IStreamTranslator, MESSAGES.streamFromHub(hub_request())))

    def test_openai_reasoning_and_a_call_become_thinking_then_tool_use(self) -> None:
        t, events = down(openai_reasoning_stream())
        message = check_messages_stream(events)
        self.assertEqual([b.type for b in message.content], ["thinking", "tool_use"])
        thinking, use = message.content
        self.assertEqual(thinking.thinking, "A\n\nB")
        self.assertEqual(unpack_reasoning(thinking.signature), ("rs_1", "gAAAA-enc"))
        self.assertEqual((use.id, use.name, use.input), ("call_1", "Bash", {"command": "ls"}))
        self.assertEqual(message.stop_reason, "tool_use")
        self.assertEqual(
            (
                message.usage.input_tokens,
                message.usage.cache_read_input_tokens,
                message.usage.output_tokens,
            ),
            (40, 60, 20),
        )
        deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
        self.assertEqual(deltas.count("signature_delta"), 1)
        self.assertEqual(
            t.answer()["content"], [b.model_dump(exclude_none=True) for b in message.content]
        )

    def test_chat_reasoning_sent_twice_as_summary_and_text_is_one_thinking_text(self) -> None:
        hub = run_chat_fixture("deepseek_reasoning")
        check_stream(hub)
        _, events = down(hub)
        message = check_messages_stream(events)
        self.assertEqual([b.type for b in message.content], ["thinking", "text"])
        self.assertEqual(message.content[0].thinking, "The user wants a greeting.")
        self.assertEqual(message.content[1].text, "Hi there")
        self.assertEqual(message.stop_reason, "end_turn")

    def test_a_client_without_thinking_gets_no_thinking_blocks(self) -> None:
        _, events = down(run_chat_fixture("deepseek_reasoning"), thinking=False)
        message = check_messages_stream(events)
        self.assertEqual([b.type for b in message.content], ["text"])

    def test_parallel_calls_are_tool_use_blocks_in_order(self) -> None:
        _, events = down(run_chat_fixture("openai_parallel_tools"))
        message = check_messages_stream(events)
        self.assertEqual(
            [(b.id, b.name, b.input) for b in message.content],
            [
                ("call_A", "exec_command", {"cmd": "ls -la"}),
                ("call_B", "view_image", {"path": "/tmp/ä.png"}),
            ],
        )

    def test_incomplete_for_max_output_tokens_is_max_tokens(self) -> None:
        _, events = down(run_chat_fixture("length_truncated"))
        message = check_messages_stream(events)
        self.assertEqual(message.stop_reason, "max_tokens")
        self.assertEqual(message.content[0].text, "This answer is cut")

    def test_a_failed_response_is_an_error_event_and_nothing_after(self) -> None:
        t, events = down(run_chat_fixture("midstream_error"))
        self.assertIsNone(check_messages_stream(events))
        self.assertEqual(events[-1]["type"], "error")
        self.assertEqual(events[-1]["error"]["type"], "invalid_request_error")
        self.assertEqual(t.failure["code"], "context_length_exceeded")  # type: ignore[index]
        self.assertTrue(t.done)
        self.assertEqual(t.feed({"type": "response.completed"}), [])

    def test_overloaded_and_other_failures_have_anthropic_types(self) -> None:
        _, events = down(run_fixture("midstream_error"))
        self.assertEqual(events[-1]["error"], {"type": "overloaded_error", "message": "Overloaded"})
        t = ResponsesToMessages(hub_request())
        out = t.start() + t.fail("upstream_timeout", "slow")
        self.assertEqual(out[-1]["error"]["type"], "api_error")

    def test_a_hub_stream_cut_before_its_terminal_event_is_an_error_not_a_tool_turn(self) -> None:
        hub = openai_reasoning_stream()[:-3]  # inside the call's arguments
        t, events = down(hub)
        self.assertIsNone(check_messages_stream(events))
        self.assertEqual(events[-1]["error"]["type"], "api_error")
        self.assertEqual(t.failure["code"], "upstream_stream_incomplete")  # type: ignore[index]
        self.assertNotIn("content_block_stop", [e["type"] for e in events][-2:])

    def test_keepalive_is_a_ping_after_message_start(self) -> None:
        t = ResponsesToMessages(hub_request())
        out = t.keepalive() + t.keepalive()
        self.assertEqual([e["type"] for e in out], ["message_start", "ping", "ping"])
        self.assertEqual(t.start(), [])

    def test_a_whole_answer_is_one_messages_message(self) -> None:
        t, _ = down(run_chat_fixture("openai_text"))
        answer = t.answer()
        check_message(answer)
        self.assertEqual(answer["content"], [{"type": "text", "text": "Hello, world — ünïcode ✓"}])
        self.assertEqual(answer["stop_reason"], "end_turn")
        self.assertEqual(
            answer["usage"],
            {
                "input_tokens": 56,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 64,
                "output_tokens": 15,
            },
        )
        self.assertEqual(t.usage, answer["usage"])
        self.assertEqual(answer["model"], "claude-sonnet-4-5")

    def test_a_message_sent_whole_without_deltas_still_arrives(self) -> None:
        item = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "whole", "annotations": []}],
        }
        _, events = down(
            [
                {"type": "response.output_item.added", "item": {**item, "content": []}},
                {"type": "response.output_item.done", "item": item},
                {"type": "response.completed", "response": {}},
            ]
        )
        self.assertEqual(check_messages_stream(events).content[0].text, "whole")

    def test_every_hub_stream_of_both_spokes_is_a_valid_messages_stream(self) -> None:
        for name in ("openai_text", "vllm_tools", "ollama_tools", "no_finish_reason", "azure_text"):
            check_messages_stream(down(run_chat_fixture(name))[1])
        for name in (
            "text",
            "thinking_tool_use",
            "parallel_tool_use",
            "max_tokens",
            "redacted_thinking",
        ):
            check_messages_stream(down(run_fixture(name))[1])

    def test_tool_use_ids(self) -> None:
        self.assertEqual(tool_use_id("call_abc-1"), "call_abc-1")
        self.assertTrue(tool_use_id("call.with:dots").startswith("toolu_"))
        self.assertEqual(tool_use_id("a.b"), tool_use_id("a.b"))

    def test_usage_excludes_the_cache_from_input(self) -> None:
        self.assertEqual(
            messages_usage(
                {
                    "input_tokens": 10,
                    "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 1},
                    "output_tokens": 2,
                }
            ),
            {
                "input_tokens": 5,
                "cache_creation_input_tokens": 1,
                "cache_read_input_tokens": 4,
                "output_tokens": 2,
            },
        )
        self.assertEqual(messages_usage(None)["input_tokens"], 0)


class ChatCustomCallTests(SynchronousTestCase):
    def test_a_custom_call_is_a_tool_use_of_one_input_string(self) -> None:
        hub = run_chat_fixture("vllm_tools", chat_translator())
        _, events = down(hub)
        message = check_messages_stream(events)
        patch = [b for b in message.content if b.type == "tool_use" and b.name == "apply_patch"]
        self.assertEqual(patch[0].input, {"input": "*** Begin Patch\n*** End Patch\n"})
        self.assertEqual(json.loads(json.dumps(patch[0].input))["input"][:5], "*** B")


class EveryPrefixTests(SynchronousTestCase):
    def test_a_hub_stream_that_breaks_or_closes_anywhere_is_a_valid_messages_stream(self) -> None:
        streams = [
            openai_reasoning_stream(),
            run_fixture("thinking_tool_use"),
            run_chat_fixture("vllm_tools"),
        ]
        for hub in streams:
            for cut in range(len(hub) + 1):
                for end_with in ("fail", "finish"):
                    t = ResponsesToMessages(hub_request())
                    out = t.start()
                    for event in hub[:cut]:
                        out += t.feed(event)
                    out += t.fail("upstream_timeout", "cut") if end_with == "fail" else t.finish()
                    check_messages_stream(out)
