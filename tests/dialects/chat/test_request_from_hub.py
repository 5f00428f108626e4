"""
Tests for L{codexgw.dialects.chat.request_from_hub}, fed with real Codex CLI
requests where one exists.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.stream_to_hub import seal_reasoning
from codexgw.errors import InvalidRequest
from codexgw.state.conversation import turnInput
from tests.dialects.helpers import codex_body, codex_request

OPENAI = ChatDialect()


def chat(body: dict[str, Any], dialect: ChatDialect = OPENAI, **kw: Any) -> dict[str, Any]:
    return responses_to_chat(body, dialect, **kw).body


def fc(call_id: str, name: str = "exec_command", args: str = "{}", **kw: Any) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": args,
        **kw,
    }


def out(call_id: str, output: Any) -> dict[str, Any]:
    return {
        "type": "function_call_output",
        "id": f"fco_{call_id}",
        "call_id": call_id,
        "output": output,
    }


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class CodexRequestTests(SynchronousTestCase):
    def test_first_turn_keeps_only_chat_fields_and_always_streams_with_usage(self) -> None:
        request = responses_to_chat(codex_request("first-turn"), OPENAI, upstream_model="up-1")
        body = request.body
        self.assertEqual(body["model"], "up-1")
        self.assertEqual((body["stream"], body["stream_options"]), (True, {"include_usage": True}))
        for field in (
            "store",
            "include",
            "prompt_cache_key",
            "client_metadata",
            "input",
            "reasoning",
            "text",
        ):
            self.assertNotIn(field, body)
        self.assertEqual(request.dropped_tools, ["web_search"])
        self.assertEqual(
            [m["role"] for m in body["messages"]], ["system", "system", "user", "user"]
        )
        self.assertTrue(request.client_stream)

    def test_developer_messages_become_system_messages_with_joined_text(self) -> None:
        body = chat(codex_request("first-turn"))
        self.assertIn("<permissions instructions>", body["messages"][1]["content"])
        self.assertIsInstance(body["messages"][1]["content"], str)

    def test_item_ids_are_not_forwarded(self) -> None:
        text = json.dumps(chat(codex_request("after-tool-call"))["messages"])
        self.assertNotIn("msg_01a20e01", text)
        self.assertNotIn("fco_01a20e01", text)
        self.assertNotIn('"fc_1"', text)

    def test_function_call_and_output_become_assistant_tool_calls_and_tool_message(self) -> None:
        messages = chat(codex_request("after-tool-call"))["messages"]
        assistant, tool = messages[-2:]
        self.assertEqual(assistant["tool_calls"][0]["id"], "call_1")
        self.assertEqual(
            assistant["tool_calls"][0]["function"]["arguments"], '{"cmd": "echo zebra-7731"}'
        )
        self.assertEqual((tool["role"], tool["tool_call_id"]), ("tool", "call_1"))
        self.assertIn("zebra-7731", tool["content"])

    def test_compaction_with_empty_tools_omits_tools_and_tool_choice(self) -> None:
        body = chat(codex_request("compaction"))
        for field in ("tools", "tool_choice", "parallel_tool_calls"):
            self.assertNotIn(field, body)
        self.assertIn("CONTEXT CHECKPOINT COMPACTION", body["messages"][-1]["content"])
        self.assertEqual(body["reasoning_effort"], "medium")

    def test_foreign_encrypted_reasoning_is_dropped(self) -> None:
        dialect = ChatDialect(send_back_reasoning=True)
        messages = chat(codex_request("compaction"), dialect)["messages"]
        self.assertFalse(any("reasoning_content" in m for m in messages))
        self.assertNotIn("gAAAA", json.dumps(messages))

    def test_custom_tool_call_history_goes_up_as_a_function_call_with_input(self) -> None:
        request = responses_to_chat(codex_request("custom-tool-followup"), OPENAI)
        assistant, tool = request.body["messages"][-2:]
        call = assistant["tool_calls"][0]
        self.assertEqual(call["function"]["name"], "apply_patch")
        self.assertEqual(json.loads(call["function"]["arguments"])["input"][:15], "*** Begin Patch")
        self.assertEqual(tool["tool_call_id"], "call_mock_2")
        self.assertEqual(sorted(request.dropped_tools), ["web_search"])

    def test_image_detail_original_is_mapped_and_json_schema_becomes_response_format(self) -> None:
        body = chat(codex_request("image-and-output-schema"))
        parts = body["messages"][-1]["content"]
        self.assertEqual([p["type"] for p in parts], ["text", "image_url", "text", "text"])
        self.assertEqual(parts[1]["image_url"]["detail"], "high")
        self.assertTrue(parts[1]["image_url"]["url"].startswith("data:image/png;base64,"))
        fmt = body["response_format"]
        self.assertEqual(
            (fmt["type"], fmt["json_schema"]["name"], fmt["json_schema"]["strict"]),
            ("json_schema", "codex_output_schema", True),
        )
        self.assertEqual(body["reasoning_effort"], "high")

    def test_image_detail_original_can_be_omitted(self) -> None:
        body = chat(
            codex_request("image-and-output-schema"), ChatDialect(image_detail_original=None)
        )
        self.assertNotIn("detail", body["messages"][-1]["content"][1]["image_url"])


class InputRuleTests(SynchronousTestCase):
    def test_string_input_and_instructions(self) -> None:
        body = chat({"model": "m", "instructions": "sys", "input": "hi"})
        self.assertEqual(
            body["messages"],
            [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        )

    def test_assistant_phase_is_not_sent_to_a_chat_upstream(self) -> None:
        said = {
            "type": "message",
            "role": "assistant",
            "phase": "commentary",
            "content": [{"type": "output_text", "text": "looking"}],
        }
        final = dict(said, phase="final_answer", content=[{"type": "output_text", "text": "done"}])
        body = {"model": "m", "input": [user("go"), said, fc("a"), out("a", "A"), final]}
        messages = chat(body)["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "tool", "assistant"])
        self.assertEqual((messages[1]["content"], messages[3]["content"]), ("looking", "done"))
        self.assertFalse(any("phase" in m for m in messages))

    def test_a_stored_turn_keeps_phase_and_its_replay_sends_none(self) -> None:
        item = {"role": "assistant", "content": "ok", "phase": "final_answer"}
        body = {"model": "m", "input": [user("go"), item]}
        [_, stored] = turnInput(body)
        self.assertEqual((stored["type"], stored["phase"]), ("message", "final_answer"))
        replay = {"model": "m", "input": [*turnInput(body), user("again")]}
        self.assertFalse(any("phase" in m for m in chat(replay)["messages"]))
        # What is kept is an assistant item of the 2026-04 specification.
        import openresponses_types as orx

        kept = orx.AssistantMessageItemParam.model_validate(stored)
        self.assertEqual(str(getattr(kept.phase, "value", kept.phase)), "final_answer")

    def test_parallel_tool_calls_become_one_assistant_message(self) -> None:
        body = {"model": "m", "input": [user("go"), fc("a"), fc("b"), out("a", "A"), out("b", "B")]}
        messages = chat(body)["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "tool", "tool"])
        self.assertEqual([c["id"] for c in messages[1]["tool_calls"]], ["a", "b"])

    def test_assistant_text_and_following_calls_share_one_message(self) -> None:
        text = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look."}],
        }
        messages = chat({"model": "m", "input": [user("go"), text, fc("a"), out("a", "A")]})[
            "messages"
        ]
        self.assertEqual(messages[1]["content"], "Let me look.")
        self.assertEqual(len(messages[1]["tool_calls"]), 1)

    def test_sequential_calls_stay_separate_assistant_messages(self) -> None:
        messages = chat(
            {"model": "m", "input": [user("go"), fc("a"), out("a", "A"), fc("b"), out("b", "B")]}
        )["messages"]
        self.assertEqual(
            [m["role"] for m in messages], ["user", "assistant", "tool", "assistant", "tool"]
        )

    def test_images_in_tool_output_move_into_a_following_user_message(self) -> None:
        image = {
            "type": "input_image",
            "image_url": "data:image/png;base64,AAAA",
            "detail": "original",
        }
        items = [
            user("look"),
            fc("a"),
            fc("b"),
            out("a", [{"type": "input_text", "text": "see"}, image]),
            out("b", "ok"),
        ]
        messages = chat({"model": "m", "input": items})["messages"]
        self.assertEqual(
            [m["role"] for m in messages], ["user", "assistant", "tool", "tool", "user"]
        )
        self.assertEqual(messages[2]["content"], "see")
        self.assertEqual(
            messages[4]["content"][1]["image_url"],
            {"url": "data:image/png;base64,AAAA", "detail": "high"},
        )

    def test_images_stay_in_tool_messages_where_the_dialect_allows(self) -> None:
        image = {"type": "input_image", "image_url": "https://x/y.png"}
        messages = chat(
            {"model": "m", "input": [fc("a"), out("a", [image])]},
            ChatDialect(images_in_tool_messages=True),
        )["messages"]
        self.assertEqual(
            messages[-1]["content"],
            [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        )

    def test_our_reasoning_goes_back_as_reasoning_content_where_asked(self) -> None:
        reasoning = {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "encrypted_content": seal_reasoning("I should ls"),
        }
        items = [user("go"), reasoning, fc("a"), out("a", "A")]
        dialect = ChatDialect(send_back_reasoning=True)
        self.assertEqual(
            chat({"model": "m", "input": items}, dialect)["messages"][1]["reasoning_content"],
            "I should ls",
        )
        self.assertNotIn("reasoning_content", chat({"model": "m", "input": items})["messages"][1])

    def test_keyed_reasoning_needs_the_key(self) -> None:
        reasoning = {
            "type": "reasoning",
            "summary": [],
            "encrypted_content": seal_reasoning("x", b"k"),
        }
        items = [user("go"), reasoning, fc("a")]
        dialect = ChatDialect(send_back_reasoning=True)
        self.assertEqual(
            chat({"model": "m", "input": items}, dialect, reasoning_key=b"k")["messages"][1][
                "reasoning_content"
            ],
            "x",
        )
        self.assertNotIn(
            "reasoning_content",
            chat({"model": "m", "input": items}, dialect, reasoning_key=b"other")["messages"][1],
        )

    def test_single_system_message_merges_all_system_text_first(self) -> None:
        items = [user("u"), {"role": "developer", "content": "late rule"}]
        messages = chat(
            {"model": "m", "instructions": "first", "input": items},
            ChatDialect(single_system_message=True),
        )["messages"]
        self.assertEqual(
            messages,
            [{"role": "system", "content": "first\n\nlate rule"}, {"role": "user", "content": "u"}],
        )

    def test_namespaced_history_calls_use_the_flat_upstream_name(self) -> None:
        body = codex_body()
        body["input"] = [user("go"), fc("a", name="close_agent", namespace="multi_agent_v1")]
        call = chat(body)["messages"][-1]["tool_calls"][0]
        self.assertEqual(call["function"]["name"], "multi_agent_v1__close_agent")


class ErrorTests(SynchronousTestCase):
    def assertInvalid(
        self, body: Any, param: str | None, dialect: ChatDialect = OPENAI
    ) -> InvalidRequest:
        err = self.assertRaises(InvalidRequest, responses_to_chat, body, dialect)
        self.assertEqual(err.param, param)
        self.assertEqual(err.status, 400)
        if param:
            self.assertIn(param, err.message)
        return err

    def test_non_object_body_is_refused(self) -> None:
        self.assertInvalid([1], None)

    def test_missing_or_bad_input_names_input(self) -> None:
        self.assertInvalid({"model": "m"}, "input")
        self.assertInvalid({"model": "m", "input": 3}, "input")
        self.assertInvalid({"model": "m", "input": []}, "input")

    def test_file_and_audio_parts_are_a_400_naming_the_part(self) -> None:
        item = {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "a"},
                {"type": "input_file", "file_id": "f"},
            ],
        }
        self.assertInvalid(
            {"model": "m", "input": [user("x"), user("y"), user("z"), item]}, "input[3].content[1]"
        )
        audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
        self.assertInvalid({"model": "m", "input": [audio]}, "input[0].content[0]")

    def test_unsupported_parts_are_dropped_where_the_dialect_says(self) -> None:
        item = {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "a"},
                {"type": "input_file", "file_id": "f"},
            ],
        }
        body = chat({"model": "m", "input": [item]}, ChatDialect(drop_unsupported_parts=True))
        self.assertEqual(body["messages"], [{"role": "user", "content": "a"}])

    def test_unknown_item_types_and_roles_are_refused(self) -> None:
        self.assertInvalid(
            {"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"
        )
        self.assertInvalid(
            {"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"
        )

    def test_calls_without_call_id_or_string_arguments_are_refused(self) -> None:
        self.assertInvalid(
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        )
        self.assertInvalid({"model": "m", "input": [fc("a", args=3)]}, "input[0].arguments")  # type: ignore[arg-type]

    def test_a_token_cap_that_is_no_count_is_refused(self) -> None:
        for cap in (1e300, 0, -5, 10.5, 2**40):
            self.assertInvalid(
                {"model": "m", "input": "hi", "max_output_tokens": cap}, "max_output_tokens"
            )
        self.assertEqual(
            chat({"model": "m", "input": "hi", "max_output_tokens": 64.0})["max_completion_tokens"],
            64,
        )

    def test_missing_model_is_refused(self) -> None:
        self.assertInvalid({"input": "hi"}, "model")


class SettingsTests(SynchronousTestCase):
    def test_a_reasoning_summary_is_asked_for_by_summary_or_generate_summary(self) -> None:
        def wants(reasoning: Any, dialect: ChatDialect = OPENAI) -> bool:
            body = {"model": "m", "input": "hi", "reasoning": reasoning}
            return responses_to_chat(body, dialect).reasoning_summary

        for summary in ("auto", "concise", "detailed"):
            self.assertTrue(wants({"summary": summary}))
            self.assertTrue(wants({"generate_summary": summary}))
            self.assertFalse(wants({"summary": summary}, ChatDialect(summarize_reasoning=False)))
        for reasoning in (None, {}, {"effort": "low"}, {"summary": "none"}):
            self.assertFalse(wants(reasoning))
        codex = responses_to_chat(codex_request("first-turn"), OPENAI)
        self.assertTrue(codex.reasoning_summary)
        self.assertNotIn("reasoning", codex.body)

    def test_summarize_reasoning_is_a_profile_value_on_by_default(self) -> None:
        from codexgw.upstream.profiles import BUILTIN, buildProfiles

        self.assertTrue(all(p.dialect.summarize_reasoning for p in BUILTIN.values()))
        profiles = buildProfiles({"raw": {"extends": "deepseek", "summarize_reasoning": False}})
        self.assertFalse(profiles["raw"].dialect.summarize_reasoning)
        self.assertTrue(profiles["raw"].dialect.send_back_reasoning)

    def test_settings_map_per_dialect(self) -> None:
        body = {
            "model": "m",
            "input": "hi",
            "max_output_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "u1",
            "metadata": {"a": "b"},
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_object"}},
            "service_tier": "priority",
            "truncation": "auto",
        }
        sent = chat(body)
        self.assertEqual(
            {
                k: sent[k]
                for k in (
                    "max_completion_tokens",
                    "temperature",
                    "top_p",
                    "user",
                    "reasoning_effort",
                    "response_format",
                )
            },
            {
                "max_completion_tokens": 100,
                "temperature": 0.5,
                "top_p": 0.9,
                "user": "u1",
                "reasoning_effort": "low",
                "response_format": {"type": "json_object"},
            },
        )
        for field in ("metadata", "service_tier", "truncation", "reasoning"):
            self.assertNotIn(field, sent)
        old = ChatDialect(
            max_tokens_field="max_tokens",
            supports_stream_options=False,
            supports_reasoning_effort=False,
            supports_response_format=False,
        )
        request = responses_to_chat(body, old)
        self.assertEqual(request.body["max_tokens"], 100)
        for field in (
            "stream_options",
            "reasoning_effort",
            "response_format",
            "max_completion_tokens",
        ):
            self.assertNotIn(field, request.body)
        self.assertEqual(
            request.dropped_fields, ["reasoning.effort", "text.format", "metadata", "service_tier"]
        )

    def test_fields_with_a_chat_meaning_go_where_the_dialect_takes_them(self) -> None:
        body = {"model": "m", "input": "hi", "prompt_cache_key": "conv-1", "service_tier": "flex"}
        plain = responses_to_chat(body, ChatDialect())
        self.assertNotIn("prompt_cache_key", plain.body)
        self.assertEqual(plain.dropped_fields, ["prompt_cache_key", "service_tier"])
        openai = ChatDialect(supports_prompt_cache_key=True, supports_service_tier=True)
        sent = responses_to_chat(body, openai).body
        self.assertEqual((sent["prompt_cache_key"], sent["service_tier"]), ("conv-1", "flex"))

    def test_fields_with_no_chat_meaning_are_named_for_a_debug_line(self) -> None:
        body = {
            "model": "m",
            "input": "hi",
            "client_metadata": {"x": "y"},
            "prompt_cache_options": {"ttl": "1h"},
            "stream": True,
        }
        request = responses_to_chat(body, ChatDialect())
        self.assertEqual(request.ignored_fields, ["client_metadata", "prompt_cache_options"])
        for field in request.ignored_fields:
            self.assertNotIn(field, request.body)

    def test_strict_and_parallel_tool_calls_only_where_supported(self) -> None:
        plain = ChatDialect(supports_strict=False, supports_parallel_tool_calls=False)
        body = chat(codex_body(), plain)
        self.assertNotIn("parallel_tool_calls", body)
        self.assertFalse(any("strict" in t["function"] for t in body["tools"]))
        self.assertIs(chat(codex_body())["tools"][0]["function"]["strict"], False)

    def test_tool_choice_naming_a_tool_uses_its_flat_name(self) -> None:
        body = codex_body()
        body["tool_choice"] = {"type": "custom", "name": "apply_patch"}
        self.assertEqual(
            chat(body)["tool_choice"], {"type": "function", "function": {"name": "apply_patch"}}
        )
