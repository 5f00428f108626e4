"""
The Node SDKs apps build on (installed by scripts/install-node-sdks) talk
to the gateway's Responses API, bridged onto a scripted Chat Completions
upstream: the openai Node SDK's C{responses.stream} + C{finalResponse}, and
the Vercel AI SDK's C{generateText} (a tool over several steps; a two-turn
chat replaying C{response.messages}) on its openai provider's defaults —
the Responses API with C{store: true}, so later requests carry
C{item_reference} items that the gateway resolves from its response store.

Each test runs one script of C{tests/integration/node/} as a child process
and reads the JSON line it prints.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.state.store import SQLiteStore
from tests.fakes.chat_upstream import chatChunk
from tests.integration.peers import Collect, installed
from tests.integration.test_integration import LiveGateway
from tests.paths import REPO

SCRIPTS = os.path.join(REPO, "tests", "integration", "node")


def nodeSdks() -> str:
    """The SDKs' directory; installed on demand so a fresh checkout needs no extra step."""
    return installed("NODE_SDKS", "install-node-sdks")


async def runNode(test: TestCase, script: str, base: str, *args: str, timeout: float = 60) -> Any:
    """
    Run C{node <script> <base> <args...>}, killed after C{timeout} seconds;
    fail the test unless it exits 0, and return the JSON its last stdout
    line holds.
    """
    proto = Collect()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.path.abspath(test.mktemp()),
        "NODE_SDKS": nodeSdks(),
        "NO_COLOR": "1",
    }
    path = os.path.join(SCRIPTS, script)
    process = reactor.spawnProcess(
        proto, "node", ["node", path, base, *args], env=env, path=SCRIPTS
    )
    process.closeStdin()
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = await proto.ended
    if killer.active():
        killer.cancel()
    out, err = proto.out.decode(errors="replace"), proto.err.decode(errors="replace")
    test.assertEqual(code, 0, f"{script} failed:\nstdout:{out[-3000:]}\nstderr:{err[-4000:]}")
    lines = out.strip().splitlines()
    test.assertTrue(lines, f"{script} printed nothing; stderr:{err[-4000:]}")
    return orjson.loads(lines[-1])


def reply(
    reasoning: str = "",
    text: str = "",
    toolCall: tuple[str, str, str] | None = None,
) -> Any:
    """
    A script step answering, in the form asked for (SSE when the request
    streams, else one JSON completion), as a DeepSeek-style upstream does:
    C{reasoning} as C{reasoning_content}, then C{text}, then a C{toolCall}
    C{(id, name, arguments)} with its arguments split mid-string.
    """

    def words(s: str) -> list[str]:
        return [w for w in s.replace(" ", " \0").split("\0") if w]

    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}

    def step(request: Request, body: Any) -> Any:
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if reasoning:
                message["reasoning_content"] = reasoning
            if toolCall:
                callId, name, arguments = toolCall
                message["tool_calls"] = [
                    {
                        "id": callId,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ]
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": "fake-model",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if toolCall else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        chunks = [chatChunk({"role": "assistant", "content": ""})]
        chunks += [chatChunk({"reasoning_content": w}) for w in words(reasoning)]
        chunks += [chatChunk({"content": w}) for w in words(text)]
        if toolCall:
            callId, name, arguments = toolCall
            half = len(arguments) // 2
            first = {
                "index": 0,
                "id": callId,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            chunks += [
                chatChunk({"tool_calls": [first]}),
                chatChunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]}
                ),
                chatChunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}
                ),
            ]
        chunks.append(chatChunk({}, "tool_calls" if toolCall else "stop"))
        chunks.append(chatChunk({}, choices=[], usage=usage))
        chunks.append(b"data: [DONE]\n\n")
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"".join(chunks))
        request.finish()
        return NOT_DONE_YET

    return step


def liveWithStore(test: TestCase) -> LiveGateway:
    """A gateway keeping bridged responses (SQLite), as C{item_reference} needs."""
    path = os.path.abspath(test.mktemp()) + ".sqlite3"
    return LiveGateway(test, store=SQLiteStore(reactor, path, 3600, 8 * 1024 * 1024))


def chats(live: LiveGateway) -> list[Any]:
    """The Chat Completions requests the upstream received, in order."""
    return [r.body for r in live.upstream.received if r.path == b"/v1/chat/completions"]


def references(sent: Any) -> list[str]:
    """The ids of the C{item_reference} items in a Responses request the SDK sent."""
    return [i["id"] for i in sent["body"]["input"] if i.get("type") == "item_reference"]


def outputIds(output: list[Any], kind: str) -> list[str]:
    """The ids of a response's output items of one type."""
    return [item["id"] for item in output if item["type"] == kind]


