"""
Tests for L{codexgw.dialects.messages.request_from_hub}: Responses requests
(the real Codex CLI's among them) as Anthropic Messages requests that the
Messages API's rules accept.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.messages.request_from_hub import (
    DEFAULT_MAX_TOKENS,
    responses_to_messages,
)
from codexgw.dialects.messages.thinking import seal_block
from codexgw.errors import InvalidRequest
from tests.dialects.helpers import codex_body, codex_request

ALLOWED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
}
TOOL = {"type": "function", "name": "add", "parameters": {"type": "object", "properties": {}}}


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "claude", "input": "hi"}
    out.update(kw)
    return out


def translate(b: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return responses_to_messages(b, ChatDialect(), **kw).body


def well_formed(test: SynchronousTestCase, messages: dict[str, Any]) -> None:
    """The Messages API's own request rules, as it enforces them."""
    test.assertLessEqual(set(messages), ALLOWED)
    test.assertIsInstance(messages["max_tokens"], int)
    roles = [m["role"] for m in messages["messages"]]
    test.assertTrue(all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles)
    test.assertTrue(set(roles) <= {"user", "assistant"})
    for i, m in enumerate(messages["messages"]):
        test.assertTrue(m["content"])
        for block in m["content"]:
            if block["type"] == "text":
                test.assertTrue(block["text"])
        uses = [b["id"] for b in m["content"] if b["type"] == "tool_use"]
        if uses:
            following = messages["messages"][i + 1]["content"]
            results = [b["tool_use_id"] for b in following[: len(uses)]]
            test.assertEqual(sorted(results), sorted(uses))
    for tool in messages.get("tools", []):
        test.assertLessEqual(set(tool), {"name", "description", "input_schema", "cache_control"})
        test.assertEqual(tool["input_schema"]["type"], "object")


class CodexRequestTests(SynchronousTestCase):
    def test_every_real_codex_request_becomes_a_well_formed_messages_request(self) -> None:
        for name in (
            "first-turn",
            "after-tool-call",
            "custom-tool-followup",
            "image-and-output-schema",
        ):
            well_formed(self, translate(codex_request(name)))

    def test_instructions_and_developer_text_are_the_system_prompt(self) -> None:
        b = body(
            instructions="Be an agent.",
            input=[
                {"type": "message", "role": "developer", "content": "Sandbox: none."},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "S"}],
                },
                msg("user", "go"),
            ],
        )
        out = translate(b, prompt_cache=False)
        self.assertEqual(
            [s["text"] for s in out["system"]], ["Be an agent.", "Sandbox: none.", "S"]
        )
        self.assertEqual([m["role"] for m in out["messages"]], ["user"])
        codex = translate(codex_body())
        self.assertGreaterEqual(len(codex["system"]), 2)
        self.assertEqual(codex["messages"][0]["role"], "user")

    def test_namespaced_and_custom_tools_are_flat_functions(self) -> None:
        names = [t["name"] for t in translate(codex_body())["tools"]]
        self.assertIn("multi_agent_v1__close_agent", names)
        self.assertIn("apply_patch", names)
        patch = next(t for t in translate(codex_body())["tools"] if t["name"] == "apply_patch")
        self.assertEqual(patch["input_schema"]["required"], ["input"])

    def test_a_history_with_calls_but_no_tools_declares_them_and_forbids_calls(self) -> None:
        out = translate(codex_request("compaction"), prompt_cache=False)
        self.assertEqual(
            out["tools"],
            [
                {
                    "name": "exec_command",
                    "description": "A tool called earlier in this conversation; not offered now.",
                    "input_schema": {"type": "object"},
                }
            ],
        )
        self.assertEqual(out["tool_choice"], {"type": "none"})

    def test_hosted_tools_are_dropped_and_named(self) -> None:
        result = responses_to_messages(codex_body(), ChatDialect())
        self.assertEqual(result.dropped_tools, ["web_search"])

    def test_fields_without_a_messages_meaning_are_named_never_sent(self) -> None:
        result = responses_to_messages(codex_body(), ChatDialect())
        self.assertEqual(result.ignored_fields, ["client_metadata", "prompt_cache_key"])
        self.assertLessEqual(set(result.body), ALLOWED)

    def test_the_upstream_always_streams_and_the_client_choice_is_kept(self) -> None:
        result = MESSAGES.requestFromHub(body(stream=False), ChatDialect())
        self.assertIs(result.body["stream"], True)
        self.assertFalse(result.client_stream)
        self.assertTrue(MESSAGES.requestFromHub(body(stream=True), ChatDialect()).client_stream)


