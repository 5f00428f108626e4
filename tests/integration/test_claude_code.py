"""
The real Claude Code CLI (installed by scripts/install-claude-code) runs
`claude -p` through the gateway's POST /v1/messages onto a scripted Chat
Completions upstream, a scripted Responses upstream, and a strict fake
Anthropic upstream (relayed untouched): a plain answer, and a Bash tool
round trip that writes a file.

Claude Code runs offline against a local base URL with telemetry, the
auto-updater and non-essential traffic off, in a throwaway HOME outside the
repository (it needs no onboarding state for `-p`, and inside a git checkout
it takes the checkout as its project). As root it refuses
`--dangerously-skip-permissions` (unless IS_SANDBOX=1), so Bash is allowed
with `--allowedTools Bash`. CLAUDE_CODE_MAX_RETRIES=0 unless a test asks,
so a failure fails fast. It first sends a keyless `HEAD /` to the base URL
(a reachability probe whose answer it ignores). For a model name it does
not know (ANTHROPIC_MODEL=qwen3-coder) it speaks the 2026 API: adaptive
thinking, output_config.effort, its reminders as a trailing role "system"
message. A few seconds per test: the CLI is a separate process speaking
real HTTP, which is the point.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import attrs
import orjson
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.anthropic_upstream import (
    API_KEY,
    Fail,
    FakeAnthropicUpstream,
    Text,
    Thinking,
    ToolUse,
    Turn,
    say,
)
from tests.fakes.chat_upstream import FakeChatUpstream, chatChunk, textStream
from tests.integration.peers import Collect, installed
from tests.integration.test_anthropic_sdk import chatError
from tests.integration.test_codex_cli import sse, toolCallStream
from tests.integration.test_integration import LiveGateway
from tests.integration.test_messages_upstream import MessagesGateway, rejections

MODEL = "claude-sonnet-4-5"
#: What Claude Code prints for a 404 not_found_error from the Messages API.
UNKNOWN_MODEL = "There's an issue with the selected model"
#: What Claude Code prints for Anthropic's "prompt is too long" error.
TOO_LONG = "Prompt is too long"
#: A 1x1 PNG.
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
#: The first system block Claude Code sends, billing metadata for Anthropic.
BILLING = "x-anthropic-billing-header"


def claudeBinary() -> str:
    """Claude Code; installed on demand so a fresh checkout needs no extra step."""
    return installed("CLAUDE_BIN", "install-claude-code")


@attrs.frozen
class ClaudeRun:
    """What a `claude -p` run left: exit code, output, and its work directory."""

    code: int
    out: str
    err: str
    work: str

    def why(self, extra: str = "") -> str:
        return f"claude failed ({self.code}):{extra}\nstdout:{self.out[-2000:]}\nstderr:{self.err[-3000:]}"

    def read(self, name: str) -> str | None:
        path = os.path.join(self.work, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()


def defaultEnv(
    home: str, root: str, key: str, bearer: bool, retries: int, timeout: float
) -> dict[str, str]:
    """What Claude Code is run with: the gateway, the key, no traffic to Anthropic."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "ANTHROPIC_BASE_URL": root,
        ("ANTHROPIC_AUTH_TOKEN" if bearer else "ANTHROPIC_API_KEY"): key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
        "API_TIMEOUT_MS": str(int(timeout * 1000)),
        "NO_COLOR": "1",
    }


async def runClaude(
    test: TestCase,
    root: str,
    prompt: str,
    model: str | None = MODEL,
    key: str = "client-key",
    bearer: bool = False,
    extraArgs: list[str] | None = None,
    timeout: float = 60,
    retries: int = 0,
    home: str | None = None,
    env: dict[str, str] | None = None,
) -> ClaudeRun:
    """
    Run `claude -p PROMPT --model MODEL --allowedTools Bash` in a throwaway
    directory against C{root} (the base URL, without C{/v1}). The key is
    sent as C{x-api-key} (C{ANTHROPIC_API_KEY}), or with C{bearer} as
    C{Authorization: Bearer} (C{ANTHROPIC_AUTH_TOKEN}). C{retries} is
    C{CLAUDE_CODE_MAX_RETRIES}: none by default, so a test sees the
    gateway's first answer as final (and a failure fails fast). C{home}
    (made and removed by cleanup when not given) holds the work directory;
    two runs in one home are two sessions of one user in one project.
    C{env}, when given, is the whole environment but PATH and HOME (then
    C{root}, C{key}, C{bearer} and C{retries} are not used).
    """
    if home is None:
        # Outside the repository: Claude Code takes the enclosing git
        # checkout as its project (and reads its CLAUDE.md, its status).
        home = tempfile.mkdtemp(prefix="codexgw-claude-")
        test.addCleanup(shutil.rmtree, home, True)
    work = os.path.join(home, "work")
    os.makedirs(work, exist_ok=True)
    if env is not None:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, **env}
    else:
        env = defaultEnv(home, root, key, bearer, retries, timeout)
    proto = Collect()
    binary = claudeBinary()
    process = reactor.spawnProcess(
        proto,
        binary,
        [
            binary,
            "-p",
            prompt,
            *(["--model", model] if model else []),
            "--allowedTools",
            "Bash",
            *(extraArgs or []),
        ],
        env=env,
        path=work,
    )
    process.closeStdin()  # -p reads more prompt from an open stdin
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = await proto.ended
    if killer.active():
        killer.cancel()
    return ClaudeRun(
        code, proto.out.decode(errors="replace"), proto.err.decode(errors="replace"), work
    )


