"""
The real Codex CLI (installed by scripts/install-codex) runs `codex exec`
through the gateway against a scripted Chat Completions upstream.

These are the slowest tests in the suite (a few seconds each): the CLI is a
separate process speaking real HTTP, which is the point.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.chat_upstream import chatChunk, textStream
from tests.integration.peers import Collect, installed
from tests.integration.test_integration import LiveGateway


def codexBinary() -> str:
    """The Codex CLI; installed on demand so a fresh checkout needs no extra step."""
    return installed("CODEX_BIN", "install-codex")


async def runCodex(
    test: TestCase,
    base: str,
    prompt: str,
    providerExtra: str = "",
    timeout: float = 120,
    extraArgs: list[str] | None = None,
    keepWork: list[str] | None = None,
    configToml: str | None = None,
    retries: tuple[int, int] = (0, 0),
) -> tuple[int, str, str, str]:
    """
    Run `codex exec` in a throwaway directory; return (code, last message,
    stdout, stderr). C{configToml} replaces our provider block (its provider
    table must come last: the retry settings are appended to it).
    C{retries} is the provider's C{(request_max_retries, stream_max_retries)}:
    none by default, so a test sees the gateway's first answer as final.
    """
    home = os.path.abspath(test.mktemp())
    work = os.path.join(home, "work")
    os.makedirs(work)
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(
            configToml
            or 'model = "m1"\nmodel_provider = "gw"\n\n[model_providers.gw]\nname = "codexgw"\n'
            f'base_url = "{base}"\nenv_key = "CODEXGW_KEY"\nwire_api = "responses"\n'
        )
        requestRetries, streamRetries = retries
        f.write(
            f"request_max_retries = {requestRetries}\n"
            f"stream_max_retries = {streamRetries}\n{providerExtra}"
        )
    last = os.path.join(home, "last.txt")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "CODEX_HOME": home,
        "CODEXGW_KEY": "client-key",
        "CODEXGW_API_KEY": "client-key",
        "RUST_LOG": "error",
        "NO_COLOR": "1",
    }
    proto = Collect()
    binary = codexBinary()
    process = reactor.spawnProcess(
        proto,
        binary,
        [
            binary,
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--ephemeral",
            "--color",
            "never",
            "-o",
            last,
            *(extraArgs or []),
            prompt,
        ],
        env=env,
        path=work,
    )
    process.closeStdin()  # with stdin open, codex waits to read more prompt from it
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = await proto.ended
    if killer.active():
        killer.cancel()
    message = open(last).read() if os.path.exists(last) else ""
    if keepWork is not None:
        keepWork.append(work)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return code, message, proto.out.decode(errors="replace"), proto.err.decode(errors="replace")


def toolCallStream(call_id: str, name: str, arguments: str) -> list[bytes]:
    """A streamed tool call, its arguments split mid-string as providers do."""
    half = len(arguments) // 2
    first = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return [
        chatChunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        chatChunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]}),
        chatChunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
        chatChunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


def sse(chunks: list[bytes]) -> Any:
    def step(request: Request, body: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"".join(chunks))
        request.finish()
        return NOT_DONE_YET

    return step


class CodexExecTests(TestCase):
    timeout = 240

    async def test_tool_call_round_trip(self) -> None:
        live = LiveGateway(self)
        marker = "codexgw-tool-ok-4242"
        live.upstream.script += [
            sse(
                toolCallStream(
                    "call_abc", "exec_command", orjson.dumps({"cmd": f"echo {marker}"}).decode()
                )
            ),
            sse(textStream(["The command printed ", marker, "."])),
        ]
        code, message, out, err = await runCodex(self, live.base, "run echo for me")
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn(f"The command printed {marker}.", message)
        chats = [r for r in live.upstream.received if r.path == b"/v1/chat/completions"]
        self.assertGreaterEqual(len(chats), 2)
        second = chats[1].body
        tool_messages = [m for m in second["messages"] if m.get("role") == "tool"]
        self.assertEqual(len(tool_messages), 1)
        self.assertEqual(tool_messages[0]["tool_call_id"], "call_abc")
        self.assertIn(marker, str(tool_messages[0]["content"]))
        assistant = [m for m in second["messages"] if m.get("tool_calls")]
        self.assertEqual(assistant[0]["tool_calls"][0]["function"]["name"], "exec_command")
        self.assertNotIn("web_search", orjson.dumps(second.get("tools")).decode())
        self.assertTrue(chats[0].body["stream"])

    async def test_silent_upstream_does_not_trip_the_idle_timeout(self) -> None:
        live = LiveGateway(self, heartbeat_interval=0.5)

        def slow(request: Request, body: Any) -> Any:
            # Silent for 6 s before answering at all, then 2.5 s mid-stream:
            # both longer than the client's 2 s idle timeout.
            def headers() -> None:
                request.setHeader(b"content-type", b"text/event-stream")
                request.write(chatChunk({"role": "assistant", "content": ""}))
                pending.append(reactor.callLater(2.5, rest))

            def rest() -> None:
                request.write(b"".join(textStream(["still", " here"])[1:]))
                request.finish()

            pending.append(reactor.callLater(6, headers))
            return NOT_DONE_YET

        pending: list[Any] = []

        def cancelPending() -> None:
            for call in pending:
                if call.active():
                    call.cancel()

        self.addCleanup(cancelPending)

        live.upstream.script.append(slow)
        code, message, out, err = await runCodex(
            self, live.base, "say something", providerExtra="stream_idle_timeout_ms = 2000\n"
        )
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn("still here", message)
        chats = [r for r in live.upstream.received if r.path == b"/v1/chat/completions"]
        self.assertEqual(len(chats), 1, "the turn must not have been retried")


class CodexReasoningTests(TestCase):
    timeout = 240

    async def test_codex_prints_a_reasoning_upstreams_thinking_as_its_summary(self) -> None:
        # A DeepSeek-style upstream streams reasoning_content. Codex asks for
        # reasoning.summary and shows only summaries by default: the bridge
        # delivers the reasoning as summary text too, and `codex exec` prints it.
        live = LiveGateway(self)
        thought = "codexgw-thinking-7319"
        live.upstream.script.append(
            sse(
                [
                    chatChunk({"role": "assistant", "content": ""}),
                    chatChunk({"reasoning_content": "Pondering "}),
                    chatChunk({"reasoning_content": thought}),
                    chatChunk({"content": "The answer is 42."}),
                    chatChunk({}, "stop"),
                    b"data: [DONE]\n\n",
                ]
            )
        )
        code, message, out, err = await runCodex(self, live.base, "think, then answer")
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn("The answer is 42.", message)
        # `codex exec` writes its progress, the thinking included, to stderr
        # and the last message to stdout; the raw reasoning_text it hides.
        self.assertEqual(err.count(f"Pondering {thought}"), 1, err[-3000:])
        self.assertNotIn(thought, out)


class CodexCatalogTests(TestCase):
    timeout = 240

    async def test_catalog_gives_codex_apply_patch_and_a_scripted_patch_edits_a_file(self) -> None:
        live = LiveGateway(self)
        # A route with Codex metadata: the catalog the gateway renders is
        # what Codex is handed.
        from codexgw.config import parse
        from codexgw.service import Gateway
        from tests.integration.test_integration import httpClient, serve

        config = parse(
            {
                "upstreams": {
                    "main": {
                        "base_url": live.gateway.config.upstreams["main"].base_url,
                        "retries": {"max_attempts": 1},
                    }
                },
                "models": [
                    {
                        "match": "m1",
                        "upstream": "main",
                        "codex": {"context_window": 64000, "apply_patch": "freeform"},
                    }
                ],
            },
            "t.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        port = serve(self, gateway.resource)
        base = f"http://127.0.0.1:{port.getHost().port}/v1"
        http = httpClient(self)
        rendered = await (await http.get(base + "/models?format=codex")).json()
        self.assertEqual([m["slug"] for m in rendered["models"]], ["m1"])
        catalogPath = os.path.abspath(self.mktemp())
        with open(catalogPath, "w") as f:
            json.dump(rendered, f)

        patch = (
            "*** Begin Patch\n*** Add File: hello.txt\n+patched through codexgw\n*** End Patch\n"
        )
        live.upstream.script += [
            sse(
                toolCallStream("call_patch", "apply_patch", orjson.dumps({"input": patch}).decode())
            ),
            sse(textStream(["Patched."])),
        ]
        work: list[str] = []
        code, message, out, err = await runCodex(
            self,
            base,
            "add hello.txt",
            extraArgs=["-c", f"model_catalog_json={catalogPath}"],
            keepWork=work,
        )
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertNotIn("Model metadata for `m1` not found", out + err)
        first = live.upstream.received[0].body
        names = [t["function"]["name"] for t in first["tools"]]
        self.assertIn("apply_patch", names)
        tool = next(t for t in first["tools"] if t["function"]["name"] == "apply_patch")
        self.assertEqual(list(tool["function"]["parameters"]["properties"]), ["input"])
        with open(os.path.join(work[0], "hello.txt")) as f:
            self.assertEqual(f.read(), "patched through codexgw\n")
        second = live.upstream.received[1].body
        self.assertEqual([m["role"] for m in second["messages"]][-2:], ["assistant", "tool"])
        self.assertIn("Patched.", message)


class CodexConfigCommandTests(TestCase):
    timeout = 240

    async def test_the_block_codex_config_prints_is_all_codex_needs(self) -> None:
        # No codex: metadata in the config at all: `codexgw codex-config`
        # still gives the routed model a catalog entry, so Codex sends it the
        # apply_patch tool and does not warn about missing metadata.
        import io

        from codexgw.ops import cli

        live = LiveGateway(self)
        upstream = live.gateway.config.upstreams["main"].base_url
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(
                "upstreams:\n"
                f"  main: {{base_url: '{upstream}', retries: {{max_attempts: 1}}}}\n"
                "models:\n  - {match: m1, upstream: main}\n"
                "store: {backend: none}\n"
            )
        from codexgw.config import load
        from codexgw.service import Gateway
        from tests.integration.test_integration import serve

        gateway = Gateway(load(path, {}))
        self.addCleanup(gateway.close)
        base = f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1"
        out, err = io.StringIO(), io.StringIO()
        args = cli.parser().parse_args(
            ["codex-config", "--config", path, "--base-url", base, "--catalog", self.mktemp()]
        )
        self.assertEqual(cli.codexConfig(args, out, err), 0, err.getvalue())
        live.upstream.script.append(sse(textStream(["configured", " by", " codexgw"])))
        code, message, stdout, stderr = await runCodex(
            self, base, "hello", configToml=out.getvalue()
        )
        self.assertEqual(
            code, 0, f"codex failed:\nstdout:{stdout[-2000:]}\nstderr:{stderr[-3000:]}"
        )
        self.assertIn("configured by codexgw", message)
        self.assertNotIn("Model metadata for `m1` not found", stdout + stderr)
        first = live.upstream.received[0].body
        self.assertEqual(first["model"], "m1")
        self.assertIn("apply_patch", [t["function"]["name"] for t in first["tools"]])