class SettingsTests(SynchronousTestCase):
    def test_max_tokens_from_max_output_tokens_else_the_default(self) -> None:
        self.assertEqual(translate(body(max_output_tokens=300))["max_tokens"], 300)
        self.assertEqual(translate(body())["max_tokens"], DEFAULT_MAX_TOKENS)
        self.assertEqual(translate(body(), default_max_tokens=4096)["max_tokens"], 4096)

    def test_reasoning_effort_is_a_thinking_budget_below_max_tokens(self) -> None:
        out = translate(body(reasoning={"effort": "medium"}))
        self.assertEqual(out["thinking"], {"type": "enabled", "budget_tokens": 12288})
        small = translate(body(reasoning={"effort": "high"}, max_output_tokens=5000))
        self.assertEqual(small["thinking"]["budget_tokens"], 5000 - 1024)
        self.assertNotIn(
            "thinking", translate(body(reasoning={"effort": "low"}, max_output_tokens=1500))
        )
        self.assertNotIn("thinking", translate(body(reasoning={"effort": "none"})))

    def test_temperature_and_top_p_only_without_thinking(self) -> None:
        out = translate(body(temperature=0.2, top_p=0.9))
        self.assertEqual((out["temperature"], out["top_p"]), (0.2, 0.9))
        result = responses_to_messages(
            body(temperature=0.2, reasoning={"effort": "low"}), ChatDialect()
        )
        self.assertNotIn("temperature", result.body)
        self.assertIn("temperature", result.dropped_fields)

    def test_tool_choice(self) -> None:
        for choice, expected in [
            ("auto", {"type": "auto"}),
            ("required", {"type": "any"}),
            ("none", {"type": "none"}),
            ({"type": "function", "name": "add"}, {"type": "tool", "name": "add"}),
        ]:
            out = translate(body(tools=[TOOL], tool_choice=choice))
            self.assertEqual(out["tool_choice"], expected, choice)
        serial = translate(body(tools=[TOOL], parallel_tool_calls=False))
        self.assertEqual(serial["tool_choice"], {"type": "auto", "disable_parallel_tool_use": True})
        self.assertNotIn("tool_choice", translate(body(tool_choice="auto")))

    def test_a_forced_tool_wins_over_thinking_which_refuses_it(self) -> None:
        result = responses_to_messages(
            body(tools=[TOOL], tool_choice="required", reasoning={"effort": "high"}), ChatDialect()
        )
        self.assertNotIn("thinking", result.body)
        self.assertIn("reasoning.effort", result.dropped_fields)

    def test_safety_identifier_is_metadata_user_id_and_metadata_is_dropped(self) -> None:
        result = responses_to_messages(
            body(safety_identifier="u-1", metadata={"a": "b"}), ChatDialect()
        )
        self.assertEqual(result.body["metadata"], {"user_id": "u-1"})
        self.assertIn("metadata", result.dropped_fields)

    def test_tools_get_object_schemas_and_cache_breakpoints(self) -> None:
        tools = [
            {"type": "function", "name": "a", "description": "A."},
            {"type": "function", "name": "b", "parameters": {"properties": {}}},
        ]
        out = translate(body(tools=tools, instructions="Be brief."))
        self.assertEqual(
            out["tools"],
            [
                {
                    "name": "a",
                    "description": "A.",
                    "input_schema": {"type": "object", "properties": {}},
                },
                {
                    "name": "b",
                    "input_schema": {"type": "object", "properties": {}},
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        )
        self.assertEqual(
            out["system"],
            [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        )
        self.assertEqual(out["messages"][-1]["content"][-1]["cache_control"], {"type": "ephemeral"})
        bare = translate(body(tools=tools, instructions="Be brief."), prompt_cache=False)
        self.assertNotIn("cache_control", json.dumps(bare))


def msg(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def call(call_id: str, name: str = "add", arguments: str = '{"a": 1}') -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, out: Any = "2") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": out}


class InputTests(SynchronousTestCase):
    def messages(self, items: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
        out = translate(body(input=items, tools=[TOOL], **kw), prompt_cache=False)
        well_formed(self, out)
        return out["messages"]  # type: ignore[no-any-return]

    def test_parallel_calls_are_one_assistant_message_and_results_one_user_message(self) -> None:
        messages = self.messages(
            [msg("user", "go"), call("c1"), call("c2"), output("c1", "one"), output("c2", "two")]
        )
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "user"])
        self.assertEqual(
            messages[1]["content"],
            [
                {"type": "tool_use", "id": "c1", "name": "add", "input": {"a": 1}},
                {"type": "tool_use", "id": "c2", "name": "add", "input": {"a": 1}},
            ],
        )
        self.assertEqual(
            messages[2]["content"],
            [
                {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "c2", "content": "two"},
            ],
        )

    def test_call_ids_anthropic_would_refuse_are_mapped_alike_in_call_and_result(self) -> None:
        messages = self.messages(
            [msg("user", "go"), call("functions.add:0"), output("functions.add:0")]
        )
        use, result = messages[1]["content"][0], messages[2]["content"][0]
        self.assertRegex(use["id"], r"^toolu_[0-9a-f]+$")
        self.assertEqual(result["tool_use_id"], use["id"])

    def test_tool_results_come_first_in_their_user_message(self) -> None:
        messages = self.messages([msg("user", "go"), call("c1"), msg("user", "and?"), output("c1")])
        self.assertEqual([b["type"] for b in messages[2]["content"]], ["tool_result", "text"])

    def test_consecutive_same_role_items_merge_and_empty_text_is_dropped(self) -> None:
        messages = self.messages(
            [
                msg("user", "a"),
                msg("user", ""),
                msg("user", "b"),
                msg("assistant", "c"),
                msg("assistant", "d"),
            ]
        )
        self.assertEqual(
            messages,
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
                },
            ],
        )

    def test_an_output_without_its_call_is_refused_as_openai_does(self) -> None:
        with self.assertRaises(InvalidRequest) as caught:
            translate(body(input=[msg("user", "go"), output("nope")]))
        self.assertEqual(
            caught.exception.message,
            "No tool call found for function call output with call_id nope.",
        )
        self.assertEqual(caught.exception.param, "input")
        self.assertEqual(caught.exception.status, 400)

    def test_our_sealed_thinking_opens_its_assistant_message(self) -> None:
        thinking = {"type": "thinking", "thinking": "Plan.", "signature": "SIG"}
        redacted = {"type": "redacted_thinking", "data": "opaque"}
        messages = self.messages(
            [
                msg("user", "go"),
                {"type": "reasoning", "summary": [], "encrypted_content": seal_block(redacted)},
                {"type": "reasoning", "summary": [], "encrypted_content": seal_block(thinking)},
                msg("assistant", "Adding."),
                call("c1"),
                output("c1"),
            ]
        )
        self.assertEqual(
            messages[1]["content"][:3],
            [redacted, thinking, {"type": "text", "text": "Adding."}],
        )

    def test_foreign_reasoning_is_not_sent(self) -> None:
        messages = self.messages(
            [
                msg("user", "go"),
                {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"},
                msg("assistant", "ok"),
            ]
        )
        self.assertEqual(messages[1]["content"], [{"type": "text", "text": "ok"}])

    def test_images_as_base64_or_url_sources(self) -> None:
        messages = self.messages(
            [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "see"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                        {"type": "input_image", "image_url": "https://example.com/a.jpg"},
                    ],
                }
            ]
        )
        self.assertEqual(
            messages[0]["content"][1:],
            [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ],
        )

    def test_tool_output_with_images_is_a_tool_result_of_blocks(self) -> None:
        messages = self.messages(
            [
                msg("user", "go"),
                call("c1"),
                output(
                    "c1",
                    [
                        {"type": "input_text", "text": "a picture"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                ),
            ]
        )
        result = messages[2]["content"][0]
        self.assertEqual([b["type"] for b in result["content"]], ["text", "image"])

    def test_custom_and_namespaced_calls_go_back_under_their_flat_names(self) -> None:
        out = translate(codex_request("custom-tool-followup"))
        uses = [b for m in out["messages"] for b in m["content"] if b["type"] == "tool_use"]
        patch = next(u for u in uses if u["name"] == "apply_patch")
        self.assertIsInstance(patch["input"]["input"], str)

    def test_bad_input_names_the_field(self) -> None:
        for items, param in [
            ([42], "input[0]"),
            ([{"type": "nope"}], "input[0].type"),
            (
                [msg("user", "x"), {"type": "function_call", "name": "add", "arguments": "{}"}],
                "input[1].call_id",
            ),
            (
                [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "file:///x"}],
                    }
                ],
                "input[0].content[0]",
            ),
        ]:
            with self.assertRaises(InvalidRequest) as caught:
                translate(body(input=items))
            self.assertEqual(caught.exception.param, param)
        self.assertRaises(InvalidRequest, translate, body(input=[]))
        self.assertRaises(InvalidRequest, responses_to_messages, [], ChatDialect())