def bashCommand(marker: str) -> dict[str, str]:
    return {
        "command": f"echo {marker} > bash-{marker}.txt && cat bash-{marker}.txt",
        "description": "Write the marker file",
    }


def firstDifference(a: str, b: str) -> str | None:
    """Where two texts part, with some context; None when they are equal."""
    if a == b:
        return None
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return f"at {at}: {a[max(0, at - 40) : at + 40]!r} / {b[max(0, at - 40) : at + 40]!r}"


def refusing(dialect: Any, step: Any) -> Any:
    """C{step}, unless the request carries a field C{dialect}'s servers refuse (a 400 then)."""
    from tests.fakes.dialects import refusal

    def strict(request: Request, body: Any) -> Any:
        refused = [f for f in sorted(dialect.refuses) if f in body and f != "strict"]
        if "strict" in dialect.refuses:
            refused += [
                "tools[].function.strict"
                for t in body.get("tools") or ()
                if "strict" in (t.get("function") or {})
            ][:1]
        if refused:
            status, answer = refusal(dialect.refusal, refused[0])
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            return answer
        return step(request, body)

    return strict


def chats(upstream: FakeChatUpstream) -> list[Any]:
    return [r for r in upstream.received if r.path == b"/v1/chat/completions"]


# -- a scripted Responses upstream (the Chat fake's script, speaking Responses) --


def responsesStream(items: list[dict[str, Any]]) -> Any:
    """A script step: a Responses stream whose output is C{items}, as OpenAI streams it."""

    def step(request: Request, body: Any) -> Any:
        events: list[dict[str, Any]] = []
        shell = {
            "id": "resp_fake1",
            "object": "response",
            "created_at": 1700000000,
            "status": "in_progress",
            "model": body.get("model"),
            "output": [],
        }
        events.append({"type": "response.created", "response": shell})
        events.append({"type": "response.in_progress", "response": shell})
        for index, item in enumerate(items):
            added = dict(item, status="in_progress")
            if item["type"] == "reasoning":
                added = dict(item, summary=[])
                events.append(
                    {"type": "response.output_item.added", "output_index": index, "item": added}
                )
                for n, summary in enumerate(item["summary"]):
                    where = {"item_id": item["id"], "output_index": index, "summary_index": n}
                    part = {"type": "summary_text", "text": ""}
                    events.append(
                        {"type": "response.reasoning_summary_part.added", **where, "part": part}
                    )
                    events.append(
                        {
                            "type": "response.reasoning_summary_text.delta",
                            **where,
                            "delta": summary["text"],
                        }
                    )
                    events.append(
                        {
                            "type": "response.reasoning_summary_text.done",
                            **where,
                            "text": summary["text"],
                        }
                    )
                    events.append(
                        {
                            "type": "response.reasoning_summary_part.done",
                            **where,
                            "part": dict(part, text=summary["text"]),
                        }
                    )
            elif item["type"] == "message":
                added["content"] = []
                events.append(
                    {"type": "response.output_item.added", "output_index": index, "item": added}
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    {
                        "type": "response.content_part.added",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "part": part,
                    }
                )
                text = item["content"][0]["text"]
                for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                    events.append(
                        {
                            "type": "response.output_text.delta",
                            "item_id": item["id"],
                            "output_index": index,
                            "content_index": 0,
                            "delta": piece,
                        }
                    )
                events.append(
                    {
                        "type": "response.output_text.done",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "text": text,
                    }
                )
                events.append(
                    {
                        "type": "response.content_part.done",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "part": dict(part, text=text),
                    }
                )
            else:
                added["arguments"] = ""
                events.append(
                    {"type": "response.output_item.added", "output_index": index, "item": added}
                )
                events.append(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "delta": item["arguments"],
                    }
                )
                events.append(
                    {
                        "type": "response.function_call_arguments.done",
                        "item_id": item["id"],
                        "output_index": index,
                        "arguments": item["arguments"],
                    }
                )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        done = dict(
            shell,
            status="completed",
            output=items,
            usage={
                "input_tokens": 12,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 6,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 18,
            },
        )
        events.append({"type": "response.completed", "response": done})
        request.setHeader(b"content-type", b"text/event-stream")
        for n, event in enumerate(events):
            event["sequence_number"] = n
            request.write(
                b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
            )
        request.finish()
        return NOT_DONE_YET

    return step


#: What OpenAI seals a reasoning item's thoughts in; only it can read them.
SEALED = "gAAAAABpZmFrZS1vcGFxdWUtcmVhc29uaW5nLWZyb20tb3BlbmFp"


