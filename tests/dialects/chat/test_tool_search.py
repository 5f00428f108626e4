"""
Tests for the client-executed C{tool_search} through the Chat bridge: the
tool as a function, its call back as a C{tool_search_call}, and the tools a
C{tool_search_output} revealed as callable functions of the next request.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.tools import (
    FUNCTION,
    TOOL_SEARCH,
    ToolTarget,
    map_tools,
    revealed_tools,
)
from codexgw.dialects.responses.validate import check_create
from codexgw.errors import InvalidRequest
from tests.dialects.helpers import codex_request, run_pieces, translator

SEARCH_TOOL: dict[str, Any] = next(
    t for t in codex_request("custom-tool-followup")["tools"] if t["type"] == "tool_search"
)
"""The C{tool_search} tool the Codex CLI 0.169 sends."""

REVEALED: list[dict[str, Any]] = [
    {
        "type": "namespace",
        "name": "mcp__calendar",
        "description": "Tools in the mcp__calendar namespace.",
        "tools": [
            {
                "type": "function",
                "name": "create_event",
                "description": "Create events",
                "strict": False,
                "defer_loading": True,
                "parameters": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}},
                    "required": ["title"],
                    "additionalProperties": False,
                },
            }
        ],
    }
]
"""What Codex's client-side search returns: MCP tools grouped in a namespace."""


def body(*items: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "model": "m1",
        "stream": True,
        "tools": copy.deepcopy([SEARCH_TOOL] if tools is None else tools),
        "input": [
            {"type": "message", "role": "user", "content": "add a meeting"},
            *copy.deepcopy(list(items)),
        ],
    }


SEARCH_CALL: dict[str, Any] = {
    "type": "tool_search_call",
    "id": "tsc_1",
    "call_id": "call_s1",
    "execution": "client",
    "status": "completed",
    "arguments": {"query": "calendar event", "limit": 8},
}
SEARCH_OUTPUT: dict[str, Any] = {
    "type": "tool_search_output",
    "call_id": "call_s1",
    "execution": "client",
    "status": "completed",
    "tools": REVEALED,
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(data) + b"\n\n"


def call_stream(name: str, arguments: str) -> list[bytes]:
    """An upstream answering with one call of C{name}, its arguments split."""
    half = len(arguments) // 2
    return [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_up",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments[:half]},
                    }
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


def done_items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


class ToolSearchToolTests(SynchronousTestCase):
    def test_a_client_tool_search_becomes_a_function_with_codex_parameters(self) -> None:
        mapped = map_tools([SEARCH_TOOL], ChatDialect())
        [fn] = mapped.tools
        self.assertEqual(fn["function"]["name"], "tool_search")
        self.assertEqual(fn["function"]["parameters"], SEARCH_TOOL["parameters"])
        self.assertIn("Tool discovery", fn["function"]["description"])
        self.assertEqual(mapped.dropped, [])
        self.assertEqual(
            mapped.tool_map.target("tool_search"), ToolTarget(TOOL_SEARCH, TOOL_SEARCH)
        )

    def test_a_hosted_tool_search_is_still_dropped(self) -> None:
        for tool in ({"type": "tool_search"}, {"type": "tool_search", "execution": "server"}):
            mapped = map_tools([tool], ChatDialect())
            self.assertEqual((mapped.tools, mapped.dropped), ([], ["tool_search"]))

    def test_a_bare_client_tool_search_gets_a_query_parameter(self) -> None:
        [fn] = map_tools([{"type": "tool_search", "execution": "client"}], ChatDialect()).tools
        self.assertEqual(fn["function"]["parameters"]["required"], ["query"])

    def test_the_codex_request_keeps_tool_search_and_drops_only_web_search(self) -> None:
        request = responses_to_chat(codex_request("custom-tool-followup"), ChatDialect())
        names = [t["function"]["name"] for t in request.body["tools"]]
        self.assertIn("tool_search", names)
        self.assertNotIn("tool_search", request.dropped_tools)

    def test_validation_checks_the_tool_search_fields(self) -> None:
        check_create(body(), bridged=True)
        bad = body(tools=[{"type": "tool_search", "execution": "elsewhere"}])
        error = self.assertRaises(InvalidRequest, check_create, bad, bridged=True)
        self.assertEqual(error.param, "tools[0].execution")


class ToolSearchCallTests(SynchronousTestCase):
    def test_an_upstream_call_of_tool_search_becomes_a_tool_search_call(self) -> None:
        t = translator(responses_to_chat(body(), ChatDialect()))
        events = run_pieces(
            call_stream("tool_search", '{"query": "calendar event", "limit": 3}'), t
        )
        [item] = done_items(events)
        self.assertEqual(item["type"], "tool_search_call")
        self.assertEqual(item["call_id"], "call_up")
        self.assertEqual(item["execution"], "client")
        self.assertEqual(item["status"], "completed")
        self.assertEqual(item["arguments"], {"query": "calendar event", "limit": 3})
        self.assertTrue(item["id"].startswith("tsc_"))
        # added and done together, no argument deltas, and the same item in the response
        types = [e["type"] for e in events]
        self.assertEqual(types.count("response.output_item.added"), 1)
        self.assertFalse([x for x in types if "arguments" in x])
        self.assertEqual(events[-1]["response"]["output"], [item])

    def test_the_tool_search_stream_passes_the_oracle(self) -> None:
        """The item is OpenAI's own (no Open Responses type): the openai SDK parses it."""
        from tests.dialects.oracle import check_stream

        t = translator(responses_to_chat(body(), ChatDialect()))
        events = run_pieces(call_stream("tool_search", '{"query": "calendar"}'), t)
        final = check_stream(events)
        self.assertEqual(final["output"][0]["type"], "tool_search_call")

    def test_arguments_that_are_not_an_object_become_a_query(self) -> None:
        t = translator(responses_to_chat(body(), ChatDialect()))
        [item] = done_items(run_pieces(call_stream("tool_search", "calendar"), t))
        self.assertEqual(item["arguments"], {"query": "calendar"})

    def test_history_call_and_output_become_a_call_and_its_tool_message(self) -> None:
        request = responses_to_chat(body(SEARCH_CALL, SEARCH_OUTPUT), ChatDialect())
        messages = request.body["messages"]
        self.assertEqual(
            messages[1],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_s1",
                        "type": "function",
                        "function": {
                            "name": "tool_search",
                            "arguments": '{"query":"calendar event","limit":8}',
                        },
                    }
                ],
            },
        )
        self.assertEqual(messages[2]["role"], "tool")
        self.assertEqual(messages[2]["tool_call_id"], "call_s1")
        loaded = orjson.loads(messages[2]["content"])["tools_loaded"]
        self.assertEqual(
            loaded, [{"name": "mcp__calendar__create_event", "description": "Create events"}]
        )

    def test_an_output_without_a_call_id_is_refused_naming_it(self) -> None:
        output = dict(SEARCH_OUTPUT)
        del output["call_id"]
        error = self.assertRaises(
            InvalidRequest, responses_to_chat, body(SEARCH_CALL, output), ChatDialect()
        )
        self.assertEqual(error.param, "input[2].call_id")

    def test_an_empty_search_says_so(self) -> None:
        output = dict(SEARCH_OUTPUT, tools=[])
        request = responses_to_chat(body(SEARCH_CALL, output), ChatDialect())
        self.assertEqual(request.body["messages"][2]["content"], "No tools were found.")


