"""Tests for L{codexgw.dialects.chat.tools}: the reversible tool mapping."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.tools import (
    CUSTOM,
    FUNCTION,
    ToolTarget,
    custom_input,
    flat_name,
    map_tool_choice,
    map_tools,
)
from codexgw.errors import InvalidRequest
from tests.dialects.helpers import codex_body, codex_request

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class MapToolsTests(SynchronousTestCase):
    def test_codex_tools_become_valid_functions_and_hosted_tools_are_reported(self) -> None:
        mapped = map_tools(codex_body()["tools"], ChatDialect())
        names = [t["function"]["name"] for t in mapped.tools]
        self.assertTrue(all(VALID.match(n) for n in names))
        self.assertIn("multi_agent_v1__close_agent", names)
        self.assertIn("apply_patch", names)
        self.assertEqual(mapped.dropped, ["web_search"])
        self.assertEqual(
            mapped.tool_map.target("multi_agent_v1__close_agent"),
            ToolTarget(FUNCTION, "close_agent", "multi_agent_v1"),
        )
        self.assertEqual(mapped.tool_map.target("apply_patch"), ToolTarget(CUSTOM, "apply_patch"))

    def test_the_map_is_rebuilt_identically_from_the_request_alone(self) -> None:
        tools = codex_request("first-turn")["tools"]
        self.assertEqual(map_tools(tools, ChatDialect()), map_tools(tools, ChatDialect()))

    def test_custom_tools_take_one_string_input_and_carry_their_grammar(self) -> None:
        [tool] = [
            t for t in codex_request("custom-tool-followup")["tools"] if t["type"] == "custom"
        ]
        [fn] = map_tools([tool], ChatDialect()).tools
        self.assertEqual(fn["function"]["parameters"]["required"], ["input"])
        self.assertIn("begin_patch", fn["function"]["description"])

    def test_long_namespaced_names_are_hash_shortened_and_still_reversible(self) -> None:
        tools = [
            {
                "type": "namespace",
                "name": "n" * 40,
                "tools": [{"type": "function", "name": "f" * 40}],
            }
        ]
        mapped = map_tools(tools, ChatDialect())
        flat = mapped.tools[0]["function"]["name"]
        self.assertTrue(VALID.match(flat))
        self.assertEqual(mapped.tool_map.target(flat), ToolTarget(FUNCTION, "f" * 40, "n" * 40))
        self.assertEqual(mapped.tool_map.upstream_name(FUNCTION, "f" * 40, "n" * 40), flat)
        self.assertEqual(flat_name("f" * 40, "n" * 40), flat)

    def test_a_flat_name_collision_is_resolved_without_losing_either_tool(self) -> None:
        tools = [
            {"type": "function", "name": "a__b"},
            {"type": "namespace", "name": "a", "tools": [{"type": "function", "name": "b"}]},
        ]
        mapped = map_tools(tools, ChatDialect())
        first, second = (t["function"]["name"] for t in mapped.tools)
        self.assertNotEqual(first, second)
        self.assertEqual(mapped.tool_map.target(second), ToolTarget(FUNCTION, "b", "a"))
        self.assertEqual(mapped.tool_map.target(first), ToolTarget(FUNCTION, "a__b"))

    def test_unknown_names_from_the_model_pass_through_as_functions(self) -> None:
        self.assertEqual(
            map_tools([], ChatDialect()).tool_map.target("made_up"), ToolTarget(FUNCTION, "made_up")
        )

    def test_bad_tool_shapes_are_refused_with_their_path(self) -> None:
        for tools, param in (
            ("x", "tools"),
            ([1], "tools[0]"),
            ([{"type": "function"}], "tools[0].name"),
            ([{"type": "function", "name": "f", "parameters": []}], "tools[0].parameters"),
            (
                [{"type": "namespace", "name": "n", "tools": [{"type": "function"}]}],
                "tools[0].tools[0].name",
            ),
        ):
            err = self.assertRaises(InvalidRequest, map_tools, tools, ChatDialect())
            self.assertEqual(err.param, param)


class CallBackTests(SynchronousTestCase):
    def test_custom_input_unwraps_the_json_wrapper_or_takes_raw_text(self) -> None:
        self.assertEqual(custom_input('{"input": "*** Begin"}'), "*** Begin")
        self.assertEqual(custom_input("*** Begin Patch"), "*** Begin Patch")
        self.assertEqual(custom_input('{"patch": "p"}'), "p")

    def test_tool_choice_maps_names_and_hosted_choices(self) -> None:
        tool_map = map_tools(codex_body()["tools"], ChatDialect()).tool_map
        self.assertEqual(map_tool_choice("required", tool_map), "required")
        self.assertEqual(
            map_tool_choice(
                {"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"}, tool_map
            ),
            {"type": "function", "function": {"name": "multi_agent_v1__close_agent"}},
        )
        self.assertEqual(map_tool_choice({"type": "web_search_preview"}, tool_map), "auto")
