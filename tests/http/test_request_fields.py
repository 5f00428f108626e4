"""
C{POST /v1/responses} with a wrong-typed field: what the client receives.

Each field has its own test, on both paths (bridged to a Chat upstream and
relayed to a Responses one): a 400 in OpenAI's error shape whose C{param}
is the field's path, and nothing sent upstream. The recorded Codex CLI
requests, null settings and unknown fields still go through.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import parse
from tests.dialects.responses.test_validate import recorded_requests
from tests.fakes.chat_upstream import textStream
from tests.harness import Harness
from tests.paths import FIXTURES

CODEX = os.path.join(FIXTURES, "codex")
SSE = {b"content-type": b"text/event-stream"}

FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    # (test name, fields set on a valid body, the param the client is told)
    ("stream_as_a_string", {"stream": "yes"}, "stream"),
    ("store_as_a_string", {"store": "no"}, "store"),
    ("background_as_a_number", {"background": 1}, "background"),
    ("previous_response_id_as_a_number", {"previous_response_id": 5}, "previous_response_id"),
    ("instructions_as_an_array", {"instructions": ["be brief"]}, "instructions"),
    ("max_output_tokens_as_a_string", {"max_output_tokens": "9"}, "max_output_tokens"),
    ("max_output_tokens_as_a_boolean", {"max_output_tokens": True}, "max_output_tokens"),
    ("max_tool_calls_with_a_fraction", {"max_tool_calls": 2.5}, "max_tool_calls"),
    ("temperature_as_a_string", {"temperature": "hot"}, "temperature"),
    ("top_p_out_of_range", {"top_p": 1.5}, "top_p"),
    ("top_logprobs_as_a_string", {"top_logprobs": "5"}, "top_logprobs"),
    ("parallel_tool_calls_as_a_string", {"parallel_tool_calls": "true"}, "parallel_tool_calls"),
    ("tool_choice_as_a_number", {"tool_choice": 1}, "tool_choice"),
    ("tool_choice_of_an_unknown_mode", {"tool_choice": "sometimes"}, "tool_choice"),
    (
        "tool_choice_function_without_a_name",
        {"tool_choice": {"type": "function"}},
        "tool_choice.name",
    ),
    ("tools_as_an_object", {"tools": {"type": "function"}}, "tools"),
    ("tool_without_a_type", {"tools": [{"name": "f"}]}, "tools[0].type"),
    ("function_tool_without_a_name", {"tools": [{"type": "function"}]}, "tools[0].name"),
    (
        "function_tool_parameters_as_a_string",
        {"tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
        "tools[0].parameters",
    ),
    (
        "function_tool_strict_as_a_string",
        {"tools": [{"type": "function", "name": "f", "strict": "false"}]},
        "tools[0].strict",
    ),
    ("text_as_a_string", {"text": "json"}, "text"),
    ("text_format_of_an_unknown_type", {"text": {"format": {"type": "xml"}}}, "text.format.type"),
    (
        "json_schema_format_without_a_schema",
        {"text": {"format": {"type": "json_schema", "name": "o"}}},
        "text.format.schema",
    ),
    ("text_verbosity_of_an_unknown_value", {"text": {"verbosity": "loud"}}, "text.verbosity"),
    ("reasoning_as_a_string", {"reasoning": "high"}, "reasoning"),
    ("reasoning_effort_of_an_unknown_value", {"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ("reasoning_summary_as_a_number", {"reasoning": {"summary": 1}}, "reasoning.summary"),
    ("metadata_as_an_array", {"metadata": ["a"]}, "metadata"),
    ("metadata_value_as_a_number", {"metadata": {"run": 1}}, "metadata.run"),
    ("include_as_a_string", {"include": "reasoning.encrypted_content"}, "include"),
    ("include_entry_as_a_number", {"include": [1]}, "include[0]"),
    ("truncation_of_an_unknown_value", {"truncation": "sometimes"}, "truncation"),
    ("user_as_a_number", {"user": 7}, "user"),
    ("safety_identifier_as_a_number", {"safety_identifier": 7}, "safety_identifier"),
    ("prompt_cache_key_as_an_object", {"prompt_cache_key": {}}, "prompt_cache_key"),
    ("service_tier_as_a_number", {"service_tier": 1}, "service_tier"),
    ("stream_options_as_a_boolean", {"stream_options": True}, "stream_options"),
    ("prompt_as_a_string", {"prompt": "pmpt_1"}, "prompt"),
    ("prompt_without_an_id", {"prompt": {"version": "2"}}, "prompt.id"),
    ("conversation_as_a_number", {"conversation": 5}, "conversation"),
    ("input_as_a_number", {"input": 5}, "input"),
    ("input_item_as_a_string", {"input": ["hi"]}, "input[0]"),
]

VALID = {"model": "m1", "input": "hi"}


def bridged() -> Harness:
    """A gateway whose only upstream speaks Chat Completions."""
    return Harness()


def relayed() -> Harness:
    """A gateway whose only upstream speaks Responses."""
    return Harness(
        parse(
            {
                "upstreams": {
                    "oai": {
                        "base_url": "https://api.example.com/v1",
                        "wire_api": "responses",
                        "retries": {"max_attempts": 1},
                    }
                },
                "store": {"backend": "none"},
            },
            "t.yaml",
            {},
        )
    )


class Route:
    """Posting to C{/v1/responses} on one gateway and reading the answer."""

    def __init__(self, make: Callable[[], Harness]) -> None:
        self.harness = make()

    def post(self, body: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
        client = self.harness.connect()
        client.post(b"/v1/responses", body)
        return client.response()


class RefusalTests:
    """Mixed into a test case per path; L{make} builds that path's gateway."""

    make: Callable[[], Harness]

    def assertRefused(self, fields: dict[str, Any], param: str) -> None:
        case: Any = self
        route = Route(type(self).make)
        status, headers, content = route.post(dict(VALID, **fields))
        case.assertEqual(status, 400, content)
        case.assertEqual(headers[b"content-type"], b"application/json")
        error = orjson.loads(content)
        case.assertEqual(set(error), {"error"})
        case.assertEqual(
            {k: v for k, v in error["error"].items() if k != "message"},
            {"type": "invalid_request_error", "param": param, "code": None},
        )
        case.assertIsInstance(error["error"]["message"], str)
        case.assertIn(param, error["error"]["message"])
        case.assertEqual(route.harness.sent, [], "a refused request went upstream")


