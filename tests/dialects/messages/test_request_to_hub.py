"""
Tests for L{codexgw.dialects.messages.request_to_hub}: Messages requests
(a real Claude Code request among them) as valid Responses requests.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.messages.request_to_hub import messages_to_responses
from codexgw.dialects.messages.thinking import pack_reasoning
from codexgw.dialects.responses.validate import check_create
from codexgw.errors import InvalidRequest
from tests.dialects.messages.helpers import claude_code_body


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "hi"}],
    }
    out.update(kw)
    return out


class ClaudeCodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.result = MESSAGES.requestToHub(claude_code_body())
        self.hub = self.result.body

    def test_the_request_is_a_valid_responses_request(self) -> None:
        check_create(self.hub, bridged=False)
        self.assertTrue(self.result.client_stream)
        self.assertEqual(self.result.model, "claude-sonnet-4-5")
        self.assertTrue(self.result.thinking)

    def test_system_blocks_are_instructions_without_cache_control(self) -> None:
        self.assertTrue(self.hub["instructions"].startswith("You are a Claude agent"))
        self.assertNotIn("cache_control", str(self.hub))

    def test_the_billing_line_is_not_sent(self) -> None:
        # Its cc_version changes from session to session: sent, it would
        # defeat an upstream's prefix cache.
        self.assertNotIn("x-anthropic-billing-header", orjson.dumps(self.hub).decode())
        self.assertIn("system[0] (x-anthropic-billing-header)", self.result.dropped_fields)

    def test_messages_become_items_in_order(self) -> None:
        kinds = [(i["type"], i.get("role")) for i in self.hub["input"]]
        # Claude Code's thinking block carries a signature of another
        # server, which means nothing to a Responses upstream.
        self.assertEqual(
            kinds,
            [
                ("message", "user"),
                ("message", "assistant"),
                ("function_call", None),
                ("function_call_output", None),
            ],
        )
        call, result = self.hub["input"][2:]
        self.assertEqual(call["call_id"], "toolu_tkde22d8c763_sh")
        self.assertEqual(call["name"], "Bash")
        self.assertIn("echo tkde22d8c763", call["arguments"])
        self.assertEqual(
            result,
            {
                "type": "function_call_output",
                "call_id": "toolu_tkde22d8c763_sh",
                "output": "tkde22d8c763",
            },
        )
        self.assertTrue(any("thinking" in d for d in self.result.dropped_fields))

    def test_tools_are_functions_and_settings_carry_over(self) -> None:
        self.assertEqual(len(self.hub["tools"]), 24)
        bash = next(t for t in self.hub["tools"] if t["name"] == "Bash")
        self.assertEqual(bash["type"], "function")
        self.assertEqual(bash["parameters"]["type"], "object")
        self.assertEqual(self.hub["max_output_tokens"], 32000)
        self.assertEqual(self.hub["reasoning"], {"effort": "high", "summary": "auto"})
        self.assertEqual(self.hub["include"], ["reasoning.encrypted_content"])
        self.assertLessEqual(len(self.hub["safety_identifier"]), 64)
        self.assertIn("context_management", self.result.dropped_fields)
        self.assertIs(self.hub["stream"], True)
        self.assertIs(self.hub["store"], False)


class RuleTests(SynchronousTestCase):
    def test_model_and_max_tokens_are_required(self) -> None:
        for bad, param in [(body(model=None), "model"), (body(max_tokens=None), "max_tokens")]:
            with self.assertRaises(InvalidRequest) as caught:
                messages_to_responses(bad)
            self.assertEqual(caught.exception.param, param)

    def test_tool_choice_and_parallel_calls(self) -> None:
        tools = [{"name": "add", "input_schema": {"type": "object"}}]
        for choice, expected in [
            ({"type": "auto"}, "auto"),
            ({"type": "any"}, "required"),
            ({"type": "none"}, "none"),
            ({"type": "tool", "name": "add"}, {"type": "function", "name": "add"}),
        ]:
            hub = messages_to_responses(body(tools=tools, tool_choice=choice)).body
            self.assertEqual(hub["tool_choice"], expected)
        serial = messages_to_responses(
            body(tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
        ).body
        self.assertIs(serial["parallel_tool_calls"], False)

    def test_server_tools_are_dropped_with_a_note(self) -> None:
        result = messages_to_responses(
            body(
                tools=[
                    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
                    {"name": "add", "input_schema": {"type": "object"}},
                ]
            )
        )
        self.assertEqual([t["name"] for t in result.body["tools"]], ["add"])
        self.assertEqual(result.dropped_fields, ["tools[0] (web_search_20250305)"])

    def test_thinking_budgets_are_efforts(self) -> None:
        for thinking, effort in [
            ({"type": "enabled", "budget_tokens": 1024}, "low"),
            ({"type": "enabled", "budget_tokens": 8000}, "medium"),
            ({"type": "enabled", "budget_tokens": 31999}, "high"),
            ({"type": "adaptive"}, "medium"),
        ]:
            hub = messages_to_responses(body(thinking=thinking)).body
            self.assertEqual(hub["reasoning"]["effort"], effort)
        self.assertNotIn(
            "reasoning", messages_to_responses(body(thinking={"type": "disabled"})).body
        )

    def test_the_effort_picked_for_adaptive_thinking_is_the_reasoning_effort(self) -> None:
        adaptive = {"type": "adaptive"}
        for picked, effort in [
            ("low", "low"),
            ("high", "high"),
            ("max", "high"),
            ("odd", "medium"),
        ]:
            result = messages_to_responses(
                body(thinking=adaptive, output_config={"effort": picked})
            )
            self.assertEqual(result.body["reasoning"]["effort"], effort, picked)
            self.assertNotIn("output_config", result.dropped_fields)
        result = messages_to_responses(
            body(thinking=adaptive, output_config={"effort": "low", "format": {"type": "x"}})
        )
        self.assertEqual(result.dropped_fields, ["output_config.format"])

    def test_stop_sequences_and_unknown_fields_are_named_not_sent(self) -> None:
        result = messages_to_responses(body(stop_sequences=["END"], top_k=5, frobnicate=1))
        self.assertEqual(result.dropped_fields, ["stop_sequences", "top_k", "frobnicate"])
        self.assertNotIn("stop_sequences", result.body)

    def test_blocks_of_every_kind(self) -> None:
        signature = pack_reasoning("rs_1", "gAAAA-blob")
        hub = messages_to_responses(
            body(
                system="Be brief.",
                temperature=0.5,
                metadata={"user_id": "u1"},
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "look",
                                "cache_control": {"type": "ephemeral"},
                            },
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "AAAA",
                                },
                            },
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "https://e.com/a.png"},
                            },
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "Hmm.", "signature": signature},
                            {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": [{"type": "text", "text": "bad"}],
                                "is_error": True,
                            },
                            {"type": "text", "text": "fix it"},
                        ],
                    },
                ],
            )
        ).body
        check_create(hub, bridged=False)
        self.assertEqual(hub["instructions"], "Be brief.")
        self.assertEqual((hub["temperature"], hub["safety_identifier"]), (0.5, "u1"))
        self.assertEqual(
            hub["input"],
            [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,AAAA",
                            "detail": "auto",
                        },
                        {
                            "type": "input_image",
                            "image_url": "https://e.com/a.png",
                            "detail": "auto",
                        },
                    ],
                },
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Hmm."}],
                    "encrypted_content": "gAAAA-blob",
                },
                {
                    "type": "function_call",
                    "call_id": "toolu_1",
                    "name": "add",
                    "arguments": '{"a":1}',
                },
                {"type": "function_call_output", "call_id": "toolu_1", "output": "Error: bad"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "fix it"}],
                },
            ],
        )

    def test_bad_blocks_name_the_field(self) -> None:
        for messages, param in [
            ([{"role": "tool", "content": "x"}], "messages[0].role"),
            (
                [{"role": "system", "content": [{"type": "image", "source": {}}]}],
                "messages[0].content[0]",
            ),
            (
                [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n"}]}],
                "messages[0].content[0]",
            ),
            ([{"role": "user", "content": [{"type": "tool_result"}]}], "messages[0].content[0]"),
            ([], "messages"),
        ]:
            with self.assertRaises(InvalidRequest) as caught:
                messages_to_responses(body(messages=messages))
            self.assertEqual(caught.exception.param, param)


class SystemTests(SynchronousTestCase):
    def test_system_messages_among_the_turns_are_developer_messages_in_place(self) -> None:
        # The 2026 API takes role "system" messages in `messages`; Claude
        # Code sends its reminders so for a model it does not know.
        result = messages_to_responses(
            body(
                system="Be terse.",
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "system", "content": "Answer in French."},
                    {"role": "assistant", "content": "Salut"},
                    {
                        "role": "system",
                        "content": [
                            {"type": "text", "text": "One", "cache_control": {"type": "ephemeral"}},
                            {"type": "text", "text": "Two"},
                        ],
                    },
                    {"role": "user", "content": "more"},
                ],
            )
        )
        hub = result.body
        check_create(hub, bridged=False)
        self.assertEqual(hub["instructions"], "Be terse.")
        self.assertEqual(
            [(i["role"], i["content"][0]["text"]) for i in hub["input"]],
            [
                ("user", "hi"),
                ("developer", "Answer in French."),
                ("assistant", "Salut"),
                ("developer", "One\n\nTwo"),
                ("user", "more"),
            ],
        )
        self.assertEqual(hub["input"][1]["content"][0]["type"], "input_text")

    def test_an_empty_system_message_is_dropped_with_a_note(self) -> None:
        result = messages_to_responses(
            body(messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": ""}])
        )
        self.assertEqual([i["role"] for i in result.body["input"]], ["user"])
        self.assertEqual(result.dropped_fields, ["messages[1] (an empty system message)"])

    def test_the_billing_line_is_dropped_from_system_however_it_comes(self) -> None:
        billing = "x-anthropic-billing-header: cc_version=2.1.197.1f8; cc_entrypoint=sdk-cli;"
        for system, instructions in [
            ([{"type": "text", "text": billing}, {"type": "text", "text": "Be an agent."}], None),
            (f"{billing}\nBe an agent.", None),
            ([{"type": "text", "text": f"{billing}\n\nBe an agent."}], None),
            ("Mention x-anthropic-billing-header: later.", "keep"),
        ]:
            result = messages_to_responses(body(system=system))
            if instructions == "keep":
                self.assertEqual(result.body["instructions"], system)
                self.assertEqual(result.dropped_fields, [])
            else:
                self.assertEqual(result.body["instructions"], "Be an agent.", system)
                self.assertEqual(len(result.dropped_fields), 1, result.dropped_fields)

    def test_a_system_of_only_the_billing_line_sends_no_instructions(self) -> None:
        system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"}]
        self.assertNotIn("instructions", messages_to_responses(body(system=system)).body)

    def test_two_sessions_send_the_same_instructions(self) -> None:
        def session(version: str) -> Any:
            return messages_to_responses(
                body(
                    system=[
                        {
                            "type": "text",
                            "text": f"x-anthropic-billing-header: cc_version={version};",
                        },
                        {"type": "text", "text": "You are a Claude agent."},
                    ]
                )
            ).body["instructions"]

        self.assertEqual(session("2.1.197.1f8"), session("2.1.197.fa0"))
