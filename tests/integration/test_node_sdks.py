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
import subprocess
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.chat_upstream import chatChunk
from tests.integration.test_integration import LiveGateway
from tests.paths import REPO

SCRIPTS = os.path.join(REPO, "tests", "integration", "node")


def nodeSdks() -> str:
    """The SDKs' directory; installed on demand so a fresh checkout needs no extra step."""
    found = os.environ.get("NODE_SDKS")
    if found:
        return found
    out = subprocess.run(
        [os.path.join(REPO, "scripts", "install-node-sdks")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.stdout.strip().splitlines()[-1]


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", -1) or 0)


async def runNode(test: TestCase, script: str, base: str, timeout: float = 60) -> Any:
    """
    Run C{node <script> <base>}, killed after C{timeout} seconds; fail the
    test unless it exits 0, and return the JSON its last stdout line holds.
    """
    proto = _Collect()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.path.abspath(test.mktemp()),
        "NODE_SDKS": nodeSdks(),
        "NO_COLOR": "1",
    }
    path = os.path.join(SCRIPTS, script)
    process = reactor.spawnProcess(proto, "node", ["node", path, base], env=env, path=SCRIPTS)
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
    C{reasoning} as C{reasoning_content}, then C{text}, or a C{toolCall}
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
    from codexgw.state.store import SQLiteStore

    return LiveGateway(test, store=SQLiteStore(reactor, path, 3600, 8 * 1024 * 1024))


def chats(live: LiveGateway) -> list[Any]:
    """The Chat Completions requests the upstream received, in order."""
    return [r.body for r in live.upstream.received if r.path == b"/v1/chat/completions"]


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
        # The thinking arrives as a summary (asked for) or as reasoning text.
        self.assertIn(thought, out["reasoning_summary"] + out["reasoning_content"])
        self.assertIn(thought, out["reasoning_deltas"])
        self.assertEqual(out["events"][0], "response.created")
        self.assertEqual(out["events"][-1], "response.completed")
        self.assertIn("response.output_text.done", out["events"])
        self.assertEqual(out["usage"]["total_tokens"], 18)
        [chat] = chats(live)
        self.assertTrue(chat["stream"])
        self.assertEqual(chat["messages"][-1]["role"], "user")
        self.assertIn("Why is the sky blue?", contentText(chat["messages"][-1]["content"]))


class VercelAISDKTests(TestCase):
    timeout = 180

    async def test_generate_text_runs_a_tool_over_several_steps(self) -> None:
        live = liveWithStore(self)
        live.upstream.script += [
            reply(toolCall=("call_weather_1", "weather", orjson.dumps({"city": "Paris"}).decode())),
            reply(text="It is 21 degrees and clear in Paris."),
        ]
        out = await runNode(self, "vercel_tool_steps.mjs", live.base)

        self.assertEqual(out["text"], "It is 21 degrees and clear in Paris.")
        self.assertEqual(out["executed"], ["Paris"])
        first, second = out["steps"]
        self.assertEqual(first["finish_reason"], "tool-calls")
        self.assertEqual(
            first["tool_calls"],
            [{"id": "call_weather_1", "name": "weather", "input": {"city": "Paris"}}],
        )
        self.assertEqual(
            first["tool_results"][0]["output"], {"city": "Paris", "temperature": 21, "sky": "clear"}
        )
        self.assertEqual(second["finish_reason"], "stop")
        self.assertEqual(second["text"], "It is 21 degrees and clear in Paris.")

        requests = chats(live)
        self.assertEqual(len(requests), 2)
        self.assertEqual([t["function"]["name"] for t in requests[0]["tools"]], ["weather"])
        # The second step's request carries the call and its result.
        messages = requests[1]["messages"]
        [assistant] = [m for m in messages if m.get("tool_calls")]
        self.assertEqual(assistant["tool_calls"][0]["id"], "call_weather_1")
        self.assertEqual(assistant["tool_calls"][0]["function"]["name"], "weather")
        self.assertEqual(
            orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]), {"city": "Paris"}
        )
        [result] = [m for m in messages if m.get("role") == "tool"]
        self.assertEqual(result["tool_call_id"], "call_weather_1")
        self.assertEqual(
            orjson.loads(contentText(result["content"])),
            {"city": "Paris", "temperature": 21, "sky": "clear"},
        )
        self.assertLess(messages.index(assistant), messages.index(result))
        self.assertIn(
            "weather in Paris",
            contentText(messages[0 if messages[0]["role"] == "user" else 1]["content"]),
        )

    async def test_two_turn_chat_replays_the_first_turns_messages(self) -> None:
        live = liveWithStore(self)
        live.upstream.script += [
            reply(text="Hello, Ada!"),
            reply(text="Your name is Ada."),
        ]
        out = await runNode(self, "vercel_two_turns.mjs", live.base)

        first, second = out["turns"]
        self.assertEqual(first["text"], "Hello, Ada!")
        self.assertEqual(second["text"], "Your name is Ada.")
        self.assertNotEqual(first["response_id"], second["response_id"])

        requests = chats(live)
        self.assertEqual(len(requests), 2)
        # The second turn's request carries the whole first turn, the
        # assistant's answer resolved from the item_reference the SDK sent.
        turn = [
            (m["role"], contentText(m.get("content")))
            for m in requests[1]["messages"]
            if m["role"] != "system"
        ]
        self.assertEqual(
            turn,
            [
                ("user", "My name is Ada. Say hello."),
                ("assistant", "Hello, Ada!"),
                ("user", "What is my name?"),
            ],
        )

    async def test_two_turn_chat_with_a_reasoning_upstream(self) -> None:
        live = liveWithStore(self)
        live.upstream.script += [
            reply(reasoning="The user says their name is Ada.", text="Hello, Ada!"),
            reply(reasoning="They told me before.", text="Your name is Ada."),
        ]
        out = await runNode(self, "vercel_two_turns.mjs", live.base)

        first, second = out["turns"]
        self.assertEqual(first["text"], "Hello, Ada!")
        self.assertIn("The user says their name is Ada.", first["reasoning"] or "")
        self.assertEqual(second["text"], "Your name is Ada.")
        self.assertIn("They told me before.", second["reasoning"] or "")
        requests = chats(live)
        self.assertEqual(len(requests), 2)
        turn = [
            (m["role"], contentText(m.get("content")))
            for m in requests[1]["messages"]
            if m["role"] != "system"
        ]
        self.assertEqual(
            turn,
            [
                ("user", "My name is Ada. Say hello."),
                ("assistant", "Hello, Ada!"),
                ("user", "What is my name?"),
            ],
        )
