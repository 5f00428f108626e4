"""
Tests for L{codexgw.dialects.responses.validate}: wrong-typed Responses fields are
refused with their path, and nothing a real client sends is.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.tools import map_tools
from codexgw.dialects.responses.validate import (
    HOSTED_TOOLS,
    REASONING_EFFORTS,
    TOOL_TYPES,
    check_create,
    create_fields,
)
from codexgw.errors import InvalidRequest
from tests.dialects.helpers import FIXTURES

"""The team's recorded client requests, where this checkout has them."""


def recorded_requests(directory: str) -> dict[str, dict[str, Any]]:
    """Every recorded C{POST /v1/responses} body in C{directory}, by file name."""
    bodies = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            recorded = json.load(f)
        if recorded.get("path", "").split("?")[0] == "/v1/responses":
            bodies[os.path.basename(path)] = recorded["body"]
    return bodies


def base(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", **fields}


class RecordedRequestTests(SynchronousTestCase):
    def assertAccepted(self, bodies: dict[str, dict[str, Any]]) -> None:
        for name, body in bodies.items():
            for bridged in (True, False):
                try:
                    check_create(body, bridged=bridged)
                except InvalidRequest as e:
                    self.fail(f"{name} (bridged={bridged}) refused: {e.param}: {e.message}")

    def test_every_recorded_codex_request_passes_both_ways(self) -> None:
        bodies = recorded_requests(os.path.join(FIXTURES, "codex"))
        self.assertEqual(len(bodies), 5)
        self.assertAccepted(bodies)


class AcceptedTests(SynchronousTestCase):
    def test_null_passes_for_every_field_of_the_table(self) -> None:
        for bridged in (True, False):
            for field in create_fields(bridged):
                check_create(base(**{field: None}), bridged=bridged)

    def test_unknown_fields_pass_at_every_level(self) -> None:
        body = base(
            client_metadata={"x": 1},
            future_setting=[1, 2],
            reasoning={"effort": "low", "context": "all_turns", "mode": "pro"},
            text={"verbosity": "low", "future": True},
            tools=[{"type": "function", "name": "f", "allowed_callers": ["direct"], "x": 1}],
        )
        check_create(body, bridged=True)

    def test_well_typed_values_pass(self) -> None:
        check_create(
            base(
                stream=False,
                store=True,
                background=False,
                previous_response_id="resp_1",
                instructions="be brief",
                max_output_tokens=64.0,
                max_tool_calls=0,
                top_logprobs=20,
                temperature=0,
                top_p=1,
                presence_penalty=-2,
                parallel_tool_calls=False,
                tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "x"}]},
                text={
                    "format": {"type": "json_schema", "schema": {"type": "object"}, "name": "o"},
                    "verbosity": "high",
                },
                reasoning={"effort": "xhigh", "summary": "none"},
                metadata={"a": "b"},
                include=["reasoning.encrypted_content", "some.future.value"],
                truncation="auto",
                user="u",
                safety_identifier="s",
                prompt_cache_key="k",
                service_tier="flex",
                stream_options={"include_obfuscation": False},
                prompt={"id": "pmpt_1", "variables": {"a": "b", "c": {"type": "input_text"}}},
                conversation={"id": "conv_1"},
            ),
            bridged=True,
        )
        for choice in ("none", {"type": "function", "name": "f"}, {"type": "web_search_preview"}):
            check_create(base(tool_choice=choice), bridged=True)
        for effort in REASONING_EFFORTS:
            check_create(base(reasoning={"effort": effort}), bridged=True)
        check_create(base(conversation="conv_1", input=[{"type": "item_reference"}]), bridged=True)

    def test_every_known_tool_type_is_one_the_bridge_translates_or_drops(self) -> None:
        tools = [
            {"type": kind, "name": "t", "tools": []} if kind != "local_shell" else {"type": kind}
            for kind in sorted(TOOL_TYPES)
        ]
        check_create(base(tools=tools), bridged=True)
        mapped = map_tools(tools, ChatDialect())
        self.assertEqual(sorted(mapped.dropped), sorted(HOSTED_TOOLS))

    def test_a_relayed_request_may_carry_tool_types_the_gateway_does_not_know(self) -> None:
        body = base(tools=[{"type": "teleport"}], tool_choice={"type": "teleport"})
        check_create(body, bridged=False)
        self.assertRaises(InvalidRequest, check_create, body, bridged=True)


