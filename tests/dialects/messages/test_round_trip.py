"""
The Messages spoke composed with itself through the hub: a Messages
request to the hub and back, and a whole tool turn (an Anthropic stream
to the hub, to a Messages client, whose next request goes to the hub and
back to a Messages upstream), keep what the client said and what the
model answered, thinking signatures included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.messages import MESSAGES
from tests.dialects.messages.helpers import (
    check_messages_stream,
    run_fixture,
    stream_bytes,
    translator,
)
from tests.dialects.oracle import check_stream

SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds8a2Cgs9YHAvz1y+Ck7hGQ=="
TOOLS = [
    {
        "name": "exec_command",
        "description": "Run a command.",
        "input_schema": {
            "type": "object",
            "properties": {"cmd": {"type": "string"}},
            "required": ["cmd"],
        },
    }
]


def client_request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": messages,
        "tools": TOOLS,
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "metadata": {"user_id": "user-1"},
    }


def through_hub(client: dict[str, Any]) -> dict[str, Any]:
    """A Messages client's request as a Messages upstream gets it, through the hub."""
    hub = MESSAGES.requestToHub(client)
    return MESSAGES.requestFromHub(hub.body, ChatDialect(), prompt_cache=False).body  # type: ignore[no-any-return]


class RequestRoundTripTests(SynchronousTestCase):
    def test_a_request_to_the_hub_and_back_keeps_what_the_client_said(self) -> None:
        client = client_request(
            [
                {"role": "user", "content": [{"type": "text", "text": "List files."}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Listing."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "exec_command",
                            "input": {"cmd": "ls"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
                        {"type": "text", "text": "Now count them."},
                    ],
                },
            ]
        )
        # Thinking on would be refused mid tool loop without the thinking
        # block (the next test keeps one); this turn asks for none.
        del client["thinking"]
        back = through_hub(client)
        self.assertEqual(back["model"], "claude-sonnet-4-5")
        self.assertEqual(back["max_tokens"], 32000)
        self.assertEqual(back["system"], [{"type": "text", "text": "You are terse."}])
        self.assertEqual(
            back["messages"], [{k: v for k, v in m.items()} for m in client["messages"]]
        )
        self.assertEqual(back["tools"], TOOLS)
        self.assertEqual(back["tool_choice"], {"type": "auto", "disable_parallel_tool_use": True})
        self.assertNotIn("thinking", back)
        self.assertEqual(back["metadata"], {"user_id": "user-1"})
        self.assertIs(back["stream"], True)


class TurnRoundTripTests(SynchronousTestCase):
    def test_a_tool_turn_keeps_the_thinking_block_and_the_ids_for_the_next_request(self) -> None:
        # 1. The upstream answers with thinking, text and a call.
        upstream = MESSAGES.requestFromHub(
            MESSAGES.requestToHub(
                client_request([{"role": "user", "content": "List files."}])
            ).body,
            ChatDialect(),
        )
        hub_events = run_fixture("thinking_tool_use", translator(upstream))
        check_stream(hub_events)
        # 2. The Messages client gets it as a Messages stream.
        client_side = MESSAGES.streamFromHub(
            MESSAGES.requestToHub(client_request([{"role": "user", "content": "List files."}]))
        )
        out = client_side.start()
        for event in hub_events:
            out += client_side.feed(event)
        out += client_side.finish()
        check_messages_stream(out)
        answer = client_side.answer()
        self.assertEqual([b["type"] for b in answer["content"]], ["thinking", "text", "tool_use"])
        self.assertEqual(answer["stop_reason"], "tool_use")
        use = answer["content"][2]
        self.assertEqual(use["id"], "toolu_01A09q90qw90lq917835lq9")
        # 3. The client sends the assistant message back as it came, with the result.
        nxt = client_request(
            [
                {"role": "user", "content": "List files."},
                {"role": "assistant", "content": answer["content"]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use["id"], "content": "a.txt"}
                    ],
                },
            ]
        )
        back = through_hub(nxt)
        self.assertEqual(back["thinking"]["type"], "enabled")
        assistant = back["messages"][1]["content"]
        self.assertEqual(
            assistant,
            [
                {
                    "type": "thinking",
                    "thinking": "The user wants the files listed. I will run ls.",
                    "signature": SIG,
                },
                {"type": "text", "text": "I'll list them."},
                {
                    "type": "tool_use",
                    "id": use["id"],
                    "name": "exec_command",
                    "input": {"cmd": "ls -la"},
                },
            ],
        )
        self.assertEqual(
            back["messages"][2]["content"],
            [{"type": "tool_result", "tool_use_id": use["id"], "content": "a.txt"}],
        )

    def test_a_codex_turn_sends_anthropic_its_thinking_back_unchanged(self) -> None:
        """Responses client on a Messages upstream: the hub's reasoning item is the block."""
        final = check_stream(run_fixture("redacted_thinking"))
        self.assertIn(b"redacted_thinking", stream_bytes("redacted_thinking"))
        body = {
            "model": "claude",
            "input": [{"type": "message", "role": "user", "content": "hi"}, *final["output"]],
        }
        messages = MESSAGES.requestFromHub(body, ChatDialect(), prompt_cache=False).body["messages"]
        self.assertEqual(
            [b["type"] for b in messages[1]["content"]], ["redacted_thinking", "thinking", "text"]
        )
        self.assertEqual(messages[1]["content"][1]["signature"], SIG)


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda t: t.strip())


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating Messages conversations with tool loops, ending with the user."""
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    serial = 0
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        user: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": call_id, "content": draw(_TEXT)}
            for call_id in pending
        ]
        user += [{"type": "text", "text": t} for t in draw(st.lists(_TEXT, max_size=2))]
        if not user:
            user = [{"type": "text", "text": draw(_TEXT)}]
        messages.append({"role": "user", "content": user})
        assistant: list[dict[str, Any]] = [
            {"type": "text", "text": t} for t in draw(st.lists(_TEXT, max_size=2))
        ]
        pending = []
        for _ in range(draw(st.integers(min_value=0 if assistant else 1, max_value=3))):
            serial += 1
            pending.append(f"toolu_{serial}")
            assistant.append(
                {
                    "type": "tool_use",
                    "id": pending[-1],
                    "name": "exec_command",
                    "input": {"cmd": draw(_TEXT)},
                }
            )
        messages.append({"role": "assistant", "content": assistant})
    last: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": call_id, "content": draw(_TEXT)}
        for call_id in pending
    ]
    messages.append({"role": "user", "content": last or [{"type": "text", "text": draw(_TEXT)}]})
    return messages


class ConversationRoundTripTests(SynchronousTestCase):
    @settings(max_examples=60, deadline=None)
    @given(messages=conversations())
    def test_any_conversation_to_the_hub_and_back_is_the_same_conversation(
        self, messages: list[dict[str, Any]]
    ) -> None:
        client = client_request(messages)
        del client["thinking"]
        self.assertEqual(through_hub(client)["messages"], messages)