def responsesText(text: str) -> Any:
    return responsesStream(
        [
            {
                "type": "message",
                "id": "msg_fake1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
    )


def responsesCall(
    call_id: str, name: str, arguments: dict[str, Any], reasoning: str | None = None
) -> Any:
    """
    A function call, after a reasoning item when C{reasoning} is given (its
    summary; an empty one for a model that reasons without summaries).
    """
    before = []
    if reasoning is not None:
        before.append(
            {
                "type": "reasoning",
                "id": "rs_fake1",
                "summary": [{"type": "summary_text", "text": reasoning}] if reasoning else [],
                "encrypted_content": SEALED,
            }
        )
    return responsesStream(
        [
            *before,
            {
                "type": "function_call",
                "id": "fc_fake1",
                "status": "completed",
                "call_id": call_id,
                "name": name,
                "arguments": orjson.dumps(arguments).decode(),
            },
        ]
    )


# -- the tests ------------------------------------------------------------------


class ClaudeCodeOntoFakeAnthropicTests(TestCase):
    """
    Claude Code straight onto the fake, no gateway: the fake takes what the
    real client sends (its 24 tools, cache_control, betas, thinking echoed
    back with its signature), so its strictness is Anthropic's, not ours.
    """

    timeout = 120

    async def test_the_fake_accepts_a_real_bash_round_trip(self) -> None:
        from tests.integration.test_integration import serve

        fake = FakeAnthropicUpstream(apiKey="direct-key")
        port = serve(self, fake)
        marker = "direct7043"
        fake.script += [
            Turn(
                (
                    Thinking("I will write it."),
                    Text("Running."),
                    ToolUse("Bash", bashCommand(marker)),
                )
            ),
            say("Wrote ", marker),
        ]
        run = await runClaude(
            self, f"http://127.0.0.1:{port.getHost().port}", "write it", key="direct-key"
        )
        self.assertEqual(run.code, 0, run.why(rejections(fake)))
        self.assertIn(f"Wrote {marker}", run.out)
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        # HEAD / (a connectivity probe, keyless) is the one refusal.
        self.assertEqual([r for r in fake.rejected if r[1] != 401], [])
        self.assertEqual(len(fake.messages), 2)

    async def test_what_claude_code_prints_for_an_unknown_model(self) -> None:
        from tests.integration.test_integration import serve

        fake = FakeAnthropicUpstream(apiKey="direct-key")
        port = serve(self, fake)
        # Claude Code asks twice before it gives up on a 404, retries or not.
        fake.script += [Fail("not_found_error", f"model: {MODEL}")] * 3
        run = await runClaude(
            self, f"http://127.0.0.1:{port.getHost().port}", "hi", key="direct-key"
        )
        self.assertNotEqual(run.code, 0, run.why())
        self.assertIn(UNKNOWN_MODEL, run.out + run.err)
        self.assertEqual(len(fake.messages), 2)

    async def test_what_claude_code_prints_for_a_prompt_too_long(self) -> None:
        from tests.integration.test_integration import serve

        fake = FakeAnthropicUpstream(apiKey="direct-key")
        port = serve(self, fake)
        fake.script += [
            Fail("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
        ] * 3
        run = await runClaude(
            self, f"http://127.0.0.1:{port.getHost().port}", "hi", key="direct-key"
        )
        self.assertNotEqual(run.code, 0, run.why())
        # Claude Code knows this error (it compacts on it) by these words.
        self.assertIn(TOO_LONG, run.out + run.err)


class ClaudeCodeOntoChatTests(TestCase):
    timeout = 120

    async def test_plain_answer(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(sse(textStream(["Hello ", "from ", "a Chat model"])))
        run = await runClaude(self, live.base.removesuffix("/v1"), "say hello")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.out.strip(), "Hello from a Chat model")
        [sent] = chats(live.upstream)
        self.assertEqual(sent.headers[b"authorization"], b"Bearer sk-upstream-secret")
        self.assertEqual(sent.body["model"], MODEL)
        self.assertTrue(sent.body["stream"])
        roles = [m["role"] for m in sent.body["messages"]]
        self.assertEqual(roles[0], "system")
        self.assertEqual(roles[-1], "user")
        self.assertIn("say hello", orjson.dumps(sent.body["messages"][-1]).decode())
        names = [t["function"]["name"] for t in sent.body["tools"]]
        self.assertIn("Bash", names)
        # Counted like every other route.
        routes = {
            (s.labels.get("route"), s.labels.get("status"))
            for metric in live.gateway.metrics.registry.collect()
            for s in metric.samples
            if s.name == "codexgw_requests_total"
        }
        self.assertIn(("/v1/messages", "200"), routes)

    async def test_a_model_claude_code_does_not_know(self) -> None:
        # The way users name their model (ANTHROPIC_MODEL=qwen3-coder, as
        # `codexgw claude-config` prints it): for a name it does not know
        # Claude Code uses the 2026 API: adaptive thinking, output_config,
        # and its reminders as a trailing role "system" message.
        live = LiveGateway(self)
        live.upstream.script.append(sse(textStream(["Qwen ", "here"])))
        run = await runClaude(self, live.base.removesuffix("/v1"), "say hello", model="qwen3-coder")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.out.strip(), "Qwen here")
        [sent] = chats(live.upstream)
        self.assertEqual(sent.body["model"], "qwen3-coder")
        self.assertIn("Available agent types", orjson.dumps(sent.body["messages"]).decode())

    async def test_the_effort_a_user_picks_reaches_the_model(self) -> None:
        # `claude --effort low` (or /effort) on a model it does not know
        # sends output_config.effort with adaptive thinking: the reasoning
        # effort a Chat model understands.
        live = LiveGateway(self)
        live.upstream.script += [sse(textStream(["low"])), sse(textStream(["high"]))]
        root = live.base.removesuffix("/v1")
        for effort in ("low", "high"):
            run = await runClaude(
                self, root, "hi", model="qwen3-coder", extraArgs=["--effort", effort]
            )
            self.assertEqual(run.code, 0, run.why())
        self.assertEqual(
            [c.body.get("reasoning_effort") for c in chats(live.upstream)], ["low", "high"]
        )

    async def test_usage_claude_code_reports_is_the_upstreams(self) -> None:
        live = LiveGateway(self)
        usage = {
            "prompt_tokens": 1000,
            "completion_tokens": 3,
            "total_tokens": 1003,
            "prompt_tokens_details": {"cached_tokens": 600},
        }
        live.upstream.script.append(
            sse(
                [
                    *textStream(["counted", " answer"], usage=False)[:-1],
                    chatChunk({}, None, choices=[], usage=usage),
                    b"data: [DONE]\n\n",
                ]
            )
        )
        run = await runClaude(
            self,
            live.base.removesuffix("/v1"),
            "say it",
            extraArgs=["--output-format", "stream-json", "--verbose"],
        )
        self.assertEqual(run.code, 0, run.why())
        result = [orjson.loads(line) for line in run.out.splitlines() if line.startswith("{")][-1]
        self.assertEqual(result.get("result"), "counted answer")
        reported = result["usage"]
        self.assertEqual(
            (
                reported["input_tokens"],
                reported["cache_read_input_tokens"],
                reported["output_tokens"],
            ),
            (400, 600, 3),
            reported,
        )

    async def test_bash_round_trip_writes_a_file(self) -> None:
        live = LiveGateway(self)
        marker = "chat5821"
        live.upstream.script += [
            sse(toolCallStream("call_bash1", "Bash", orjson.dumps(bashCommand(marker)).decode())),
            sse(textStream(["The file holds ", marker, "."])),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "write the marker file")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn(f"The file holds {marker}.", run.out)
        first, second = chats(live.upstream)
        bash = next(t for t in first.body["tools"] if t["function"]["name"] == "Bash")
        self.assertIn("command", bash["function"]["parameters"]["properties"])
        messages = second.body["messages"]
        assistant = next(m for m in messages if m.get("tool_calls"))
        self.assertEqual(assistant["tool_calls"][0]["function"]["name"], "Bash")
        self.assertEqual(
            orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]), bashCommand(marker)
        )
        [tool] = [m for m in messages if m["role"] == "tool"]
        self.assertEqual(tool["tool_call_id"], "call_bash1")
        self.assertIn(marker, orjson.dumps(tool["content"]).decode())

    async def test_a_local_servers_tool_call_without_id_or_tool_calls_finish(self) -> None:
        # vLLM/llama.cpp quirks: no id on the call, finish_reason "stop" after
        # it. Claude Code needs a tool_use id and stop_reason tool_use to run
        # it, and its tool_result must find the same call again upstream.
        live = LiveGateway(self)
        marker = "noid7781"
        call = {
            "index": 0,
            "function": {"name": "Bash", "arguments": orjson.dumps(bashCommand(marker)).decode()},
        }
        live.upstream.script += [
            sse(
                [
                    chatChunk({"role": "assistant", "content": "", "tool_calls": [call]}),
                    chatChunk({}, "stop"),
                    b"data: [DONE]\n\n",
                ]
            ),
            sse(textStream(["Ran it."])),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "write the marker file")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn("Ran it.", run.out)
        messages = chats(live.upstream)[1].body["messages"]
        assistant = next(m for m in messages if m.get("tool_calls"))
        [tool] = [m for m in messages if m["role"] == "tool"]
        self.assertTrue(assistant["tool_calls"][0]["id"])
        self.assertEqual(tool["tool_call_id"], assistant["tool_calls"][0]["id"])

    async def test_parallel_bash_calls_go_back_as_one_assistant_message(self) -> None:
        live = LiveGateway(self)
        a, b = "para1101", "para2202"
        calls = [
            {
                "index": i,
                "id": f"call_p{i}",
                "type": "function",
                "function": {"name": "Bash", "arguments": orjson.dumps(bashCommand(m)).decode()},
            }
            for i, m in enumerate((a, b))
        ]
        live.upstream.script += [
            sse(
                [
                    chatChunk({"role": "assistant", "content": None, "tool_calls": calls}),
                    chatChunk({}, "tool_calls"),
                    b"data: [DONE]\n\n",
                ]
            ),
            sse(textStream(["Both written."])),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "write both marker files")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(
            (run.read(f"bash-{a}.txt"), run.read(f"bash-{b}.txt")), (f"{a}\n", f"{b}\n")
        )
        self.assertIn("Both written.", run.out)
        messages = chats(live.upstream)[1].body["messages"]
        roles = [m["role"] for m in messages]
        self.assertEqual(roles[-3:], ["assistant", "tool", "tool"])
        self.assertEqual([c["id"] for c in messages[-3]["tool_calls"]], ["call_p0", "call_p1"])
        self.assertEqual({m["tool_call_id"] for m in messages[-2:]}, {"call_p0", "call_p1"})

    async def test_an_image_claude_code_reads_reaches_the_model(self) -> None:
        # Read on a picture answers with an image block in the tool_result;
        # a Chat tool message cannot carry it, a user message can.
        import base64

        live = LiveGateway(self)
        home = tempfile.mkdtemp(prefix="codexgw-claude-")
        self.addCleanup(shutil.rmtree, home, True)
        os.makedirs(os.path.join(home, "work"))
        picture = os.path.join(home, "work", "pixel.png")
        with open(picture, "wb") as f:
            f.write(base64.b64decode(PIXEL))
        live.upstream.script += [
            sse(
                toolCallStream("call_read1", "Read", orjson.dumps({"file_path": picture}).decode())
            ),
            sse(textStream(["A pixel."])),
        ]
        run = await runClaude(
            self,
            live.base.removesuffix("/v1"),
            "what is in pixel.png?",
            home=home,
            extraArgs=["--allowedTools", "Read"],
        )
        self.assertEqual(run.code, 0, run.why())
        self.assertIn("A pixel.", run.out)
        messages = chats(live.upstream)[1].body["messages"]
        [tool] = [m for m in messages if m["role"] == "tool"]
        self.assertEqual(tool["tool_call_id"], "call_read1")
        images = [
            part
            for m in messages[messages.index(tool) :]
            if isinstance(m.get("content"), list)
            for part in m["content"]
            if part.get("type") == "image_url"
        ]
        self.assertEqual(len(images), 1, messages[messages.index(tool) :])
        self.assertTrue(images[0]["image_url"]["url"].startswith("data:image/png;base64,"))

    async def test_reasoning_upstream_thinks_and_runs_bash(self) -> None:
        # A DeepSeek-style upstream reasons in reasoning_content: Claude Code
        # gets thinking blocks, echoes them on the tool turn, and the loop
        # still completes.
        live = LiveGateway(self)
        marker = "think3390"
        arguments = orjson.dumps(bashCommand(marker)).decode()
        live.upstream.script += [
            sse(
                [
                    chatChunk({"role": "assistant", "content": ""}),
                    chatChunk({"reasoning_content": "I need the shell "}),
                    chatChunk({"reasoning_content": "for this."}),
                    *toolCallStream("call_think1", "Bash", arguments),
                ]
            ),
            sse(textStream(["Done: ", marker])),
        ]
        run = await runClaude(
            self,
            live.base.removesuffix("/v1"),
            "write the marker file",
            extraArgs=["--output-format", "stream-json", "--verbose"],
        )
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        events = [orjson.loads(line) for line in run.out.splitlines() if line.startswith("{")]
        blocks = [
            b for e in events if e.get("type") == "assistant" for b in e["message"]["content"]
        ]
        thinking = [b for b in blocks if b["type"] == "thinking"]
        self.assertEqual([b["thinking"] for b in thinking], ["I need the shell for this."])
        self.assertEqual(events[-1].get("result"), f"Done: {marker}")
        second = chats(live.upstream)[1].body["messages"]
        self.assertEqual([m["role"] for m in second][-2:], ["assistant", "tool"])

    async def test_a_continued_session_replays_the_earlier_turn(self) -> None:
        live = LiveGateway(self)
        live.upstream.script += [
            sse(
                [
                    chatChunk({"role": "assistant", "content": ""}),
                    chatChunk({"reasoning_content": "Pick a colour."}),
                    *textStream(["Blue."])[1:],
                ]
            ),
            sse(textStream(["Still ", "blue."])),
        ]
        home = tempfile.mkdtemp(prefix="codexgw-claude-")
        self.addCleanup(shutil.rmtree, home, True)
        root = live.base.removesuffix("/v1")
        first = await runClaude(self, root, "pick a colour", home=home)
        self.assertEqual(first.code, 0, first.why())
        self.assertEqual(first.out.strip(), "Blue.")
        again = await runClaude(self, root, "which one?", home=home, extraArgs=["--continue"])
        self.assertEqual(again.code, 0, again.why())
        self.assertEqual(again.out.strip(), "Still blue.")
        messages = chats(live.upstream)[1].body["messages"]
        self.assertEqual([m["role"] for m in messages][-3:], ["user", "assistant", "user"])
        self.assertIn("Blue.", orjson.dumps(messages[-2]).decode())
        self.assertIn("which one?", orjson.dumps(messages[-1]).decode())

    async def test_deepseek_gets_its_reasoning_back_on_the_tool_turn(self) -> None:
        # DeepSeek (thinking with tools) wants the turn's reasoning_content
        # sent back with the tool call; Claude Code carries it as the
        # thinking block it was given, and the gateway turns it back.
        from tests.fakes.dialects import DEEPSEEK_LIKE

        live = MessagesGateway(
            self, upstream=FakeChatUpstream(), wire_api="chat", provider="deepseek"
        )
        marker = "deep8812"
        arguments = orjson.dumps(bashCommand(marker)).decode()
        live.fake.script += [
            refusing(
                DEEPSEEK_LIKE,
                sse(
                    [
                        chatChunk({"role": "assistant", "content": ""}),
                        chatChunk({"reasoning_content": "The shell "}),
                        chatChunk({"reasoning_content": "writes it."}),
                        *toolCallStream("call_deep1", "Bash", arguments),
                    ]
                ),
            ),
            refusing(DEEPSEEK_LIKE, sse(textStream(["Deep ", marker]))),
        ]
        run = await runClaude(self, live.root, "write the marker file")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn(f"Deep {marker}", run.out)
        second = chats(live.fake)[1].body["messages"]
        assistant = next(m for m in second if m.get("tool_calls"))
        self.assertEqual(assistant.get("reasoning_content"), "The shell writes it.")

    async def test_the_prompt_a_chat_upstream_caches_is_the_same_across_sessions(self) -> None:
        # Claude Code opens its system prompt with a billing line
        # ("x-anthropic-billing-header: cc_version=2.1.197.<hash of the
        # prompt>; …"), meaningless to any other model: forwarded, it makes
        # every session's prefix unique and a provider's prefix cache never
        # hits past it (DeepSeek, vLLM, OpenAI cache by prefix).
        live = LiveGateway(self)
        live.upstream.script += [sse(textStream(["one"])), sse(textStream(["two"]))]
        home = tempfile.mkdtemp(prefix="codexgw-claude-")
        self.addCleanup(shutil.rmtree, home, True)
        for prompt in ("say one", "say two, please"):
            run = await runClaude(self, live.base.removesuffix("/v1"), prompt, home=home)
            self.assertEqual(run.code, 0, run.why())
        first, second = (c.body["messages"][0] for c in chats(live.upstream))
        self.assertEqual(first["role"], "system")
        self.assertEqual(
            firstDifference(first["content"], second["content"]),
            None,
            "the two sessions' system prompts differ",
        )
        self.assertNotIn(BILLING, first["content"][:200])

    async def test_a_stream_broken_midway_is_retried_not_taken_as_the_answer(self) -> None:
        # The upstream dies after "Hel": Claude Code must see an error event
        # it retries, not a message that ends there.
        from tests.fakes import faults

        live = LiveGateway(self)
        live.upstream.script += [
            faults.sseThen(faults.FIRST, "reset"),
            sse(textStream(["second ", "try"])),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "say hello", retries=2)
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.out.strip(), "second try")
        self.assertEqual(len(chats(live.upstream)), 2)

    async def test_rate_limit_is_waited_out_and_retried(self) -> None:
        live = LiveGateway(self)
        live.upstream.script += [
            chatError(429, "Rate limit reached", "requests", retry_after="1"),
            sse(textStream(["After ", "the wait"])),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "say hello", retries=2)
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.out.strip(), "After the wait")
        self.assertEqual(len(chats(live.upstream)), 2)

    async def test_a_context_overflow_is_one_claude_code_knows(self) -> None:
        # OpenAI's (and vLLM's) context_length_exceeded must reach Claude
        # Code as Anthropic words it ("prompt is too long: N tokens > M
        # maximum"): that is what makes it compact, or tell the user so.
        def tooLong(request: Request, body: Any) -> bytes:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "error": {
                        "message": "This model's maximum context length is 128000 tokens. "
                        "However, your messages resulted in 130000 tokens. Please reduce the "
                        "length of the messages.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                }
            )

        live = LiveGateway(self)
        live.upstream.script += [tooLong] * 3
        run = await runClaude(self, live.base.removesuffix("/v1"), "hi")
        self.assertNotEqual(run.code, 0, run.why())
        self.assertIn(TOO_LONG, run.out + run.err)

    async def test_unknown_model_is_reported_as_claude_code_reports_it(self) -> None:
        live = LiveGateway(self)
        live.upstream.script += [
            chatError(404, f"The model `{MODEL}` does not exist", "invalid_request_error")
        ] * 3
        run = await runClaude(self, live.base.removesuffix("/v1"), "hi")
        self.assertNotEqual(run.code, 0, run.why())
        self.assertIn(UNKNOWN_MODEL, run.out + run.err)


