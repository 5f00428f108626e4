"""
Tests for L{codexgw.dialects.messages.stream_to_hub}: Anthropic Messages
stream events in, Responses events out, checked against recorded-shape
streams, golden event lists and the external oracles in
L{tests.dialects.oracle}.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.messages.stream_to_hub import map_usage, message_as_event
from codexgw.dialects.messages.thinking import unseal_block
from tests.dialects.messages.helpers import (
    STREAMS,
    feed_all,
    request,
    run_fixture,
    run_pieces,
    stream_bytes,
    translator,
)
from tests.dialects.oracle import check_stream

FIXTURE_NAMES = sorted(n[:-4] for n in os.listdir(STREAMS) if n.endswith(".sse"))
REGENERATE = os.environ.get("CODEXGW_REGENERATE") == "1"


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def items(response: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in response["output"] if i["type"] == kind]


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}


def text_block(index: int, text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        },
        {"type": "content_block_stop", "index": index},
    ]


def end(reason: str = "end_turn") -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]


class GoldenStreamTests(SynchronousTestCase):
    """Every Messages fixture, against its golden events and the oracles."""

    def test_every_fixture_matches_its_golden_events_and_the_oracles(self) -> None:
        self.assertEqual(
            FIXTURE_NAMES,
            [
                "max_tokens",
                "midstream_error",
                "parallel_tool_use",
                "redacted_thinking",
                "text",
                "thinking_tool_use",
            ],
        )
        for name in FIXTURE_NAMES:
            events = run_fixture(name)
            check_stream(events)
            golden = os.path.join(STREAMS, name + ".events.json")
            if REGENERATE:
                with open(golden, "wb") as f:
                    f.write(orjson.dumps(events, option=orjson.OPT_INDENT_2) + b"\n")
            with open(golden) as f:
                self.assertEqual(json.loads(orjson.dumps(events)), json.load(f), name)


class FixtureTests(SynchronousTestCase):
    def test_text_is_one_message_and_usage_counts_the_cache_as_input(self) -> None:
        final = check_stream(run_fixture("text"))
        self.assertEqual(final["status"], "completed")
        [message] = final["output"]
        self.assertEqual(message["content"][0]["text"], "Hello, world — ünïcode ✓")
        self.assertEqual(
            final["usage"],
            {
                "input_tokens": 120 + 64 + 16,
                "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 16},
                "output_tokens": 15,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 215,
            },
        )

    def test_thinking_becomes_reasoning_whose_encrypted_content_is_the_whole_block(self) -> None:
        final = check_stream(run_fixture("thinking_tool_use"))
        reasoning, message, call = final["output"]
        thought = "The user wants the files listed. I will run ls."
        self.assertEqual(reasoning["summary"], [{"type": "summary_text", "text": thought}])
        self.assertEqual(
            unseal_block(reasoning["encrypted_content"]),
            {
                "type": "thinking",
                "thinking": thought,
                "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds8a2Cgs9YHAvz1y+Ck7hGQ==",
            },
        )
        self.assertEqual(message["content"][0]["text"], "I'll list them.")
        self.assertEqual(call["call_id"], "toolu_01A09q90qw90lq917835lq9")
        self.assertEqual(call["name"], "exec_command")
        self.assertEqual(json.loads(call["arguments"]), {"cmd": "ls -la"})

    def test_parallel_tool_use_maps_namespaced_and_custom_names_back(self) -> None:
        final = check_stream(run_fixture("parallel_tool_use"))
        self.assertEqual(
            [(i["type"], i.get("namespace"), i["name"], i["call_id"]) for i in final["output"]],
            [
                ("function_call", None, "exec_command", "toolu_01ParallelA"),
                ("function_call", None, "view_image", "toolu_01ParallelB"),
                ("function_call", "multi_agent_v1", "close_agent", "toolu_01ParallelC"),
                ("custom_tool_call", None, "apply_patch", "toolu_01ParallelD"),
            ],
        )
        self.assertEqual(json.loads(final["output"][1]["arguments"]), {"path": "/tmp/ä.png"})
        self.assertEqual(final["output"][3]["input"], "*** Begin Patch\n*** End Patch\n")

    def test_max_tokens_is_incomplete_max_output_tokens(self) -> None:
        final = check_stream(run_fixture("max_tokens"))
        self.assertEqual(final["status"], "incomplete")
        self.assertEqual(final["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertEqual(final["output"][0]["status"], "incomplete")

    def test_an_error_event_fails_and_abandons_the_half_message(self) -> None:
        events = run_fixture("midstream_error")
        final = check_stream(events)
        self.assertEqual(final["status"], "failed")
        self.assertEqual(final["error"], {"code": "server_is_overloaded", "message": "Overloaded"})
        self.assertEqual(final["output"], [])
        self.assertNotIn("response.output_item.done", types(events))

    def test_redacted_thinking_is_kept_opaque_and_each_block_is_its_own_item(self) -> None:
        final = check_stream(run_fixture("redacted_thinking"))
        redacted, visible, message = final["output"]
        self.assertEqual(redacted["summary"], [])
        block = unseal_block(redacted["encrypted_content"])
        assert block is not None
        self.assertEqual(block["type"], "redacted_thinking")
        self.assertTrue(block["data"].startswith("EmwKAhgBEgy3va3p"))
        visible_block = unseal_block(visible["encrypted_content"])
        assert visible_block is not None
        self.assertEqual(visible_block["thinking"], "Now the visible part.")
        self.assertEqual(message["content"][0]["text"], "Done.")


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
        data = stream_bytes("parallel_tool_use")
        self.assertIn("ä".encode(), data)
        self.assertEqual(
            run_pieces([data[i : i + 1] for i in range(len(data))]),
            run_fixture("parallel_tool_use"),
        )


class TranslatorTests(SynchronousTestCase):
    def test_the_translator_provides_the_stream_translator_interface(self) -> None:
        self.assertTrue(verifyObject(IStreamTranslator, translator()))
        self.assertTrue(verifyObject(IStreamTranslator, MESSAGES.streamToHub(request(), model="m")))

    def test_exactly_one_terminal_event_and_nothing_after_it(self) -> None:
        t = translator()
        events = feed_all(t, [START, *text_block(0, "x"), *end()])
        self.assertEqual(types(events)[-1], "response.completed")
        self.assertEqual(types(events).count("response.completed"), 1)
        self.assertTrue(t.done)
        self.assertEqual(t.feed(START), [])
        self.assertEqual(t.finish(), [])
        self.assertEqual(t.fail("x", "y"), [])

    def test_a_stream_cut_before_message_stop_fails_rather_than_completing(self) -> None:
        t = translator()
        events = t.start() + t.feed(START) + t.feed(text_block(0, "half")[0])
        events += t.feed(text_block(0, "half")[1]) + t.finish()
        final = check_stream(events)
        self.assertEqual(final["status"], "failed")
        self.assertEqual(final["error"]["code"], "upstream_stream_incomplete")
        self.assertEqual(final["output"], [])

    def test_a_cut_inside_a_tool_call_never_closes_the_call(self) -> None:
        t = translator()
        events = feed_all(
            t,
            [
                START,
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "exec_command",
                        "input": {},
                    },
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": '{"cmd": "l'},
                },
            ],
        )
        final = check_stream(events)
        self.assertEqual(final["status"], "failed")
        self.assertNotIn("response.output_item.done", types(events))

    def test_fail_abandons_open_items_and_carries_the_code(self) -> None:
        t = translator()
        events = t.start() + t.feed(START) + t.feed(text_block(0, "x")[0])
        events += t.feed(text_block(0, "x")[1]) + t.fail("upstream_timeout", "slow")
        final = check_stream(events)
        self.assertEqual(final["error"], {"code": "upstream_timeout", "message": "slow"})
        self.assertEqual(t.failure, {"code": "upstream_timeout", "message": "slow"})

    def test_stop_reasons(self) -> None:
        for reason, status, details in [
            ("end_turn", "completed", None),
            ("stop_sequence", "completed", None),
            ("tool_use", "completed", None),
            ("pause_turn", "completed", None),
            ("max_tokens", "incomplete", {"reason": "max_output_tokens"}),
            ("model_context_window_exceeded", "incomplete", {"reason": "max_output_tokens"}),
            ("refusal", "incomplete", {"reason": "content_filter"}),
        ]:
            final = check_stream(feed_all(translator(), [START, *text_block(0, "x"), *end(reason)]))
            self.assertEqual(
                (final["status"], final["incomplete_details"]), (status, details), reason
            )

    def test_usage_is_cumulative_the_last_message_delta_counts(self) -> None:
        t = translator()
        deltas = [
            {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 2}},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 9, "input_tokens": 7, "cache_read_input_tokens": None},
            },
        ]
        final = check_stream(
            feed_all(t, [START, *text_block(0, "x"), *deltas, {"type": "message_stop"}])
        )
        self.assertEqual(final["usage"]["output_tokens"], 9)
        self.assertEqual(final["usage"]["input_tokens"], 7)
        self.assertEqual(t.usage, final["usage"])

    def test_map_usage_counts_only_integers(self) -> None:
        self.assertEqual(map_usage({"input_tokens": "x", "output_tokens": True})["total_tokens"], 0)
        self.assertEqual(map_usage(None)["input_tokens_details"]["cached_tokens"], 0)

    def test_an_error_event_of_rate_limit_or_context_maps_to_codex_codes(self) -> None:
        for error, code in [
            ({"type": "rate_limit_error", "message": "slow down"}, "rate_limit_exceeded"),
            (
                {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens"},
                "context_length_exceeded",
            ),
            ({"type": "api_error", "message": "Internal server error"}, "api_error"),
        ]:
            final = check_stream(feed_all(translator(), [START, {"type": "error", "error": error}]))
            self.assertEqual(final["error"]["code"], code)

    def test_a_whole_message_is_played_as_the_stream_it_stands_for(self) -> None:
        whole = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "S1"},
                {"type": "text", "text": "Calling."},
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "exec_command",
                    "input": {"cmd": "ls"},
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 4, "output_tokens": 6},
        }
        t = translator()
        event = MESSAGES.wholeToEvent(whole)
        events = t.start() + t.feed(event) + t.finish()
        final = check_stream(events)
        self.assertEqual(final["status"], "completed")
        reasoning, message, call = final["output"]
        self.assertEqual(unseal_block(reasoning["encrypted_content"])["signature"], "S1")  # type: ignore[index]
        self.assertEqual(message["content"][0]["text"], "Calling.")
        self.assertEqual(json.loads(call["arguments"]), {"cmd": "ls"})
        self.assertEqual(final["usage"]["total_tokens"], 10)
        self.assertRaises(ValueError, message_as_event, {"type": "error"})

    def test_server_tool_blocks_and_unknown_events_are_skipped(self) -> None:
        events = feed_all(
            translator(),
            [
                START,
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {
                        "type": "server_tool_use",
                        "id": "srvtoolu_1",
                        "name": "web_search",
                        "input": {},
                    },
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                },
                {"type": "content_block_stop", "index": 0},
                {"type": "something_new"},
                *text_block(1, "found it"),
                *end(),
            ],
        )
        final = check_stream(events)
        self.assertEqual([i["type"] for i in final["output"]], ["message"])

    def test_a_raising_event_loses_none_of_the_events_before_it(self) -> None:
        t = translator()
        events = t.start() + t.feed(START)
        events += t.feed(text_block(0, "x")[0]) + t.feed(text_block(0, "x")[1])
        self.assertRaises(KeyError, t.feed, {"type": "content_block_delta"})
        events += t.fail("upstream_protocol_error", "bad event")
        check_stream(events)

    def test_keepalive_is_a_real_in_progress_event(self) -> None:
        t = translator()
        events = t.start() + t.keepalive() + t.feed(START) + t.keepalive()
        self.assertEqual(types(events).count("response.in_progress"), 3)


class SilentThinkingTests(SynchronousTestCase):
    def test_a_thinking_block_with_only_a_signature_is_still_an_item(self) -> None:
        for reasoning_as in ("text", "summary", "both"):
            events = feed_all(
                translator(reasoning_as=reasoning_as),
                [
                    START,
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "signature_delta", "signature": "S"},
                    },
                    {"type": "content_block_stop", "index": 0},
                    *text_block(1, "ok"),
                    *end(),
                ],
            )
            final = check_stream(events)
            reasoning, _ = final["output"]
            block = unseal_block(reasoning["encrypted_content"])
            self.assertEqual(block, {"type": "thinking", "thinking": "", "signature": "S"})
            deltas = [
                e for e in events if e["type"].endswith("text.delta") and "reasoning" in e["type"]
            ]
            self.assertEqual(deltas, [])


class EveryPrefixTests(SynchronousTestCase):
    def test_a_stream_that_breaks_or_closes_anywhere_is_still_a_valid_hub_stream(self) -> None:
        from codexgw.stream.sse import SSEDecoder

        for name in FIXTURE_NAMES:
            upstream = [orjson.loads(e.data) for e in SSEDecoder().feed(stream_bytes(name))]
            for cut in range(len(upstream) + 1):
                for end_with in ("fail", "finish"):
                    t = translator()
                    events = t.start()
                    for event in upstream[:cut]:
                        events += t.feed(event)
                    events += (
                        t.fail("upstream_timeout", "cut") if end_with == "fail" else t.finish()
                    )
                    final = check_stream(events)
                    if final["status"] == "failed":
                        done = [
                            e["item"]["id"]
                            for e in events
                            if e["type"] == "response.output_item.done"
                        ]
                        self.assertEqual([i["id"] for i in final["output"]], done, (name, cut))
