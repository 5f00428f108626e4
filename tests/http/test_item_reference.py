"""
C{item_reference} input items through the whole gateway, without sockets.

On a bridged turn a reference becomes the stored item it names before the
request is translated, so the Chat upstream receives full items; an unknown
id, another key's item and any reference without a store backend are
OpenAI's 400 for an unknown item. A relayed request is sent untouched.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import parse
from codexgw.errors import InvalidRequest
from codexgw.state.conversation import resolveReferences, responseIdOf
from codexgw.state.store import StoredResponse
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.fakes.store import MemoryStore
from tests.harness import Harness, makeConfig

SSE = {b"content-type": b"text/event-stream"}
RESPONSES = b"/v1/responses"
KEYS = {"auth": {"keys": [{"name": "alice", "key": "ka"}, {"name": "bob", "key": "kb"}]}}
ALICE = {b"authorization": b"Bearer ka"}
BOB = {b"authorization": b"Bearer kb"}
TOOLS = [
    {
        "type": "function",
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
]
USER = {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}


def textAndCall() -> bytes:
    """A Chat stream that says something, then calls C{weather}."""
    return b"".join(
        [
            chatChunk({"role": "assistant", "content": "Let me check."}),
            chatChunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        }
                    ]
                }
            ),
            chatChunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )


def unknownItem(item_id: str, stored: bool = True) -> dict[str, Any]:
    message = f"Item with id '{item_id}' not found."
    if not stored:
        message += (
            " Items are not persisted when `store` is set to false. Try again with"
            " `store` set to true, or remove this item from your input."
        )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "input",
            "code": None,
        }
    }


class BridgedReferenceTests(SynchronousTestCase):
    """A Chat upstream behind the gateway, turns kept in a memory store."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.h = Harness(makeConfig(KEYS), store=self.store)

    def post(
        self, body: dict[str, Any], headers: dict[bytes, bytes] = ALICE, answer: bytes = b""
    ) -> tuple[int, Any, list[Any]]:
        """The status and body the client gets, and the bodies sent upstream."""
        before = len(self.h.sent)
        client = self.h.connect()
        client.post(RESPONSES, body, headers)
        sent = self.h.sent[before:]
        for request in sent:
            request.respond(200, SSE, answer or b"".join(textStream(["Sunny."])))
        status, headers, raw = client.response()
        answer = orjson.loads(raw) if headers[b"content-type"] == b"application/json" else raw
        return status, answer, [orjson.loads(r.body) for r in sent]

    def firstTurn(self) -> dict[str, Any]:
        status, response, _ = self.post(
            {"model": "m", "input": [USER], "tools": TOOLS}, answer=textAndCall()
        )
        self.assertEqual(status, 200, response)
        self.assertEqual([i["type"] for i in response["output"]], ["message", "function_call"])
        return response

    def test_referenced_message_and_call_reach_the_upstream_as_full_items(self) -> None:
        first = self.firstTurn()
        message, call = first["output"]
        status, second, [chat] = self.post(
            {
                "model": "m",
                "tools": TOOLS,
                "input": [
                    USER,
                    {"type": "item_reference", "id": message["id"]},
                    {"type": "item_reference", "id": call["id"]},
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "22C"},
                ],
            }
        )
        self.assertEqual(status, 200, second)
        self.assertEqual(
            chat["messages"],
            [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
            ],
        )
        # The turn is stored with the full items: a later turn's history
        # (previous_response_id) replays them, not the references.
        record = self.store.records[second["id"]]
        self.assertEqual(record.input_items[1:3], [message, call])
        _, _, [third] = self.post(
            {"model": "m", "input": "Thanks!", "previous_response_id": second["id"]}
        )
        self.assertEqual(
            [m["role"] for m in third["messages"]],
            ["user", "assistant", "tool", "assistant", "user"],
        )
        self.assertEqual(third["messages"][1]["content"], "Let me check.")

    def test_a_reference_in_openais_shorthand_is_resolved(self) -> None:
        message = self.firstTurn()["output"][0]
        status, _, [chat] = self.post({"model": "m", "input": [USER, {"id": message["id"]}, USER]})
        self.assertEqual(status, 200)
        self.assertEqual(chat["messages"][1], {"role": "assistant", "content": "Let me check."})

    def test_an_input_item_of_a_stored_turn_is_resolved(self) -> None:
        first = self.firstTurn()
        [user] = self.store.records[first["id"]].input_items
        self.assertEqual(user["id"], "msg_" + first["id"][5:] + "_in0", "named after its turn")
        status, _, [chat] = self.post(
            {"model": "m", "input": [{"type": "item_reference", "id": user["id"]}]}
        )
        self.assertEqual(status, 200)
        self.assertEqual(chat["messages"], [{"role": "user", "content": "Weather in Paris?"}])

    def test_an_item_the_input_already_holds_is_openais_duplicate_400(self) -> None:
        first = self.firstTurn()
        message = first["output"][0]
        reference = {"type": "item_reference", "id": message["id"]}
        for body in (
            # In the conversation previous_response_id rebuilds...
            {"model": "m", "previous_response_id": first["id"], "input": [USER, reference]},
            # ...or twice in this input.
            {"model": "m", "input": [USER, reference, reference]},
        ):
            status, error, sent = self.post(body)
            self.assertEqual(
                (status, error, sent),
                (
                    400,
                    {
                        "error": {
                            "message": f"Duplicate item found with id {message['id']}. "
                            "Remove duplicate items from your input and try again.",
                            "type": "invalid_request_error",
                            "param": "input",
                            "code": None,
                        }
                    },
                    [],
                ),
            )

    def test_an_unknown_id_is_openais_400_and_nothing_is_sent(self) -> None:
        self.firstTurn()
        for item_id in ("msg_nope", "msg_0123456789abcdef_1", "fc_" + "0" * 32 + "_2"):
            status, body, sent = self.post(
                {"model": "m", "input": [USER, {"type": "item_reference", "id": item_id}]}
            )
            self.assertEqual((status, body, sent), (400, unknownItem(item_id), []))

    def test_store_false_is_told_why_as_openai_tells_it(self) -> None:
        status, body, sent = self.post(
            {"model": "m", "store": False, "input": [{"type": "item_reference", "id": "rs_x_1"}]}
        )
        self.assertEqual((status, body, sent), (400, unknownItem("rs_x_1", stored=False), []))

    def test_another_keys_item_is_an_unknown_one(self) -> None:
        message = self.firstTurn()["output"][0]
        body = {"model": "m", "input": [USER, {"type": "item_reference", "id": message["id"]}]}
        status, foreign, sent = self.post(body, headers=BOB)
        self.assertEqual((status, foreign, sent), (400, unknownItem(message["id"]), []))
        self.assertNotIn("Let me check", orjson.dumps(foreign).decode())
        status, _, _ = self.post(body)
        self.assertEqual(status, 200, "its owner still reaches it")

    def test_a_reference_without_a_string_id_names_the_field(self) -> None:
        status, body, sent = self.post(
            {"model": "m", "input": [USER, {"type": "item_reference", "id": 7}]}
        )
        self.assertEqual((status, body["error"]["param"], sent), (400, "input[1].id", []))

    def test_a_vercel_ai_sdk_tool_loop_second_step(self) -> None:
        """
        The body @ai-sdk/openai sends for a tool loop's second step (store
        left to its default, true): the system prompt as a developer
        message, earlier output items by reference, the tool's result.
        """
        status, first, _ = self.post(
            {
                "model": "m",
                "input": [{"role": "developer", "content": "You are terse."}, USER],
                "tools": TOOLS,
                "tool_choice": "auto",
                "stream": True,
            },
            answer=textAndCall(),
        )
        self.assertEqual(status, 200)
        self.assertIn(b"event: response.completed", first)
        [record] = self.store.records.values()
        message, call = record.response["output"]
        status, _, [chat] = self.post(
            {
                "model": "m",
                "input": [
                    {"role": "developer", "content": "You are terse."},
                    USER,
                    {"type": "item_reference", "id": message["id"]},
                    {"type": "item_reference", "id": call["id"]},
                    {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": '{"temperature":22}',
                    },
                ],
                "tools": TOOLS,
                "tool_choice": "auto",
                "stream": True,
                "stream_options": {"include_obfuscation": False},
            }
        )
        self.assertEqual(status, 200)
        self.assertEqual(
            [m["role"] for m in chat["messages"]], ["system", "user", "assistant", "tool"]
        )
        self.assertEqual(chat["messages"][2]["tool_calls"][0]["function"]["name"], "weather")