class ClaudeCodeOntoResponsesTests(TestCase):
    timeout = 120

    async def test_plain_answer(self) -> None:
        live = LiveGateway(self, upstream={"wire_api": "responses"})
        live.upstream.script.append(responsesText("Hello from a Responses model"))
        run = await runClaude(self, live.base.removesuffix("/v1"), "say hello")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.out.strip(), "Hello from a Responses model")
        [sent] = [r for r in live.upstream.received if r.path == b"/v1/responses"]
        self.assertEqual(sent.body["model"], MODEL)
        self.assertIn("say hello", orjson.dumps(sent.body["input"]).decode())

    async def test_bash_round_trip_writes_a_file(self) -> None:
        live = LiveGateway(self, upstream={"wire_api": "responses"})
        marker = "resp6120"
        live.upstream.script += [
            responsesCall("call_resp1", "Bash", bashCommand(marker)),
            responsesText(f"Responses wrote {marker}."),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "write the marker file")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn(f"Responses wrote {marker}.", run.out)
        first, second = [r for r in live.upstream.received if r.path == b"/v1/responses"]
        self.assertIn("Bash", [t.get("name") for t in first.body["tools"]])
        items = second.body["input"]
        [callItem] = [i for i in items if i.get("type") == "function_call"]
        self.assertEqual((callItem["call_id"], callItem["name"]), ("call_resp1", "Bash"))
        [output] = [i for i in items if i.get("type") == "function_call_output"]
        self.assertEqual(output["call_id"], "call_resp1")
        self.assertIn(marker, orjson.dumps(output["output"]).decode())

    async def test_a_reasoning_item_rides_back_on_the_tool_turn(self) -> None:
        # OpenAI's reasoning models want their reasoning items back with the
        # tool output (store: false): Claude Code shows the summary as
        # thinking and echoes the block; the sealed content must return.
        live = LiveGateway(self, upstream={"wire_api": "responses"})
        marker = "sealed3017"
        live.upstream.script += [
            responsesCall("call_rs1", "Bash", bashCommand(marker), reasoning="Use the shell."),
            responsesText(f"Sealed {marker}."),
        ]
        run = await runClaude(
            self,
            live.base.removesuffix("/v1"),
            "write the marker file",
            extraArgs=["--output-format", "stream-json", "--verbose"],
        )
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        events = [orjson.loads(line) for line in run.out.splitlines() if line.startswith("{")]
        thinking = [
            b["thinking"]
            for e in events
            if e.get("type") == "assistant"
            for b in e["message"]["content"]
            if b["type"] == "thinking"
        ]
        self.assertEqual(thinking, ["Use the shell."])
        second = [r for r in live.upstream.received if r.path == b"/v1/responses"][1].body
        kinds = [i.get("type") for i in second["input"]]
        self.assertIn("reasoning", kinds)
        reasoning = second["input"][kinds.index("reasoning")]
        self.assertEqual(reasoning.get("encrypted_content"), SEALED)
        self.assertLess(kinds.index("reasoning"), kinds.index("function_call"))

    async def test_a_reasoning_item_without_summary_rides_back_too(self) -> None:
        # gpt-5 without reasoning summaries: only the sealed content.
        live = LiveGateway(self, upstream={"wire_api": "responses"})
        marker = "bare5150"
        live.upstream.script += [
            responsesCall("call_rs2", "Bash", bashCommand(marker), reasoning=""),
            responsesText(f"Bare {marker}."),
        ]
        run = await runClaude(self, live.base.removesuffix("/v1"), "write the marker file")
        self.assertEqual(run.code, 0, run.why())
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn(f"Bare {marker}.", run.out)
        second = [r for r in live.upstream.received if r.path == b"/v1/responses"][1].body
        [reasoning] = [i for i in second["input"] if i.get("type") == "reasoning"]
        self.assertEqual(reasoning.get("encrypted_content"), SEALED)

    async def test_a_context_overflow_is_one_claude_code_knows(self) -> None:
        # OpenAI fails an oversized Responses stream in-stream.
        def failed(request: Request, body: Any) -> Any:
            shell = {"id": "resp_big", "object": "response", "status": "in_progress", "output": []}
            error = {
                "code": "context_length_exceeded",
                "message": "Your input exceeds the context window of this model. Please adjust "
                "your input and try again.",
            }
            events = [
                {"type": "response.created", "sequence_number": 0, "response": shell},
                {
                    "type": "response.failed",
                    "sequence_number": 1,
                    "response": dict(shell, status="failed", error=error),
                },
            ]
            request.setHeader(b"content-type", b"text/event-stream")
            for event in events:
                request.write(
                    b"event: "
                    + event["type"].encode()
                    + b"\ndata: "
                    + orjson.dumps(event)
                    + b"\n\n"
                )
            request.finish()
            return NOT_DONE_YET

        live = LiveGateway(self, upstream={"wire_api": "responses"})
        live.upstream.script += [failed] * 3
        run = await runClaude(self, live.base.removesuffix("/v1"), "hi")
        self.assertNotEqual(run.code, 0, run.why())
        self.assertIn(TOO_LONG, run.out + run.err)

    async def test_the_billing_line_stays_out_of_the_instructions(self) -> None:
        live = LiveGateway(self, upstream={"wire_api": "responses"})
        live.upstream.script.append(responsesText("ok"))
        run = await runClaude(self, live.base.removesuffix("/v1"), "say ok")
        self.assertEqual(run.code, 0, run.why())
        [sent] = [r for r in live.upstream.received if r.path == b"/v1/responses"]
        instructions = orjson.dumps(sent.body.get("instructions")).decode()
        self.assertIn("Claude", instructions)
        self.assertNotIn(BILLING, instructions[:200])


