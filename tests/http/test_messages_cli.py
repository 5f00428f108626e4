"""
C{codexgw claude-config}: the environment Claude Code reads, for this
gateway, and that it really points Claude Code's requests at the gateway's
Messages route.
"""

from __future__ import annotations

import io
import os
import subprocess

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.ops import cli
from tests.fakes import messages_upstream as anthropic
from tests.harness import Harness, makeConfig

CONFIG = """\
listen: "tcp:8123:interface=127.0.0.1"
upstreams:
  main: {base_url: "http://127.0.0.1:9/v1", provider: deepseek, api_key: "${NOT_SET_ANYWHERE}"}
default_upstream: main
%(auth)s
models:
  - {match: deepseek-chat, upstream: main}
  - {match: deepseek-reasoner, upstream: main}
  - {match: "claude-*", upstream: main, model: deepseek-chat}
store: {backend: none}
"""
AUTH = 'auth:\n  keys: [{name: team, key: "sk-team-0123456789"}]'


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = cli.parser().parse_args(["claude-config", *argv])
    return cli.claudeConfig(args, out, err), out.getvalue(), err.getvalue()


class ClaudeConfigTests(SynchronousTestCase):
    def write(self, auth: bool = True) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(CONFIG % {"auth": AUTH if auth else ""})
        return path

    def environment(self, *argv: str) -> dict[str, str]:
        """What a POSIX shell has after evaluating the printed lines."""
        code, out, _ = run(*argv)
        self.assertEqual(code, 0)
        script = out + "env -0\n"
        done = subprocess.run(
            ["sh", "-c", script],
            env={"CODEXGW_API_KEY": "sk-team-0123456789", "PATH": os.environ["PATH"]},
            capture_output=True,
            check=True,
        )
        pairs = [p.split("=", 1) for p in done.stdout.decode().split("\0") if "=" in p]
        return {k: v for k, v in pairs}

    def test_the_shell_gets_base_url_key_models_and_quiet_switches(self) -> None:
        env = self.environment("--config", self.write())
        self.assertEqual(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:8123")
        self.assertEqual(env["ANTHROPIC_AUTH_TOKEN"], "sk-team-0123456789")
        self.assertNotIn("ANTHROPIC_API_KEY", env)
        self.assertEqual(env["ANTHROPIC_MODEL"], "deepseek-chat")
        self.assertEqual(env["ANTHROPIC_DEFAULT_SONNET_MODEL"], "deepseek-chat")
        self.assertEqual(env["ANTHROPIC_SMALL_FAST_MODEL"], "deepseek-chat")
        self.assertEqual(env["DISABLE_TELEMETRY"], "1")
        self.assertEqual(env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1")

    def test_api_key_auth_models_and_base_url_can_be_chosen(self) -> None:
        env = self.environment(
            "--config",
            self.write(),
            "--auth",
            "api-key",
            "--base-url",
            "https://gw.example/v1",
            "--model",
            "deepseek-reasoner",
            "--small-model",
            "deepseek-chat",
        )
        self.assertEqual(env["ANTHROPIC_BASE_URL"], "https://gw.example")
        self.assertEqual(env["ANTHROPIC_API_KEY"], "sk-team-0123456789")
        self.assertNotIn("ANTHROPIC_AUTH_TOKEN", env)
        self.assertEqual(env["ANTHROPIC_MODEL"], "deepseek-reasoner")
        self.assertEqual(env["ANTHROPIC_DEFAULT_HAIKU_MODEL"], "deepseek-chat")

    def test_without_auth_a_placeholder_key_keeps_claude_code_from_asking_to_log_in(self) -> None:
        env = self.environment("--config", self.write(auth=False))
        self.assertEqual(env["ANTHROPIC_AUTH_TOKEN"], "codexgw")

    def test_json(self) -> None:
        code, out, _ = run("--config", self.write(), "--json")
        self.assertEqual(code, 0)
        document = orjson.loads(out)
        self.assertEqual(document["env_key"], "CODEXGW_API_KEY")
        self.assertEqual(document["env"]["ANTHROPIC_AUTH_TOKEN"], "${CODEXGW_API_KEY}")
        self.assertEqual(document["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:8123")

    def test_what_it_prints_reaches_the_messages_route(self) -> None:
        # Claude Code posts to ANTHROPIC_BASE_URL + /v1/messages?beta=true
        # with the token as a Bearer key: that is a route of this gateway.
        env = self.environment("--config", self.write())
        h = Harness(makeConfig({"auth": {"keys": [{"name": "t", "key": "sk-team-0123456789"}]}}))
        client = h.connect()
        path = env["ANTHROPIC_BASE_URL"].removeprefix("http://127.0.0.1:8123") + "/v1/messages"
        client.post(
            path.encode() + b"?beta=true",
            anthropic.request(model=env["ANTHROPIC_MODEL"]),
            {b"authorization": b"Bearer " + env["ANTHROPIC_AUTH_TOKEN"].encode()},
        )
        self.assertEqual(len(h.sent), 1)
        self.assertEqual(orjson.loads(h.sent[0].body)["model"], "deepseek-chat")
