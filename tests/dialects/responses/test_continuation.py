"""
What a WebSocket connection keeps of its turns and what a continued turn
sends: pure, so checked without a socket.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.responses.continuation import (
    ConnectionCache,
    checkToolOutputs,
    continued,
    createBody,
    inputItems,
    warmupEvents,
    warmupResponse,
)
from codexgw.errors import InvalidRequest
from tests.dialects.oracle import check_event, check_response

USER = {"type": "message", "role": "user", "content": "hi"}


class CreateBodyTests(SynchronousTestCase):
    def test_the_envelope_and_the_fields_a_socket_forbids_are_dropped(self) -> None:
        frame = {
            "type": "response.create",
            "model": "m",
            "stream": False,
            "stream_options": {},
            "background": True,
            "stream_id": "s1",
            "input": "hi",
        }
        self.assertEqual(createBody(frame), {"model": "m", "input": "hi", "stream": True})

    def test_input_as_items(self) -> None:
        self.assertEqual(inputItems("hi"), [USER])
        self.assertEqual(inputItems(None), [])
        self.assertEqual(inputItems([USER]), [USER])
        with self.assertRaises(InvalidRequest):
            inputItems(3)


class CacheTests(SynchronousTestCase):
    def test_a_continuation_is_the_history_then_the_new_input(self) -> None:
        cache = ConnectionCache(4, 1 << 20)
        answer = {"type": "message", "role": "assistant", "content": []}
        cache.keep("resp_1", [USER], [answer], 10)
        turn = cache.get("resp_1")
        assert turn is not None
        body = continued({"model": "m", "previous_response_id": "resp_1", "input": "more"}, turn)
        self.assertNotIn("previous_response_id", body)
        self.assertEqual(
            body["input"], [USER, answer, {"type": "message", "role": "user", "content": "more"}]
        )

    def test_past_the_count_the_oldest_is_forgotten(self) -> None:
        cache = ConnectionCache(2, 1 << 20)
        for i in range(3):
            cache.keep(f"r{i}", [], [], 1)
        self.assertEqual([r in cache for r in ("r0", "r1", "r2")], [False, True, True])
        self.assertEqual(cache.bytes, 2)

    def test_past_the_bytes_the_oldest_go_but_the_newest_stays(self) -> None:
        cache = ConnectionCache(10, 100)
        cache.keep("small", [], [], 40)
        cache.keep("big", [], [], 500)
        self.assertNotIn("small", cache)
        self.assertIn("big", cache)
        self.assertEqual(cache.bytes, 500)

    def test_evict(self) -> None:
        cache = ConnectionCache(10, 100)
        cache.keep("r", [], [], 5)
        cache.evict("r")
        cache.evict("never")
        self.assertEqual((len(cache), cache.bytes), (0, 0))


class ToolOutputTests(SynchronousTestCase):
    def test_an_output_that_answers_a_call_passes(self) -> None:
        checkToolOutputs(
            [
                USER,
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                {"type": "custom_tool_call", "call_id": "c2", "name": "g", "input": "x"},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"},
            ]
        )

    def test_an_output_for_no_call_is_refused_as_openai_refuses_it(self) -> None:
        with self.assertRaises(InvalidRequest) as caught:
            checkToolOutputs(
                [USER, {"type": "function_call_output", "call_id": "c9", "output": ""}]
            )
        self.assertEqual(caught.exception.param, "input")
        self.assertEqual(
            caught.exception.message,
            "No tool call found for function call output with call_id c9.",
        )

    def test_a_custom_output_does_not_answer_a_function_call(self) -> None:
        with self.assertRaises(InvalidRequest):
            checkToolOutputs(
                [
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "custom_tool_call_output", "call_id": "c1", "output": ""},
                ]
            )

    def test_compacted_or_referencing_conversations_are_not_checked(self) -> None:
        orphan = {"type": "function_call_output", "call_id": "c1", "output": ""}
        checkToolOutputs([{"type": "compaction", "encrypted_content": "x"}, orphan])
        checkToolOutputs([{"type": "item_reference", "id": "fc_1"}, orphan])


class WarmupTests(SynchronousTestCase):
    def test_a_warmup_is_a_complete_empty_response(self) -> None:
        body = {"model": "m", "instructions": "Be brief.", "tools": [], "store": False}
        events = warmupEvents(warmupResponse("resp_w", body, 1700000000), 1700000000)
        # As the issue and OpenAI shape it: created, then completed; each
        # event and the response valid for the openai and Open Responses models.
        self.assertEqual([e["type"] for e in events], ["response.created", "response.completed"])
        for event in events:
            check_event(event)
        response = events[-1]["response"]
        check_response(response)
        self.assertEqual(response["output"], [])
        self.assertEqual(response["instructions"], "Be brief.")
        self.assertIs(response["store"], False)