class RevealedToolsTests(SynchronousTestCase):
    def test_revealed_tools_join_the_request_tools_as_callable_functions(self) -> None:
        request = responses_to_chat(body(SEARCH_CALL, SEARCH_OUTPUT), ChatDialect())
        functions = {t["function"]["name"]: t["function"] for t in request.body["tools"]}
        self.assertEqual(sorted(functions), ["mcp__calendar__create_event", "tool_search"])
        created = functions["mcp__calendar__create_event"]
        self.assertEqual(created["parameters"]["required"], ["title"])
        self.assertNotIn("defer_loading", created)
        self.assertEqual(
            request.tool_map.target("mcp__calendar__create_event"),
            ToolTarget(FUNCTION, "create_event", "mcp__calendar"),
        )

    def test_a_call_of_a_revealed_tool_comes_back_with_name_and_namespace(self) -> None:
        t = translator(responses_to_chat(body(SEARCH_CALL, SEARCH_OUTPUT), ChatDialect()))
        events = run_pieces(call_stream("mcp__calendar__create_event", '{"title": "sync"}'), t)
        [item] = done_items(events)
        self.assertEqual(item["type"], "function_call")
        self.assertEqual(item["name"], "create_event")
        self.assertEqual(item["namespace"], "mcp__calendar")
        self.assertEqual(item["arguments"], '{"title": "sync"}')

    def test_a_later_turn_replays_the_revealed_call_under_its_flat_name(self) -> None:
        call = {
            "type": "function_call",
            "call_id": "call_c1",
            "name": "create_event",
            "namespace": "mcp__calendar",
            "arguments": '{"title": "sync"}',
        }
        output = {"type": "function_call_output", "call_id": "call_c1", "output": "created"}
        request = responses_to_chat(body(SEARCH_CALL, SEARCH_OUTPUT, call, output), ChatDialect())
        messages = request.body["messages"]
        self.assertEqual(
            messages[3]["tool_calls"][0]["function"]["name"], "mcp__calendar__create_event"
        )
        self.assertEqual(
            messages[4], {"role": "tool", "tool_call_id": "call_c1", "content": "created"}
        )

    def test_a_tool_revealed_twice_or_also_offered_is_sent_once(self) -> None:
        second = dict(SEARCH_OUTPUT, call_id="call_s2")
        second_call = dict(SEARCH_CALL, call_id="call_s2")
        offered = [SEARCH_TOOL, *copy.deepcopy(REVEALED)]
        request = responses_to_chat(
            body(SEARCH_CALL, SEARCH_OUTPUT, second_call, second, tools=offered), ChatDialect()
        )
        names = [t["function"]["name"] for t in request.body["tools"]]
        self.assertEqual(names, ["tool_search", "mcp__calendar__create_event"])

    def test_revealed_tools_alone_make_a_tools_array(self) -> None:
        request = responses_to_chat(body(SEARCH_CALL, SEARCH_OUTPUT, tools=[]), ChatDialect())
        names = [t["function"]["name"] for t in request.body["tools"]]
        self.assertEqual(names, ["mcp__calendar__create_event"])
        # the history's tool_search call still goes up under its own name
        self.assertEqual(
            request.body["messages"][1]["tool_calls"][0]["function"]["name"], "tool_search"
        )

    def test_revealed_tools_must_be_an_array(self) -> None:
        bad = dict(SEARCH_OUTPUT, tools={"type": "function"})
        error = self.assertRaises(InvalidRequest, revealed_tools, [bad])
        self.assertEqual(error.param, "input[0].tools")
        error = self.assertRaises(
            InvalidRequest, responses_to_chat, body(SEARCH_CALL, bad), ChatDialect()
        )
        self.assertEqual(error.param, "input[2].tools")