class ThinkingHistoryTests(SynchronousTestCase):
    def loop(self, *reasoning: dict[str, Any]) -> dict[str, Any]:
        items = [msg("user", "go"), *reasoning, call("c1"), output("c1")]
        return responses_to_messages(
            body(input=items, tools=[TOOL], reasoning={"effort": "high"}), ChatDialect()
        ).body

    def test_mid_tool_loop_thinking_needs_the_calls_message_to_start_with_thinking(self) -> None:
        self.assertNotIn("thinking", self.loop())
        block = {"type": "thinking", "thinking": "Plan.", "signature": "SIG"}
        kept = self.loop(
            {"type": "reasoning", "summary": [], "encrypted_content": seal_block(block)}
        )
        self.assertEqual(kept["thinking"]["type"], "enabled")
        self.assertEqual(kept["messages"][1]["content"][0], block)

    def test_a_new_user_turn_may_think_whatever_the_history(self) -> None:
        items = [
            msg("user", "go"),
            call("c1"),
            output("c1"),
            msg("assistant", "done"),
            msg("user", "more"),
        ]
        out = translate(body(input=items, tools=[TOOL], reasoning={"effort": "low"}))
        self.assertEqual(out["thinking"]["type"], "enabled")

    def test_whitespace_only_text_is_never_sent(self) -> None:
        out = translate(body(input=[msg("user", " \n"), msg("user", "x"), msg("assistant", "  ")]))
        self.assertEqual(
            out["messages"],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
                    ],
                }
            ],
        )


