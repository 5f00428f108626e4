"""
Tests for L{codexgw.dialects.chat.stream_to_hub}: Chat chunks in, Responses events
out, checked against recorded-shape provider streams, golden event lists
and the external oracles in L{tests.dialects.oracle}.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.errors import upstream_error
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.stream_to_hub import map_usage, seal_reasoning, unseal_reasoning
from codexgw.errors import InvalidRequest, RateLimited, UpstreamUnavailable
from tests.dialects.helpers import (
    STREAMS,
    codex_body,
    run_fixture,
    run_pieces,
    stream_bytes,
    translator,
)
from tests.dialects.oracle import OracleError, check_response, check_stream, codex_rules

FIXTURE_NAMES = sorted(n[:-4] for n in os.listdir(STREAMS) if n.endswith(".sse"))
REGENERATE = os.environ.get("CODEXGW_REGENERATE") == "1"


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **kw: Any
) -> dict[str, Any]:
    c: dict[str, Any] = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    c.update(kw)
    return c


def call(
    index: int, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id:
        tc["id"] = id
    if name:
        tc["function"]["name"] = name
    return chunk({"tool_calls": [tc]})


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def items(response: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in response["output"] if i["type"] == kind]


class GoldenStreamTests(SynchronousTestCase):
    """Every provider fixture, against its golden events and the oracles."""

    def test_every_fixture_matches_its_golden_events_and_the_oracles(self) -> None:
        self.assertTrue(FIXTURE_NAMES)
        for name in FIXTURE_NAMES:
            events = run_fixture(name)
            check_stream(events)
            golden = os.path.join(STREAMS, name + ".events.json")
            if REGENERATE:
                with open(golden, "wb") as f:
                    f.write(orjson.dumps(events, option=orjson.OPT_INDENT_2) + b"\n")
            with open(golden) as f:
                self.assertEqual(json.loads(orjson.dumps(events)), json.load(f), name)


class ProviderStreamTests(SynchronousTestCase):
    def test_openai_text_becomes_one_message_with_mapped_usage(self) -> None:
        final = check_stream(run_fixture("openai_text"))
        self.assertEqual(final["status"], "completed")
        [message] = final["output"]
        self.assertEqual(message["content"][0]["text"], "Hello, world — ünïcode ✓")
        self.assertEqual(
            final["usage"],
            {
                "input_tokens": 120,
                "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
                "output_tokens": 15,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 135,
            },
        )

    def test_azure_empty_choices_and_filter_results_are_ignored(self) -> None:
        final = check_stream(run_fixture("azure_text"))
        self.assertEqual([m["content"][0]["text"] for m in final["output"]], ["Azure says hi"])
        self.assertEqual(final["usage"]["total_tokens"], 24)

    def test_parallel_tool_calls_stream_as_separate_function_call_items(self) -> None:
        final = check_stream(run_fixture("openai_parallel_tools"))
        calls = items(final, "function_call")
        self.assertEqual(
            [(c["call_id"], c["name"]) for c in calls],
            [("call_A", "exec_command"), ("call_B", "view_image")],
        )
        self.assertEqual(json.loads(calls[0]["arguments"]), {"cmd": "ls -la"})
        self.assertEqual(json.loads(calls[1]["arguments"]), {"path": "/tmp/ä.png"})

    def test_deepseek_reasoning_content_becomes_a_reasoning_item_before_the_message(self) -> None:
        final = check_stream(run_fixture("deepseek_reasoning"))
        reasoning, message = final["output"]
        self.assertEqual(reasoning["type"], "reasoning")
        thought = "The user wants a greeting."
        # Codex asks for a summary: the reasoning is both summary and raw text.
        self.assertEqual(reasoning["summary"], [{"type": "summary_text", "text": thought}])
        self.assertEqual(reasoning["content"], [{"type": "reasoning_text", "text": thought}])
        self.assertEqual(message["content"][0]["text"], "Hi there")
        self.assertEqual(final["usage"]["input_tokens_details"]["cached_tokens"], 32)
        self.assertEqual(final["usage"]["output_tokens_details"]["reasoning_tokens"], 30)

    def test_vllm_repeated_and_missing_ids_namespace_and_custom_calls_after_stop(self) -> None:
        events = run_fixture("vllm_tools")
        final = check_stream(events)
        self.assertEqual(final["status"], "completed")
        kinds = [i["type"] for i in final["output"]]
        self.assertEqual(kinds, ["reasoning", "function_call", "function_call", "custom_tool_call"])
        exec_call, close_call, patch = final["output"][1:]
        self.assertEqual(exec_call["call_id"], "chatcmpl-tool-1")
        self.assertTrue(close_call["call_id"].startswith("call_"))
        self.assertNotEqual(patch["call_id"], "chatcmpl-tool-1")
        self.assertEqual(
            (close_call["name"], close_call["namespace"]), ("close_agent", "multi_agent_v1")
        )
        self.assertEqual(patch["input"], "*** Begin Patch\n*** End Patch\n")
        self.assertIn("response.custom_tool_call_input.delta", types(events))
        self.assertEqual(final["usage"]["input_tokens"], 77)

    def test_ollama_calls_without_index_over_crlf_become_two_calls(self) -> None:
        final = check_stream(run_fixture("ollama_tools"))
        self.assertEqual([c["name"] for c in final["output"]], ["exec_command", "get_goal"])
        self.assertEqual(final["output"][1]["arguments"], "{}")

    def test_length_becomes_incomplete_max_output_tokens(self) -> None:
        final = check_stream(run_fixture("length_truncated"))
        self.assertEqual(final["status"], "incomplete")
        self.assertEqual(final["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertEqual(final["output"][0]["status"], "incomplete")

    def test_midstream_error_object_fails_with_context_length_exceeded(self) -> None:
        events = run_fixture("midstream_error")
        final = check_stream(events)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(final["error"]["code"], "context_length_exceeded")
        # The half message was streamed, then abandoned: never done, not output.
        self.assertIn("response.output_text.delta", [e["type"] for e in events])
        self.assertNotIn("response.output_item.done", [e["type"] for e in events])
        self.assertEqual(final["output"], [])

    def test_close_without_done_after_finish_reason_completes(self) -> None:
        final = check_stream(run_fixture("no_done_after_finish"))
        self.assertEqual(final["status"], "completed")
        self.assertEqual(final["usage"]["total_tokens"], 8)

    def test_close_without_finish_reason_after_text_completes(self) -> None:
        final = check_stream(run_fixture("no_finish_reason"))
        self.assertEqual(final["status"], "completed")


class SplitBytesTests(SynchronousTestCase):
    @settings(max_examples=40, deadline=None)
    @given(
        name=st.sampled_from(FIXTURE_NAMES),
        cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
    )
    def test_splitting_bytes_anywhere_yields_identical_events(
        self, name: str, cuts: list[int]
    ) -> None:
        data = stream_bytes(name)
        points = sorted({c % (len(data) + 1) for c in cuts})
        pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        self.assertEqual(run_pieces(pieces), run_fixture(name))

    def test_bytes_one_at_a_time_split_utf8_inside_arguments(self) -> None:
        data = stream_bytes("openai_parallel_tools")
        self.assertIn("ä".encode(), data)
        self.assertEqual(
            run_pieces([data[i : i + 1] for i in range(len(data))]),
            run_fixture("openai_parallel_tools"),
        )


class TerminalTests(SynchronousTestCase):
    def test_exactly_one_terminal_event_and_nothing_after_it(self) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"content": "x"}, "stop")) + t.finish()
        self.assertEqual(types(events)[-1], "response.completed")
        self.assertTrue(t.done)
        self.assertEqual(t.finish(), [])
        self.assertEqual(t.fail("x", "y"), [])
        self.assertEqual(t.feed(chunk({"content": "late"})), [])
        self.assertEqual(t.keepalive(), [])
        check_stream(events)

    def test_content_filter_becomes_incomplete_content_filter(self) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"content": "x"}, "content_filter")) + t.finish()
        self.assertEqual(check_stream(events)["incomplete_details"], {"reason": "content_filter"})

    def test_no_reason_ever_is_interrupted(self) -> None:
        for finish in ("length", "content_filter", "stop", "tool_calls", "function_call", None):
            t = translator()
            events = t.start() + t.feed(chunk({"content": "x"}, finish)) + t.finish()
            final = check_stream(events)
            self.assertNotEqual((final["incomplete_details"] or {}).get("reason"), "interrupted")

    def test_fail_abandons_open_items_and_carries_the_code(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.feed(call(0, "c1", "exec_command", '{"cmd"'))
            + t.fail("upstream_idle_timeout", "silent")
        )
        final = check_stream(events)
        self.assertEqual(final["error"], {"code": "upstream_idle_timeout", "message": "silent"})
        self.assertNotIn("response.output_item.done", types(events))
        self.assertNotIn("response.function_call_arguments.done", types(events))
        self.assertEqual(final["output"], [])

    def test_fail_keeps_the_items_that_were_finished(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.feed(chunk({"reasoning_content": "think"}))
            + t.feed(chunk({"content": "half an ans"}))
            + t.fail("upstream_stream_broken", "cut")
        )
        final = check_stream(events)
        self.assertEqual([item["type"] for item in final["output"]], ["reasoning"])
        done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
        self.assertEqual(done, ["reasoning"])
        self.assertNotIn("response.output_text.done", types(events))

    def test_a_chunk_that_raises_loses_none_of_the_events_before_it(self) -> None:
        t = translator()
        events = t.start()
        with self.assertRaises((AttributeError, TypeError)):
            # Opens the message, then trips over a tool call of the wrong shape.
            t.feed(
                {
                    "choices": [
                        {"delta": {"content": "Hi", "tool_calls": [{"index": 0, "function": 7}]}}
                    ]
                }
            )
        events += t.fail("upstream_protocol_error", "wrong shape")
        final = check_stream(events)
        self.assertIn("response.output_text.delta", types(events))
        self.assertEqual(final["error"]["code"], "upstream_protocol_error")

    def test_close_with_no_output_and_no_finish_reason_fails(self) -> None:
        t = translator()
        final = check_stream(t.start() + t.finish())
        self.assertEqual(final["error"]["code"], "upstream_stream_incomplete")

    def test_close_inside_a_tool_call_fails_rather_than_running_half_arguments(self) -> None:
        t = translator()
        events = t.start() + t.feed(call(0, "c1", "exec_command", '{"cmd": "rm')) + t.finish()
        self.assertEqual(check_stream(events)["error"]["code"], "upstream_stream_incomplete")

    def test_finish_before_start_still_opens_the_stream(self) -> None:
        t = translator()
        events = t.feed(chunk({"content": "hi"}, "stop")) + t.finish()
        self.assertEqual(types(events)[:2], ["response.created", "response.in_progress"])
        check_stream(events)

    def test_keepalive_is_a_real_in_progress_event(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.keepalive()
            + t.feed(chunk({"content": "a"}, "stop"))
            + t.keepalive()
            + t.finish()
        )
        self.assertEqual(types(events).count("response.in_progress"), 3)
        check_stream(events)

    def test_a_named_call_never_seen_fails_as_a_protocol_error(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.feed(call(0, "c1", None, '{"a": 1}'))
            + t.feed(chunk({}, "tool_calls"))
            + t.finish()
        )
        self.assertEqual(check_stream(events)["error"]["code"], "upstream_protocol_error")


class ItemShapeTests(SynchronousTestCase):
    """The Codex CLI behaviours from the protocol notes, on the way out."""

    def test_arguments_are_a_string_even_when_the_upstream_sends_an_object(self) -> None:
        t = translator()
        tc = {
            "index": 0,
            "id": "c1",
            "function": {"name": "exec_command", "arguments": {"cmd": "ls"}},
        }
        events = t.start() + t.feed(chunk({"tool_calls": [tc]}, "tool_calls")) + t.finish()
        self.assertEqual(check_stream(events)["output"][0]["arguments"], '{"cmd":"ls"}')

    def test_namespaced_calls_come_back_with_name_and_namespace(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.feed(call(0, "c1", "multi_agent_v1__close_agent", '{"target":"x"}'))
            + t.finish()
        )
        added = [e for e in events if e["type"] == "response.output_item.added"][0]["item"]
        self.assertEqual((added["name"], added["namespace"]), ("close_agent", "multi_agent_v1"))
        check_stream(events)

    def test_text_is_output_text_parts_and_completed_carries_the_response(self) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"content": "hi"}, "stop")) + t.finish()
        final = events[-1]["response"]
        self.assertEqual(final["id"], "resp_fixture")
        self.assertEqual(final["output"][0]["content"][0]["type"], "output_text")
        self.assertEqual(final["completed_at"], 1700000001)

    def test_usage_floats_and_missing_usage_become_integers(self) -> None:
        self.assertEqual(
            map_usage({"prompt_tokens": 3.0, "completion_tokens": 2})["total_tokens"], 5
        )
        self.assertEqual(type(map_usage({"prompt_tokens": 3.0})["input_tokens"]), int)
        self.assertEqual(map_usage(None)["output_tokens_details"], {"reasoning_tokens": 0})

    def test_usage_no_encoder_could_write_back_counts_as_nothing(self) -> None:
        usage = map_usage({"prompt_tokens": 1e300, "completion_tokens": 2**70})
        self.assertEqual((usage["input_tokens"], usage["output_tokens"]), (0, 0))

    def test_reasoning_as_summary_uses_summary_index_events(self) -> None:
        t = translator(reasoning_as="summary")
        events = (
            t.start()
            + t.feed(chunk({"reasoning_content": "think"}))
            + t.feed(chunk({"content": "ok"}, "stop"))
            + t.finish()
        )
        final = check_stream(events)
        self.assertIn("response.reasoning_summary_text.delta", types(events))
        self.assertTrue(all(e["summary_index"] == 0 for e in events if "summary" in e["type"]))
        self.assertEqual(final["output"][0]["summary"], [{"type": "summary_text", "text": "think"}])

    def test_reasoning_text_events_carry_content_index(self) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"reasoning_content": "think"})) + t.finish()
        deltas = [e for e in events if e["type"] == "response.reasoning_text.delta"]
        self.assertEqual([d["content_index"] for d in deltas], [0])

    def test_reasoning_text_streams_inside_a_reasoning_text_content_part(self) -> None:
        t = translator(reasoning_as="text")
        events = (
            t.start()
            + t.feed(chunk({"reasoning_content": "thi"}))
            + t.feed(chunk({"reasoning_content": "nk"}))
            + t.feed(chunk({"content": "ok"}, "stop"))
            + t.finish()
        )
        final = check_stream(events)
        reasoning = [e for e in events if e.get("output_index") == 0]
        self.assertEqual(
            types(reasoning),
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
            ],
        )
        self.assertEqual(reasoning[1]["part"], {"type": "reasoning_text", "text": ""})
        self.assertEqual(reasoning[5]["part"], {"type": "reasoning_text", "text": "think"})
        self.assertEqual(
            final["output"][0]["content"], [{"type": "reasoning_text", "text": "think"}]
        )

    def reasoning_events(self, t: Any) -> list[dict[str, Any]]:
        return (
            t.start()
            + t.feed(chunk({"reasoning_content": "thi"}))
            + t.feed(chunk({"reasoning_content": "nk"}))
            + t.feed(chunk({"content": "ok"}, "stop"))
            + t.finish()
        )

    def test_a_request_for_a_summary_gets_the_reasoning_as_summary_and_as_text(self) -> None:
        body = codex_body()
        self.assertEqual(body["reasoning"]["summary"], "auto")
        events = self.reasoning_events(translator(responses_to_chat(body, ChatDialect())))
        final = check_stream(events)
        reasoning = [e for e in events if e.get("output_index") == 0]
        self.assertEqual(
            types(reasoning),
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.content_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
            ],
        )
        self.assertEqual(
            [e["delta"] for e in reasoning if e["type"].endswith("summary_text.delta")],
            ["thi", "nk"],
        )
        [item] = items(final, "reasoning")
        self.assertEqual(item["summary"], [{"type": "summary_text", "text": "think"}])
        self.assertEqual(item["content"], [{"type": "reasoning_text", "text": "think"}])

    def test_no_summary_unless_asked_for_one(self) -> None:
        for reasoning in (None, {"effort": "high"}, {"summary": "none"}, {"summary": None}):
            body = codex_body()
            body["reasoning"] = reasoning
            events = self.reasoning_events(translator(responses_to_chat(body, ChatDialect())))
            [item] = items(check_stream(events), "reasoning")
            self.assertEqual(item["summary"], [], reasoning)
            self.assertNotIn("response.reasoning_summary_text.delta", types(events))
            self.assertEqual(item["content"], [{"type": "reasoning_text", "text": "think"}])

    def test_an_upstream_without_summarize_reasoning_streams_raw_text_only(self) -> None:
        dialect = ChatDialect(summarize_reasoning=False)
        events = self.reasoning_events(translator(responses_to_chat(codex_body(), dialect)))
        [item] = items(check_stream(events), "reasoning")
        self.assertEqual(item["summary"], [])
        self.assertEqual(item["content"], [{"type": "reasoning_text", "text": "think"}])

    def test_oracle_rejects_reasoning_text_with_no_content_part_as_the_node_sdk_does(
        self,
    ) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"reasoning_content": "x"}, "stop")) + t.finish()
        bare = [
            e
            for e in events
            if not (e["type"].startswith("response.content_part.") and e["output_index"] == 0)
        ]
        for n, event in enumerate(bare):
            event["sequence_number"] = n
        with self.assertRaises(OracleError) as caught:
            check_stream(bare)
        self.assertIn("missing content at index 0", str(caught.exception))

    def test_reasoning_is_sealed_into_encrypted_content_when_the_client_includes_it(self) -> None:
        t = translator()
        events = (
            t.start()
            + t.feed(chunk({"reasoning_content": "secret plan"}))
            + t.feed(chunk({"content": "ok"}, "stop"))
            + t.finish()
        )
        token = check_stream(events)["output"][0]["encrypted_content"]
        self.assertEqual(unseal_reasoning(token), "secret plan")

    def test_no_encrypted_content_unless_included(self) -> None:
        body = codex_body()
        del body["include"]
        t = translator(responses_to_chat(body, ChatDialect()))
        events = t.start() + t.feed(chunk({"reasoning_content": "x"}, "stop")) + t.finish()
        self.assertNotIn("encrypted_content", check_stream(events)["output"][0])

    def test_response_echoes_the_request_settings(self) -> None:
        body = codex_body()
        body.update(temperature=0.2, max_output_tokens=99, instructions="be brief")
        t = translator(responses_to_chat(body, ChatDialect()))
        final = check_stream(t.start() + t.feed(chunk({"content": "x"}, "stop")) + t.finish())
        self.assertEqual(
            (
                final["temperature"],
                final["max_output_tokens"],
                final["instructions"],
                final["parallel_tool_calls"],
            ),
            (0.2, 99, "be brief", True),
        )
        self.assertEqual(final["prompt_cache_key"], body["prompt_cache_key"])
        self.assertEqual(final["model"], "m1")

    def test_store_says_whether_the_gateway_keeps_it_not_what_was_asked(self) -> None:
        body = codex_body()
        body["store"] = False
        for stored in (True, False):
            t = translator(responses_to_chat(body, ChatDialect()), stored=stored)
            events = t.start() + t.feed(chunk({"content": "x"}, "stop")) + t.finish()
            check_stream(events)
            self.assertEqual(
                [e["response"]["store"] for e in events if "response" in e], [stored] * 3
            )

    def test_local_shell_calls_come_back_as_local_shell_call_items(self) -> None:
        body = {"model": "m", "input": "hi", "tools": [{"type": "local_shell"}]}
        t = translator(responses_to_chat(body, ChatDialect()))
        events = (
            t.start()
            + t.feed(call(0, "c1", "local_shell", '{"command": ["ls"], "workdir": "/tmp"}'))
            + t.feed(chunk({}, "tool_calls"))
            + t.finish()
        )
        [item] = check_stream(events)["output"]
        self.assertEqual(item["type"], "local_shell_call")
        self.assertEqual(
            (item["action"]["command"], item["action"]["working_directory"]), (["ls"], "/tmp")
        )

    def test_oracle_rejects_a_plain_string_content_message(self) -> None:
        t = translator()
        events = t.start() + t.feed(chunk({"content": "x"}, "stop")) + t.finish()
        events[-1]["response"]["output"][0]["content"] = "x"
        self.assertRaises((OracleError, ValidationError), check_stream, events)
        bad = dict(events[-1]["response"], incomplete_details={"reason": "interrupted"}, output=[])
        self.assertRaises(OracleError, codex_rules, bad)
        self.assertRaises((OracleError, ValidationError), check_response, bad)


class SealTests(SynchronousTestCase):
    def test_sealed_reasoning_round_trips_and_foreign_blobs_are_ignored(self) -> None:
        self.assertEqual(unseal_reasoning(seal_reasoning("ä plan")), "ä plan")
        self.assertIsNone(unseal_reasoning("gAAAA-mock-encrypted-blob"))
        self.assertIsNone(unseal_reasoning(None))

    def test_keyed_seal_rejects_tampering_and_the_wrong_key(self) -> None:
        token = seal_reasoning("plan", b"k1")
        self.assertEqual(unseal_reasoning(token, b"k1"), "plan")
        self.assertIsNone(unseal_reasoning(token, b"k2"))
        self.assertIsNone(unseal_reasoning(seal_reasoning("forged"), b"k1"))


class UpstreamErrorTests(SynchronousTestCase):
    def test_context_overflow_messages_map_to_context_length_exceeded(self) -> None:
        for message in (
            "This model's maximum context length is 8192",
            "too many tokens in prompt",
            "prompt is too long",
        ):
            err = upstream_error(
                400, orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
            )
            self.assertIsInstance(err, InvalidRequest)
            self.assertEqual(err.code, "context_length_exceeded")

    def test_rate_limit_and_server_errors_keep_their_status(self) -> None:
        err = upstream_error(
            429, b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}'
        )
        self.assertIsInstance(err, RateLimited)
        self.assertEqual((err.status, err.code), (429, "rate_limit_exceeded"))
        err = upstream_error(503, b"<html>bad gateway</html>")
        self.assertIsInstance(err, UpstreamUnavailable)
        self.assertEqual((err.status, err.message), (503, "<html>bad gateway</html>"))

    def test_vllm_object_error_chunk_fails_the_stream(self) -> None:
        t = translator()
        events = t.start() + t.feed(
            {"object": "error", "message": "boom", "type": "BadRequestError", "code": 400}
        )
        self.assertEqual(check_stream(events)["error"]["code"], "upstream_error")
