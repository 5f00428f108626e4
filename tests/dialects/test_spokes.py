"""
Spokes compose through the hub: a Chat request taken to the hub and back,
and a Chat stream taken to the hub's events and back, keep what the client
said and what the model answered. That is what any bridge is: one spoke's
parts to the hub, another's from it.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects import HUB, SPOKES
from codexgw.dialects.chat import CHAT
from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.messages import MESSAGES
from tests.dialects.oracle import check_stream


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class SpokeTests(SynchronousTestCase):
    def test_every_spoke_is_named_by_its_wire_api_and_is_not_the_hub(self) -> None:
        self.assertEqual(SPOKES, {"chat": CHAT, "messages": MESSAGES})
        self.assertNotIn(HUB, SPOKES)
        self.assertEqual(CHAT.path, "/chat/completions")
        self.assertEqual(MESSAGES.path, "/messages")

    def test_a_request_to_the_hub_and_back_keeps_what_the_client_said(self) -> None:
        client = {
            "model": "m",
            "stream": True,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Add 2 and 2."},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "add",
                        "parameters": {"type": "object", "properties": {"a": {"type": "number"}}},
                    },
                }
            ],
        }
        hub = CHAT.requestToHub(client)
        back = CHAT.requestFromHub(hub.body, ChatDialect())
        self.assertEqual(back.body["model"], "m")
        self.assertEqual(
            [(m["role"], m["content"]) for m in back.body["messages"]],
            [("system", "Be brief."), ("user", "Add 2 and 2.")],
        )
        self.assertEqual([t["function"]["name"] for t in back.body["tools"]], ["add"])

    def test_a_stream_to_the_hub_and_back_keeps_the_answer(self) -> None:
        client = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        toHub = CHAT.requestToHub(client)
        upstream = CHAT.requestFromHub(toHub.body, ChatDialect())
        up = CHAT.streamToHub(upstream, model="m")
        down = CHAT.streamFromHub(toHub)
        chunks = [
            chunk({"role": "assistant", "content": "It is"}),
            chunk({"content": " 4."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 2}'},
                        }
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ]
        hubEvents = up.start()
        for c in chunks:
            hubEvents += up.feed(c)
        hubEvents += up.finish()
        check_stream(hubEvents)  # the hub's stream is a valid Responses stream
        out: list[dict[str, Any]] = []
        for event in hubEvents:
            out += down.feed(event)
        answer = down.answer()
        message = answer["choices"][0]["message"]
        self.assertEqual(message["content"], "It is 4.")
        self.assertEqual(message["tool_calls"][0]["function"]["name"], "add")
        self.assertEqual(message["tool_calls"][0]["function"]["arguments"], '{"a": 2}')
        self.assertEqual(answer["choices"][0]["finish_reason"], "tool_calls")
        self.assertTrue(down.done)