def contentText(content: Any) -> str:
    """A Chat message's content as text, whether a string or a list of parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class OpenAINodeSDKTests(TestCase):
    timeout = 180

    async def test_responses_stream_final_response_carries_reasoning_and_text(self) -> None:
        live = liveWithStore(self)
        thought = "Rayleigh scattering favours short wavelengths."
        answer = "Because air scatters blue light more than red."
        live.upstream.script.append(reply(reasoning=thought, text=answer))
        out = await runNode(self, "openai_responses_stream.mjs", live.base)

        self.assertEqual(out["status"], "completed")
        self.assertEqual(out["output_text"], answer)
        self.assertEqual(out["deltas"], answer)
        self.assertEqual(out["output_types"], ["reasoning", "message"])
        # The thinking arrives as the summary asked for, and as reasoning text.
        self.assertEqual(out["reasoning_summary"], thought)
        self.assertEqual(out["summary_deltas"], thought)
        self.assertEqual(out["reasoning_content"], thought)
        self.assertEqual(out["reasoning_deltas"], thought)
        self.assertEqual(out["events"][0], "response.created")
        self.assertEqual(out["events"][-1], "response.completed")
        self.assertIn("response.output_text.done", out["events"])
        self.assertEqual(out["usage"]["total_tokens"], 18)
        [chat] = chats(live)
        self.assertTrue(chat["stream"])
        self.assertEqual(chat["messages"][-1]["role"], "user")
        self.assertIn("Why is the sky blue?", contentText(chat["messages"][-1]["content"]))


WEATHER = {"city": "Paris", "temperature": 21, "sky": "clear"}
TWO_TURNS = [
    ("user", "My name is Ada. Say hello."),
    ("assistant", "Hello, Ada!"),
    ("user", "What is my name?"),
]


def chatTurn(request: Any) -> list[tuple[str, str]]:
    """A Chat request's conversation (system messages aside) as (role, text)."""
    return [
        (m["role"], contentText(m.get("content")))
        for m in request["messages"]
        if m["role"] != "system"
    ]