class RefusedTests(SynchronousTestCase):
    def assertRefused(self, body: dict[str, Any], param: str, bridged: bool = True) -> str:
        err = self.assertRaises(InvalidRequest, check_create, body, bridged=bridged)
        self.assertEqual((err.param, err.status, err.code), (param, 400, None))
        self.assertTrue(err.message.startswith(param + " "), err.message)
        return err.message

    def test_booleans_are_not_numbers_and_numbers_not_booleans(self) -> None:
        for field in ("max_output_tokens", "max_tool_calls", "top_logprobs", "temperature"):
            self.assertRefused(base(**{field: True}), field)
        for field in ("stream", "store", "background", "parallel_tool_calls"):
            self.assertRefused(base(**{field: 1}), field)

    def test_counts_must_be_whole_and_in_range(self) -> None:
        for cap in (1e300, 0, -5, 10.5, 2**40, "9"):
            message = self.assertRefused(base(max_output_tokens=cap), "max_output_tokens")
        self.assertIn("from 1 to 2147483647", message)
        self.assertRefused(base(top_logprobs=21), "top_logprobs")
        self.assertRefused(base(temperature=2.5), "temperature")
        self.assertRefused(base(top_p=-0.1), "top_p")

    def test_the_message_says_what_was_expected_and_what_came(self) -> None:
        self.assertEqual(
            self.assertRefused(base(stream="yes"), "stream"),
            "stream must be a boolean, not a string",
        )
        self.assertEqual(
            self.assertRefused(base(truncation="sometimes"), "truncation"),
            "truncation must be one of 'auto', 'disabled', not 'sometimes'",
        )
        self.assertEqual(self.assertRefused(base(prompt={}), "prompt.id"), "prompt.id is required")

    def test_a_long_bad_value_is_cut_short_in_the_message(self) -> None:
        message = self.assertRefused(base(truncation="x" * 10_000), "truncation")
        self.assertLess(len(message), 200)

    def test_nested_fields_are_named_by_their_path(self) -> None:
        namespace = {
            "type": "namespace",
            "name": "ns",
            "tools": [{"type": "function", "name": "f", "parameters": []}],
        }
        for body, param in [
            (
                base(tools=[{"type": "function", "name": "f"}, namespace]),
                "tools[1].tools[0].parameters",
            ),
            (base(tools=[{"name": "f"}]), "tools[0].type"),
            (base(tools=[{"type": "custom", "name": ""}]), "tools[0].name"),
            (
                base(tools=[{"type": "custom", "name": "c", "format": {"type": "grammar"}}]),
                "tools[0].format.definition",
            ),
            (base(text={"format": {"type": "json_schema"}}), "text.format.schema"),
            (base(text={"format": {"type": "xml"}}), "text.format.type"),
            (base(reasoning={"summary": 1}), "reasoning.summary"),
            (base(metadata={"k": 1}), "metadata.k"),
            (base(include=["a", 2]), "include[1]"),
            (base(input=["hi"]), "input[0]"),
            (
                base(tool_choice={"type": "allowed_tools", "mode": "all", "tools": []}),
                "tool_choice.mode",
            ),
            (base(tool_choice={"type": "mcp"}), "tool_choice.server_label"),
            (
                base(stream_options={"include_obfuscation": "no"}),
                "stream_options.include_obfuscation",
            ),
            (base(conversation={"id": 5}), "conversation.id"),
        ]:
            self.assertRefused(body, param)
            self.assertRefused(body, param, bridged=False)

    def test_the_translator_refuses_the_same_fields(self) -> None:
        err = self.assertRaises(
            InvalidRequest, responses_to_chat, base(previous_response_id=5), ChatDialect()
        )
        self.assertEqual(err.param, "previous_response_id")


class PhaseTests(SynchronousTestCase):
    """An assistant message's C{phase} (2026-04): the two known values, both ways."""

    def assistant(self, phase: Any, **kw: Any) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": [{"type": "output_text", "text": "ok"}],
            "phase": phase,
            **kw,
        }

    def test_commentary_and_final_answer_pass_bridged_and_relayed(self) -> None:
        for phase in ("commentary", "final_answer", None):
            for item in (self.assistant(phase), self.assistant(phase, type="message")):
                for bridged in (True, False):
                    check_create(base(input=[item]), bridged=bridged)

    def test_any_other_phase_is_refused_naming_the_item(self) -> None:
        for phase in ("final", "", 1, {"x": 1}):
            for bridged in (True, False):
                body = base(input=[{"role": "user", "content": "hi"}, self.assistant(phase)])
                err = self.assertRaises(InvalidRequest, check_create, body, bridged=bridged)
                self.assertEqual((err.param, err.status), ("input[1].phase", 400))

    def test_a_phase_field_on_other_item_types_is_not_ours_to_judge(self) -> None:
        item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
        check_create(base(input=[dict(item, phase="x")]), bridged=False)


class MessageTests(SynchronousTestCase):
    def test_a_number_out_of_range_is_shown_not_called_no_number(self) -> None:
        from codexgw.dialects.responses.validate import check_create
        from codexgw.errors import InvalidRequest

        with self.assertRaises(InvalidRequest) as raised:
            check_create({"model": "m", "input": "hi", "temperature": 3}, bridged=True)
        self.assertEqual(raised.exception.param, "temperature")
        self.assertEqual(
            raised.exception.message, "temperature must be a number from 0 to 2, not 3"
        )