_TEXT = st.text(min_size=0, max_size=6)


@st.composite
def codex_inputs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Responses inputs as agents send them: turns, tool loops, reasoning, stray system text."""
    items: list[dict[str, Any]] = []
    serial = 0
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            role = draw(st.sampled_from(["user", "developer"]))
            items.append(
                msg(role, draw(_TEXT))
                if role == "user"
                else {"type": "message", "role": role, "content": draw(_TEXT)}
            )
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            if draw(st.booleans()):
                block = {"type": "thinking", "thinking": draw(_TEXT), "signature": "S"}
                items.append(
                    {"type": "reasoning", "summary": [], "encrypted_content": seal_block(block)}
                )
            if draw(st.booleans()):
                items.append(msg("assistant", draw(_TEXT)))
            ids = []
            for _ in range(draw(st.integers(min_value=0, max_value=3))):
                serial += 1
                ids.append(f"call_{serial}")
                items.append(call(ids[-1]))
            for call_id in draw(st.permutations(ids)):
                items.append(output(call_id, draw(_TEXT)))
    items.append(msg("user", "last"))
    return items


class InputPropertyTests(SynchronousTestCase):
    @settings(max_examples=80, deadline=None)
    @given(items=codex_inputs(), effort=st.sampled_from([None, "low", "high"]))
    def test_any_agent_input_becomes_a_request_the_messages_api_accepts(
        self, items: list[dict[str, Any]], effort: str | None
    ) -> None:
        b = body(input=items, tools=[TOOL])
        if effort:
            b["reasoning"] = {"effort": effort}
        out = translate(b)
        well_formed(self, out)
        texts = [i for i in items if i.get("role") == "user" and i["content"][0]["text"].strip()]
        sent = [
            blk["text"] for m in out["messages"] for blk in m["content"] if blk["type"] == "text"
        ]
        for item in texts:
            self.assertIn(item["content"][0]["text"], sent)
        ids = [i["call_id"] for i in items if i["type"] == "function_call"]
        uses = [
            blk["id"] for m in out["messages"] for blk in m["content"] if blk["type"] == "tool_use"
        ]
        self.assertEqual(uses, ids)