def _refusal(fields: dict[str, Any], param: str) -> Callable[[RefusalTests], None]:
    def test(self: RefusalTests) -> None:
        self.assertRefused(fields, param)

    test.__doc__ = f"{json.dumps(fields)} is a 400 naming {param}."
    return test


for _name, _fields, _param in FIELD_CASES:
    setattr(RefusalTests, f"test_{_name}_is_refused", _refusal(_fields, _param))


class BridgedRefusalTests(RefusalTests, SynchronousTestCase):
    make = staticmethod(bridged)

    def test_a_tool_of_an_unknown_type_is_refused(self) -> None:
        self.assertRefused({"tools": [{"type": "teleport"}]}, "tools[0].type")

    def test_a_tool_choice_of_an_unknown_type_is_refused(self) -> None:
        self.assertRefused({"tool_choice": {"type": "teleport"}}, "tool_choice.type")

    def test_a_tool_output_that_answers_no_call_is_refused_as_openai_refuses_it(self) -> None:
        # Sent on, it would be an orphan tool message upstream.
        output = {"type": "function_call_output", "call_id": "call_nowhere", "output": "1"}
        route = Route(bridged)
        status, _, content = route.post(dict(VALID, input=[output]))
        self.assertEqual(status, 400)
        error = orjson.loads(content)["error"]
        self.assertEqual((error["type"], error["param"]), ("invalid_request_error", "input"))
        self.assertEqual(
            error["message"],
            "No tool call found for function call output with call_id call_nowhere.",
        )
        self.assertEqual(route.harness.sent, [])

    def test_a_tool_output_that_answers_a_call_is_sent(self) -> None:
        call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
        output = {"type": "function_call_output", "call_id": "c1", "output": "1"}
        route = Route(bridged)
        client = route.harness.connect()
        client.post(b"/v1/responses", dict(VALID, input=[call, output]))
        self.assertEqual(len(route.harness.sent), 1)

    def test_a_bad_field_is_refused_before_any_stored_turn_is_looked_up(self) -> None:
        self.assertRefused(
            {"previous_response_id": "resp_1", "max_output_tokens": "9"}, "max_output_tokens"
        )


class RelayedRefusalTests(RefusalTests, SynchronousTestCase):
    make = staticmethod(relayed)

    def test_a_tool_of_a_type_the_gateway_does_not_know_is_relayed(self) -> None:
        route = Route(relayed)
        body = dict(VALID, tools=[{"type": "teleport", "range": 3}])
        client = route.harness.connect()
        client.post(b"/v1/responses", body)
        [sent] = route.harness.sent
        self.assertEqual(orjson.loads(sent.body), body)


class AcceptedTests(SynchronousTestCase):
    """What real clients send still reaches the upstream, on both paths."""

    def assertSent(self, make: Callable[[], Harness], body: dict[str, Any]) -> None:
        h = make()
        client = h.connect()
        client.post(b"/v1/responses", body)
        self.assertEqual(len(h.sent), 1, client.raw[:500])
        h.sent[0].respond(200, SSE, b"".join(textStream(["ok"])))
        self.assertEqual(client.response()[0], 200)

    def test_every_recorded_codex_request_is_sent_upstream(self) -> None:
        bodies = recorded_requests(CODEX)
        self.assertEqual(len(bodies), 5)
        for body in bodies.values():
            self.assertSent(bridged, body)
            self.assertSent(relayed, body)

    def test_null_settings_and_unknown_fields_are_accepted(self) -> None:
        body = dict(
            VALID,
            stream=None,
            store=None,
            max_output_tokens=None,
            temperature=None,
            tool_choice=None,
            tools=None,
            reasoning=None,
            text=None,
            metadata=None,
            client_metadata={"anything": [1, True]},
            a_field_from_next_year={"x": 1},
        )
        self.assertSent(bridged, body)
        self.assertSent(relayed, body)