class VercelAISDKTests(TestCase):
    timeout = 180

    async def runToolSteps(
        self, reasoning: tuple[str, str] = ("", ""), preamble: str = ""
    ) -> tuple[Any, LiveGateway]:
        """
        Run C{generateText} with the weather tool against an upstream that
        calls it (after C{reasoning[0]} and saying C{preamble}), then answers;
        check what every SDK step saw and what the upstream was sent, and
        return the script's report.
        """
        live = liveWithStore(self)
        live.upstream.script += [
            reply(
                reasoning=reasoning[0],
                text=preamble,
                toolCall=("call_weather_1", "weather", orjson.dumps({"city": "Paris"}).decode()),
            ),
            reply(reasoning=reasoning[1], text="It is 21 degrees and clear in Paris."),
        ]
        out = await runNode(self, "vercel_tool_steps.mjs", live.base)

        self.assertEqual(out["text"], "It is 21 degrees and clear in Paris.")
        self.assertEqual(out["executed"], ["Paris"])
        first, second = out["steps"]
        self.assertEqual(first["finish_reason"], "tool-calls")
        self.assertEqual(first["text"], preamble)
        self.assertEqual(
            first["tool_calls"],
            [{"id": "call_weather_1", "name": "weather", "input": {"city": "Paris"}}],
        )
        self.assertEqual(
            first["tool_results"],
            [{"id": "call_weather_1", "name": "weather", "output": WEATHER}],
        )
        self.assertEqual(second["finish_reason"], "stop")
        self.assertEqual(second["text"], "It is 21 degrees and clear in Paris.")
        self.assertEqual([s["status"] for s in out["sent"]], [200, 200])
        self.assertEqual((out["usage"]["inputTokens"], out["usage"]["outputTokens"]), (22, 14))
        # The SDK's second step sends the call and its output inline.
        kinds = [i.get("type") for i in out["sent"][1]["body"]["input"]]
        self.assertIn("function_call", kinds)
        self.assertIn("function_call_output", kinds)

        requests = chats(live)
        self.assertEqual(len(requests), 2)
        self.assertEqual([t["function"]["name"] for t in requests[0]["tools"]], ["weather"])
        # The second step's request carries the call and its result.
        messages = requests[1]["messages"]
        turn = [m for m in messages if m["role"] != "system"]
        self.assertEqual([m["role"] for m in turn], ["user", "assistant", "tool"])
        self.assertIn("weather in Paris", contentText(turn[0]["content"]))
        self.assertEqual(contentText(turn[1].get("content")), preamble)
        [call] = turn[1]["tool_calls"]
        self.assertEqual((call["id"], call["function"]["name"]), ("call_weather_1", "weather"))
        self.assertEqual(orjson.loads(call["function"]["arguments"]), {"city": "Paris"})
        self.assertEqual(turn[2]["tool_call_id"], "call_weather_1")
        self.assertEqual(orjson.loads(contentText(turn[2]["content"])), WEATHER)
        return out, live

    async def test_generate_text_runs_a_tool_over_several_steps(self) -> None:
        out, live = await self.runToolSteps()
        # Nothing to refer to: a tool call goes inline.
        self.assertEqual(references(out["sent"][1]), [])

    async def test_generate_text_tool_steps_on_a_reasoning_upstream(self) -> None:
        out, live = await self.runToolSteps(("I should look the weather up.", "Now answer."))
        # The first step's reasoning item goes back by reference (store: true),
        # resolved by the gateway from its store: the step succeeded.
        first = out["steps"][0]
        self.assertEqual([item["type"] for item in first["output"]], ["reasoning", "function_call"])
        self.assertEqual(references(out["sent"][1]), outputIds(first["output"], "reasoning"))
        self.assertEqual(len(references(out["sent"][1])), 1)

    async def test_generate_text_tool_step_that_also_says_something(self) -> None:
        out, live = await self.runToolSteps(
            ("I should look the weather up.", ""), preamble="Let me check the weather."
        )
        # The reasoning and the text go back by reference, the call inline;
        # the gateway rebuilds the one assistant message they were.
        first = out["steps"][0]
        self.assertEqual(
            [item["type"] for item in first["output"]], ["reasoning", "message", "function_call"]
        )
        self.assertEqual(
            references(out["sent"][1]),
            outputIds(first["output"], "reasoning") + outputIds(first["output"], "message"),
        )

    async def test_two_turn_chat_replays_the_first_turns_messages(self) -> None:
        live = liveWithStore(self)
        live.upstream.script += [reply(text="Hello, Ada!"), reply(text="Your name is Ada.")]
        out = await runNode(self, "vercel_two_turns.mjs", live.base)

        first, second = out["turns"]
        self.assertEqual(first["text"], "Hello, Ada!")
        self.assertEqual(second["text"], "Your name is Ada.")
        self.assertNotEqual(first["response_id"], second["response_id"])
        # The SDK replays its answer as an item_reference to the first response's message.
        self.assertEqual(references(out["sent"][0]), [])
        self.assertEqual(references(out["sent"][1]), outputIds(first["output"], "message"))
        self.assertEqual(len(references(out["sent"][1])), 1)

        requests = chats(live)
        self.assertEqual(len(requests), 2)
        self.assertEqual(chatTurn(requests[0]), TWO_TURNS[:1])
        # The second turn's request carries the whole first turn, the
        # assistant's answer resolved from the item_reference the SDK sent.
        self.assertEqual(chatTurn(requests[1]), TWO_TURNS)

    async def test_two_turn_chat_with_a_reasoning_upstream(self) -> None:
        await self.twoReasoningTurns("fake-model")

    async def test_two_turn_chat_as_a_reasoning_model(self) -> None:
        # A reasoning model's id (the SDK then refers to an answer only after
        # its reasoning) mapped onto the same DeepSeek-style upstream.
        await self.twoReasoningTurns("gpt-5-mini")

    async def twoReasoningTurns(self, model: str) -> None:
        """A two-turn chat as C{model} on an upstream that thinks before each answer."""
        live = liveWithStore(self)
        thoughts = ("The user says their name is Ada.", "They told me before.")
        live.upstream.script += [
            reply(reasoning=thoughts[0], text="Hello, Ada!"),
            reply(reasoning=thoughts[1], text="Your name is Ada."),
        ]
        out = await runNode(self, "vercel_two_turns.mjs", live.base, model)

        first, second = out["turns"]
        self.assertEqual(first["text"], "Hello, Ada!")
        self.assertEqual(second["text"], "Your name is Ada.")
        self.assertEqual({s["body"]["model"] for s in out["sent"]}, {model})
        # The thinking is a reasoning item's reasoning_text; no summary, as
        # none was asked for (the SDK, which shows only summaries, has none).
        for turn, thought in zip((first, second), thoughts, strict=True):
            self.assertEqual([item["type"] for item in turn["output"]], ["reasoning", "message"])
            [reasoning] = [item for item in turn["output"] if item["type"] == "reasoning"]
            self.assertEqual(reasoning["content"], [{"type": "reasoning_text", "text": thought}])
            self.assertEqual(reasoning["summary"], [])
        # Both the reasoning item and the message go back by reference.
        self.assertEqual(
            references(out["sent"][1]),
            outputIds(first["output"], "reasoning") + outputIds(first["output"], "message"),
        )
        requests = chats(live)
        self.assertEqual(len(requests), 2)
        self.assertEqual(chatTurn(requests[1]), TWO_TURNS)