class NoStoreTests(SynchronousTestCase):
    def test_any_reference_is_an_unknown_item(self) -> None:
        h = Harness(makeConfig())
        client = h.connect()
        client.post(RESPONSES, {"model": "m", "input": [{"type": "item_reference", "id": "m_a_1"}]})
        status, _, raw = client.response()
        self.assertEqual((status, orjson.loads(raw), h.sent), (400, unknownItem("m_a_1"), []))


class RelayedTests(SynchronousTestCase):
    def test_a_relayed_request_is_sent_untouched(self) -> None:
        h = Harness(
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
        raw = orjson.dumps(
            {
                "model": "m",
                "input": [USER, {"type": "item_reference", "id": "msg_abc"}, {"id": "fc_def"}],
            }
        )
        client = h.connect()
        client.send(b"POST", RESPONSES, raw)
        [sent] = h.sent
        self.assertEqual(sent.body, raw)


class ResolveTests(SynchronousTestCase):
    """L{resolveReferences} on its own."""

    def resolve(self, store: MemoryStore, items: list[dict[str, Any]]) -> Any:
        return self.successResultOf(
            Deferred.fromCoroutine(resolveReferences(store, items, "alice"))
        )

    def test_the_response_is_found_from_the_items_id(self) -> None:
        self.assertEqual(responseIdOf("msg_abc_3"), "resp_abc")
        self.assertEqual(responseIdOf("fc_a_b_12"), "resp_a_b")
        self.assertEqual(responseIdOf("item_abc_in4"), "resp_abc")
        for other in ("msg_abc", "msg_abc_x", "abc", "msg__3", "msg_abc_in"):
            self.assertIsNone(responseIdOf(other), other)

    def test_an_input_item_of_the_named_response_is_found(self) -> None:
        store = MemoryStore()
        item = {"id": "msg_abc_in0", "type": "message", "role": "user", "content": "hi"}
        store.records["resp_abc"] = StoredResponse(
            id="resp_abc", owner="alice", response={"output": []}, input_items=[item]
        )
        self.assertEqual(self.resolve(store, [{"id": "msg_abc_in0"}]), [item])

    def test_items_without_references_are_returned_as_they_are(self) -> None:
        items = [{"type": "message", "role": "user", "content": "hi"}]
        self.assertIs(self.resolve(MemoryStore(), items), items)

    def test_the_store_is_asked_once_per_response(self) -> None:
        store = MemoryStore()
        said = {"id": "msg_a_1", "type": "message", "role": "assistant", "content": []}
        store.records["resp_a"] = StoredResponse(
            id="resp_a", owner="alice", response={"output": [said]}, input_items=[]
        )
        asked: list[str] = []
        get = store.get

        def counted(rid: str) -> Any:
            asked.append(rid)
            return get(rid)

        store.get = counted  # type: ignore[method-assign]
        failure = self.failureResultOf(
            Deferred.fromCoroutine(
                resolveReferences(store, [{"id": "msg_a_1"}, {"id": "msg_a_2"}], "alice")
            ),
            InvalidRequest,
        )
        self.assertEqual(failure.value.message, "Item with id 'msg_a_2' not found.")
        self.assertEqual(asked, ["resp_a"])