class ClaudeCodeOntoMessagesTests(TestCase):
    """Onto a Messages upstream the request is relayed untouched, key swapped."""

    timeout = 120

    async def test_bash_round_trip_with_thinking_is_relayed(self) -> None:
        live = MessagesGateway(self)
        marker = "relay4471"
        live.fake.script += [
            Turn((Thinking("Shell it."), Text("Running."), ToolUse("Bash", bashCommand(marker)))),
            say("Relayed ", marker),
        ]
        run = await runClaude(self, live.root, "write the marker file")
        self.assertEqual(run.code, 0, run.why(rejections(live.fake)))
        self.assertEqual(run.read(f"bash-{marker}.txt"), f"{marker}\n")
        self.assertIn(f"Relayed {marker}", run.out)
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        first, second = live.fake.messages
        for sent in (first, second):
            self.assertEqual(sent.headers[b"x-api-key"], API_KEY.encode())
            self.assertNotIn(b"client-key", b"".join(sent.headers.values()))
            self.assertEqual(sent.headers[b"anthropic-version"], b"2023-06-01")
            self.assertIn(b"claude-code-20250219", sent.headers[b"anthropic-beta"])
        self.assertEqual(first.body["thinking"]["type"], "enabled")
        self.assertIn("context_management", first.body)
        assistant = second.body["messages"][-2]
        self.assertEqual(assistant["content"][0]["type"], "thinking")

    async def test_a_model_claude_code_does_not_know_is_relayed(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(say("Relayed for glm"))
        run = await runClaude(self, live.root, "hi", model="glm-4.6")
        self.assertEqual(run.code, 0, run.why(rejections(live.fake)))
        self.assertIn("Relayed for glm", run.out)
        [sent] = live.fake.messages
        self.assertEqual(sent.body["model"], "glm-4.6")
        self.assertIn("system", [m["role"] for m in sent.body["messages"]])

    async def test_an_overloaded_upstream_is_retried_by_the_gateway(self) -> None:
        live = MessagesGateway(
            self, upstreamExtra={"retries": {"max_attempts": 3, "backoff_base": 0.05}}
        )
        live.fake.script += [Fail("overloaded_error", "Overloaded")] * 2 + [say("Third time")]
        run = await runClaude(self, live.root, "hi")
        self.assertEqual(run.code, 0, run.why(rejections(live.fake)))
        self.assertIn("Third time", run.out)
        self.assertEqual(len(live.fake.messages), 3)

    async def test_an_error_inside_the_stream_is_relayed_and_retried(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [Fail("overloaded_error", "Overloaded", in_stream=True), say("again")]
        run = await runClaude(self, live.root, "hi", retries=2)
        self.assertEqual(run.code, 0, run.why(rejections(live.fake)))
        self.assertEqual(run.out.strip(), "again")
        self.assertEqual(len(live.fake.messages), 2)

    async def test_gateway_key_as_bearer_token(self) -> None:
        live = MessagesGateway(self, auth={"keys": [{"name": "cc", "key": "gw-claude-key"}]})
        live.fake.script.append(say("Authorized by bearer"))
        run = await runClaude(self, live.root, "hi", key="gw-claude-key", bearer=True)
        self.assertEqual(run.code, 0, run.why(rejections(live.fake)))
        self.assertIn("Authorized by bearer", run.out)
        [sent] = live.fake.messages
        self.assertEqual(sent.headers[b"x-api-key"], API_KEY.encode())
        self.assertNotIn(b"authorization", sent.headers)

    async def test_wrong_gateway_key_is_refused_before_the_upstream(self) -> None:
        live = MessagesGateway(self, auth={"keys": [{"name": "cc", "key": "gw-claude-key"}]})
        run = await runClaude(self, live.root, "hi", key="not-the-key")
        self.assertNotEqual(run.code, 0, run.out)
        self.assertEqual(live.fake.messages, [])
        self.assertRegex(run.out + run.err, "(?i)api key|authenticat|401")


class ClaudeConfigCommandTests(TestCase):
    timeout = 120

    async def test_the_environment_claude_config_prints_is_all_claude_code_needs(self) -> None:
        import io

        from codexgw.config import load
        from codexgw.ops import cli
        from codexgw.service import Gateway
        from tests.integration.test_integration import serve

        upstream = FakeChatUpstream()
        upstreamPort = serve(self, upstream).getHost().port
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(
                "upstreams:\n"
                f"  main: {{base_url: 'http://127.0.0.1:{upstreamPort}/v1', "
                "retries: {max_attempts: 1}}\n"
                "models:\n  - {match: qwen3-coder, upstream: main}\n"
                "auth:\n  keys:\n    - {name: cc, key: gw-claude-secret}\n"
                "store: {backend: none}\n"
            )
        gateway = Gateway(load(path, {}))
        self.addCleanup(gateway.close)
        base = f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1"
        out, err = io.StringIO(), io.StringIO()
        args = cli.parser().parse_args(
            ["claude-config", "--config", path, "--base-url", base, "--json"]
        )
        self.assertEqual(cli.claudeConfig(args, out, err), 0, err.getvalue())
        printed = orjson.loads(out.getvalue())
        keyRef = "${" + printed["env_key"] + "}"
        env = {
            k: v.replace(keyRef, "gw-claude-secret") if isinstance(v, str) else v
            for k, v in printed["env"].items()
        }
        upstream.script.append(sse(textStream(["configured ", "by codexgw"])))
        run = await runClaude(self, "", "hello", model=None, env=env)
        self.assertEqual(run.code, 0, run.why(f"\nenv: {env}"))
        self.assertEqual(run.out.strip(), "configured by codexgw")
        [sent] = chats(upstream)
        self.assertEqual(sent.body["model"], "qwen3-coder")
