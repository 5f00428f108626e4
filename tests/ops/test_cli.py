"""
The C{codexgw} operator command: C{check-config} and C{codex-config} run
in-process on files a test writes, and the installed console script is run
once as a real process, as an operator would.

C{probe} has its own module (tests/ops/test_probe.py): it needs fake providers.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.ops import cli
from tests.paths import REPO

BAD = """\
listen: "tcp:notaport:interface=127.0.0.1"
upstreams:
  main:
    base_url: "ftp://example.invalid"
    wire_api: grpc
    timeouts: {idle: -1}
    retires: {max_attempts: 2}
default_upstream: nope
models:
  - match: "m1"
    upstream: ghost
    codex: {apply_patch: sometimes, base_instructions_file: /nonexistent/prompt.md}
server:
  drain_timout: 5
store: {path: "%(file)s/responses.sqlite3"}
"""
# Each planted error, by the key check-config must name.
PLANTED = {
    "listen",
    "upstreams.main.base_url",
    "upstreams.main.wire_api",
    "upstreams.main.timeouts.idle",
    "upstreams.main.retires",
    "default_upstream",
    "models[0].upstream",
    "models[0].codex.apply_patch",
    "models[0].codex.base_instructions_file",
    "server.drain_timout",
    "store.path",
}

GOOD = """\
listen: "tcp:9090:interface=127.0.0.1"
upstreams:
  main: {base_url: "http://127.0.0.1:9000/v1", provider: deepseek}
auth:
  keys: [{name: team, key: "k-1"}]
models:
  - {match: "m1", upstream: main, codex: {context_window: 64000, reasoning_levels: [low]}}
  - {match: "m2", upstream: main}
  - {match: "gpt-*", upstream: main}
store: {backend: none}
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = cli.parser().parse_args(argv)
    handler = {"check-config": cli.checkConfig, "codex-config": cli.codexConfig}[args.command]
    return handler(args, out, err), out.getvalue(), err.getvalue()


class CheckConfigTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_every_planted_error_is_reported_with_file_key_and_fix(self) -> None:
        # store.path under a regular file can never be created, even as root.
        aFile = self.write("")
        path = self.write(BAD % {"file": aFile})
        code, out, _ = run("check-config", path)
        self.assertEqual(code, cli.EX_PROBLEM)
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        named = {line.split(": ")[2] for line in errors}
        self.assertEqual(PLANTED - named, set(), out)
        for line in errors:
            self.assertTrue(line.startswith(f"error: {path}: "), line)
        self.assertIn("did you mean 'retries'?", out)
        self.assertIn("did you mean 'drain_timeout'?", out)
        self.assertIn("expected one of chat, responses, messages, got 'grpc'", out)
        self.assertTrue(out.rstrip().endswith(f"{path}: {len(errors)} problems"))

    def test_json_lists_the_same_problems_field_by_field(self) -> None:
        aFile = self.write("")
        path = self.write(BAD % {"file": aFile})
        code, out, _ = run("check-config", path, "--json")
        self.assertEqual(code, cli.EX_PROBLEM)
        report = orjson.loads(out)
        self.assertFalse(report["ok"])
        self.assertEqual(PLANTED - {p["key"] for p in report["problems"]}, set())
        self.assertEqual({p["file"] for p in report["problems"]}, {path})
        self.assertTrue(all(p["message"] for p in report["problems"]))

    def test_a_good_config_passes_with_a_summary_and_exit_zero(self) -> None:
        code, out, _ = run("check-config", self.write(GOOD))
        self.assertEqual(code, 0, out)
        self.assertIn("ok (1 upstream(s), 3 route(s), listening on tcp:9090", out)
        self.assertNotIn("error", out)
        code, out, _ = run("check-config", self.write(GOOD), "--json")
        report = orjson.loads(out)
        self.assertTrue(report["ok"])
        self.assertEqual(report["config"]["upstreams"]["main"]["provider"], "deepseek")

    def test_what_starts_but_deserves_a_look_is_a_warning_not_an_error(self) -> None:
        code, out, _ = run("check-config", self.write("upstreams:\n  demo: {provider: demo}\n"))
        self.assertEqual(code, 0)
        self.assertIn("warning: ", out)
        self.assertIn("without keys", out)
        self.assertIn("not a real LLM", out)

    def test_an_upstream_key_variable_without_its_url_is_flagged(self) -> None:
        from codexgw.ops.check import check

        result = check(self.write(GOOD), {"CODEXGW_UPSTREAM_API_KEY": "sk-x"})
        self.assertTrue(result.ok)
        self.assertIn(
            "CODEXGW_UPSTREAM_API_KEY: is set but ignored: it applies only with CODEXGW_UPSTREAM_URL",
            [str(w) for w in result.warnings],
        )
        self.assertNotIn("sk-x", " ".join(str(w) for w in result.warnings))

    def test_an_unreadable_or_broken_file_is_one_clear_problem(self) -> None:
        code, out, _ = run("check-config", "/nonexistent/codexgw.yaml")
        self.assertEqual(code, cli.EX_PROBLEM)
        self.assertIn("/nonexistent/codexgw.yaml: cannot read", out)
        code, out, _ = run("check-config", self.write("upstreams: [unclosed\n"))
        self.assertEqual(code, cli.EX_PROBLEM)
        self.assertIn("not valid YAML (line 2", out)

    def test_a_base_url_with_a_password_is_refused_saying_where_credentials_go(self) -> None:
        path = self.write(
            "upstreams:\n  main: {base_url: 'https://bob:s3cret@api.example.com/v1'}\n"
        )
        code, out, err = run("check-config", path)
        self.assertEqual(code, cli.EX_PROBLEM)
        [error] = [line for line in out.splitlines() if line.startswith("error: ")]
        self.assertTrue(error.startswith(f"error: {path}: upstreams.main.base_url: "), error)
        self.assertIn("credentials do not go in the URL", error)
        self.assertIn("upstreams.main.api_key", error)
        self.assertIn("upstreams.main.headers", error)
        code, json, _ = run("check-config", path, "--json")
        self.assertEqual(code, cli.EX_PROBLEM)
        self.assertEqual(
            [p["key"] for p in orjson.loads(json)["problems"]], ["upstreams.main.base_url"]
        )
        self.assertNotIn("s3cret", out + err + json)

    def test_an_upstream_url_variable_with_a_password_is_refused_too(self) -> None:
        self.patch(os, "environ", {"CODEXGW_UPSTREAM_URL": "https://bob:s3cret@api.example.com/v1"})
        code, out, err = run("check-config", self.write(GOOD))
        self.assertEqual(code, cli.EX_PROBLEM)
        self.assertIn(": CODEXGW_UPSTREAM_URL: credentials do not go in the URL", out)
        self.assertIn("CODEXGW_UPSTREAM_API_KEY", out)
        self.assertNotIn("s3cret", out + err)

    def test_the_gateway_refuses_to_start_with_a_password_in_a_base_url(self) -> None:
        from codexgw import tap

        path = self.write(
            "upstreams:\n  main: {base_url: 'https://bob:s3cret@api.example.com/v1'}\n"
        )
        options = tap.Options()
        options.parseOptions(["--config", path])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as raised:
            tap.makeService(options)
        self.assertEqual(raised.exception.code, os.EX_CONFIG)
        self.assertIn(f"{path}: upstreams.main.base_url: credentials do not go in", err.getvalue())
        self.assertNotIn("s3cret", err.getvalue())

    def test_the_shipped_configs_pass(self) -> None:
        root = REPO
        conf = os.path.join(root, "conf")
        files = [os.path.join(conf, "codexgw.yaml")] + [
            os.path.join(conf, "examples", name)
            for name in sorted(os.listdir(os.path.join(conf, "examples")))
        ]
        for path in files:
            code, out, _ = run("check-config", path, "--json")
            problems = orjson.loads(out)["problems"]
            # Examples name their key variables; unset here, that is their only complaint.
            real = [p for p in problems if "environment variable" not in p["message"]]
            self.assertEqual(real, [], path)


class CodexConfigTests(SynchronousTestCase):
    def config(self, text: str = GOOD) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_the_block_parses_as_toml_and_names_the_gateway_and_its_models(self) -> None:
        catalog = os.path.abspath(self.mktemp())
        code, out, err = run("codex-config", "--config", self.config(), "--catalog", catalog)
        self.assertEqual(code, 0, err)
        toml = tomllib.loads(out)
        self.assertEqual(toml["model"], "m1")
        self.assertEqual(toml["model_catalog_json"], catalog)
        provider = toml["model_providers"][toml["model_provider"]]
        self.assertEqual(provider["base_url"], "http://127.0.0.1:9090/v1")
        self.assertEqual(provider["wire_api"], "responses")
        self.assertEqual(provider["env_key"], "CODEXGW_API_KEY", "auth is on: Codex needs a key")
        self.assertIs(provider["supports_websockets"], True, "server.websocket is on by default")
        self.assertIn("m1, m2", out)
        self.assertIn("gpt-*", out)
        self.assertIn(f"wrote 2 model(s) to {catalog}", err)

    def test_the_catalog_gives_every_named_model_an_entry(self) -> None:
        catalog = os.path.abspath(self.mktemp())
        run("codex-config", "--config", self.config(), "--catalog", catalog)
        with open(catalog, "rb") as f:
            entries = {m["slug"]: m for m in orjson.loads(f.read())["models"]}
        self.assertEqual(set(entries), {"m1", "m2"}, "globs name no model")
        self.assertEqual(entries["m1"]["context_window"], 64000)
        self.assertEqual(
            [r["effort"] for r in entries["m1"]["supported_reasoning_levels"]], ["low"]
        )
        self.assertEqual(entries["m2"]["apply_patch_tool_type"], "freeform")
        self.assertTrue(entries["m2"]["base_instructions"])

    def test_options_override_and_json_carries_everything(self) -> None:
        catalog = os.path.abspath(self.mktemp())
        code, out, _ = run(
            "codex-config",
            "--config",
            self.config(),
            "--catalog",
            catalog,
            "--base-url",
            "https://gw.example/v1",
            "--env-key",
            "TEAM_KEY",
            "--model",
            "m2",
            "--json",
        )
        self.assertEqual(code, 0)
        data = orjson.loads(out)
        toml = tomllib.loads(data["toml"])
        self.assertEqual(toml["model"], "m2")
        self.assertEqual(toml["model_providers"]["codexgw"]["base_url"], "https://gw.example/v1")
        self.assertEqual(data["env_key"], "TEAM_KEY")
        self.assertEqual(data["catalog"], catalog)
        self.assertEqual(data["models"], ["m1", "m2"])

    def test_a_gateway_without_keys_gets_no_env_key(self) -> None:
        catalog = os.path.abspath(self.mktemp())
        code, out, _ = run("codex-config", "--config", self.config("{}\n"), "--catalog", catalog)
        self.assertEqual(code, 0)
        toml = tomllib.loads(out)
        self.assertNotIn("env_key", toml["model_providers"]["codexgw"])
        self.assertEqual(toml["model"], "codexgw-demo")

    def test_a_gateway_without_websocket_mode_leaves_codex_on_http(self) -> None:
        code, out, err = run(
            "codex-config",
            "--config",
            self.config(GOOD + "server: {websocket: false}\n"),
            "--catalog",
            self.mktemp(),
        )
        self.assertEqual(code, 0, err)
        provider = tomllib.loads(out)["model_providers"]["codexgw"]
        self.assertNotIn("supports_websockets", provider)
        self.assertEqual(provider["wire_api"], "responses")

    def test_upstream_secrets_are_not_needed_to_render_it(self) -> None:
        text = GOOD.replace("provider: deepseek", "api_key: '${CODEXGW_TEST_UNSET_SECRET}'")
        code, out, err = run(
            "codex-config", "--config", self.config(text), "--catalog", self.mktemp()
        )
        self.assertEqual(code, 0, err)
        self.assertIn('model = "m1"', out)

    def test_a_broken_config_is_reported_not_rendered(self) -> None:
        code, out, err = run("codex-config", "--config", self.config("listen: 3\n"))
        self.assertEqual(code, cli.EX_PROBLEM)
        self.assertEqual(out, "")
        self.assertIn("listen: expected a string", err)


class ConsoleScriptTests(SynchronousTestCase):
    """The installed C{codexgw} entry point, run as a process."""

    def script(self, *argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        binary = os.path.join(os.path.dirname(sys.executable), "codexgw")
        self.assertTrue(os.access(binary, os.X_OK), f"{binary} is not installed")
        return subprocess.run(
            [binary, *argv], capture_output=True, text=True, timeout=60, check=False, **kw
        )

    def test_every_subcommand_has_help(self) -> None:
        top = self.script("--help")
        self.assertEqual(top.returncode, 0)
        for command in ("check-config", "probe", "codex-config"):
            self.assertIn(command, top.stdout)
            sub = self.script(command, "--help")
            self.assertEqual(sub.returncode, 0, sub.stderr)
            self.assertIn(f"usage: codexgw {command}", sub.stdout)
            self.assertIn("--json", sub.stdout)

    def test_exit_codes_tell_a_script_what_happened(self) -> None:
        bad = os.path.abspath(self.mktemp())
        with open(bad, "w") as f:
            f.write("upstreams: {main: {wire_api: grpc}}\n")
        self.assertEqual(self.script("check-config", bad).returncode, cli.EX_PROBLEM)
        self.assertEqual(self.script("check-config").returncode, cli.EX_USAGE)
        self.assertEqual(self.script("probe").returncode, cli.EX_USAGE, "a target is required")
        good = self.script("check-config", os.path.join(_ROOT, "conf", "codexgw.yaml"))
        self.assertEqual(good.returncode, 0, good.stdout + good.stderr)


_ROOT = REPO
