"""
C{codexgw probe} against three fake provider dialects on real loopback
ports: what it reports must be what each dialect actually does, and the
profile it writes must make the gateway's bridge work against the strictest
one, where the default profile fails.
"""

from __future__ import annotations

import io
import os
from typing import Any

import orjson
import yaml
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from codexgw.config import parse
from codexgw.ops import cli
from codexgw.ops.probe import accepted, chatProfile
from codexgw.service import Gateway
from tests.fakes.dialects import DEEPSEEK_LIKE, LOCAL_LIKE, OPENAI_LIKE, Dialect, DialectUpstream
from tests.integration.test_integration import httpClient, serve

FIELDS = (
    "max_completion_tokens",
    "max_tokens",
    "parallel_tool_calls",
    "strict",
    "reasoning_effort",
    "response_format",
    "user",
    "metadata",
)


class ProbeDialectTests(TestCase):
    def upstream(self, dialect: Dialect) -> tuple[DialectUpstream, str]:
        fake = DialectUpstream(dialect)
        port = serve(self, fake)
        return fake, f"http://127.0.0.1:{port.getHost().port}/v1"

    async def probe(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = cli.parser().parse_args(["probe", *argv])
        code = await cli.probe(args, out, err, reactor)
        return code, out.getvalue(), err.getvalue()

    async def findings(self, dialect: Dialect) -> dict[str, Any]:
        fake, base = self.upstream(dialect)
        code, out, err = await self.probe("--base-url", base, "--json")
        self.assertEqual(code, 0, out + err)
        report = orjson.loads(out)
        self.assertEqual(report["model"], dialect.model, "the model comes from GET /models")
        return {f["key"]: f["supported"] for f in report["findings"]} | {
            "profile": report["profile"]
        }

    async def assertDialect(self, dialect: Dialect) -> dict[str, Any]:
        found = await self.findings(dialect)
        self.assertTrue(found["chat"])
        self.assertTrue(found["streaming"])
        self.assertEqual(found["stream_options"], "stream_options" not in dialect.refuses)
        self.assertEqual(
            found["usage_in_stream"], dialect.usage_in_stream and found["stream_options"]
        )
        self.assertTrue(found["tool_calls"])
        self.assertEqual(found["streamed_arguments"], dialect.streamed_arguments)
        self.assertEqual(found["parallel_tool_calls"], dialect.parallel)
        for field in FIELDS:
            self.assertEqual(
                found[f"field_{field}"], field not in dialect.refuses, f"field {field}"
            )
        if dialect.reasoning_field:
            self.assertTrue(found["reasoning_field"])
            self.assertEqual(found["profile"]["reasoning_fields"][0], dialect.reasoning_field)
        else:
            self.assertIsNone(found["reasoning_field"], "no reasoning is not proof of none")
            self.assertNotIn("reasoning_fields", found["profile"])
        return found

    async def test_an_openai_like_provider_supports_everything_asked(self) -> None:
        found = await self.assertDialect(OPENAI_LIKE)
        self.assertEqual(found["profile"]["max_tokens_field"], "max_completion_tokens")

    async def test_a_deepseek_like_provider_reasons_and_refuses_strict(self) -> None:
        found = await self.assertDialect(DEEPSEEK_LIKE)
        self.assertEqual(found["profile"]["max_tokens_field"], "max_tokens")
        self.assertFalse(found["profile"]["supports_strict"])

    async def test_a_local_server_like_provider_refuses_most_options(self) -> None:
        found = await self.assertDialect(LOCAL_LIKE)
        self.assertFalse(found["profile"]["supports_stream_options"])
        self.assertFalse(found["profile"]["supports_parallel_tool_calls"])

    async def test_the_three_dialects_are_told_apart(self) -> None:
        profiles = [
            (await self.findings(d))["profile"] for d in (OPENAI_LIKE, DEEPSEEK_LIKE, LOCAL_LIKE)
        ]
        self.assertEqual(len({orjson.dumps(p, option=orjson.OPT_SORT_KEYS) for p in profiles}), 3)

    async def test_the_human_form_is_a_table_with_progress_on_stderr(self) -> None:
        _, base = self.upstream(LOCAL_LIKE)
        code, out, err = await self.probe("--base-url", base, "--model", "local-fake")
        self.assertEqual(code, 0)
        rows = {line.split("  ")[0].strip(): line for line in out.splitlines()[2:]}
        self.assertIn("no", rows["tool arguments streamed in pieces"].split())
        self.assertIn("yes", rows["parallel tool calls"].split())
        self.assertIn("reasoning", rows["reasoning field"].split())
        self.assertIn("probing: tool calls (streamed)", err)
        self.assertNotIn("probing", out)

    async def test_the_written_profile_makes_the_bridge_work_where_the_default_fails(self) -> None:
        fake, base = self.upstream(LOCAL_LIKE)
        written = os.path.abspath(self.mktemp())
        code, out, _ = await self.probe(
            "--base-url", base, "--write-profile", written, "--profile-name", "local"
        )
        self.assertEqual(code, 0)
        self.assertIn(f"wrote profile 'local' to {written}", out)
        with open(written) as f:
            profiles = yaml.safe_load(f)["profiles"]

        request = {
            "model": "local-fake",
            "input": "weather?",
            "max_output_tokens": 100,
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "strict": True,
                    "parameters": {"type": "object", "properties": {}},
                }
            ],
            "parallel_tool_calls": True,
            "stream": True,
        }

        async def bridge(provider: str) -> tuple[int, bytes]:
            config = parse(
                {
                    "profiles": profiles,
                    "upstreams": {
                        "m": {
                            "base_url": base,
                            "provider": provider,
                            "retries": {"max_attempts": 1},
                        }
                    },
                    "store": {"backend": "none"},
                },
                "t.yaml",
                {},
            )
            gateway = Gateway(config)
            self.addCleanup(gateway.close)
            port = serve(self, gateway.resource)
            response = await httpClient(self).post(
                f"http://127.0.0.1:{port.getHost().port}/v1/responses",
                data=orjson.dumps(request),
                headers={"content-type": "application/json"},
            )
            return response.code, await response.content()

        status, body = await bridge("openai")
        self.assertTrue(
            status >= 400 or b"response.failed" in body,
            "the default profile sends fields this dialect refuses",
        )
        fake.received.clear()
        status, body = await bridge("local")
        self.assertEqual(status, 200)
        self.assertIn(b"response.completed", body)
        self.assertIn(b"get_weather", body)
        sent = fake.received[-1]
        self.assertFalse(set(sent) & LOCAL_LIKE.refuses, sent)
        self.assertIn("max_tokens", sent)

    async def test_a_configured_upstream_is_probed_with_its_key_which_is_never_printed(
        self,
    ) -> None:
        fake, base = self.upstream(OPENAI_LIKE)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"upstreams:\n  main:\n    base_url: {base}\n    api_key: sk-secret-probe-key\n"
            )
        code, out, err = await self.probe("--upstream", "main", "--config", path, "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(fake.authorizations[-1], b"Bearer sk-secret-probe-key")
        self.assertNotIn("sk-secret", out + err)

    async def test_an_unreachable_provider_is_an_error_and_a_non_zero_exit(self) -> None:
        _, base = self.upstream(OPENAI_LIKE)
        port = serve(self, DialectUpstream(OPENAI_LIKE))
        closed = port.getHost().port
        await port.stopListening()
        code, out, _ = await self.probe(
            "--base-url", f"http://127.0.0.1:{closed}/v1", "--model", "x", "--json"
        )
        self.assertEqual(code, cli.EX_PROBLEM)
        report = orjson.loads(out)
        self.assertFalse(report["ok"])
        self.assertIn("connection refused", report["error"])

    async def test_a_key_variable_that_is_not_set_is_a_usage_error(self) -> None:
        _, base = self.upstream(OPENAI_LIKE)
        code, _, err = await self.probe(
            "--base-url", base, "--api-key-env", "CODEXGW_TEST_SURELY_UNSET"
        )
        self.assertEqual(code, cli.EX_USAGE)
        self.assertIn("CODEXGW_TEST_SURELY_UNSET is not set", err)

    async def test_a_responses_provider_is_probed_in_its_own_protocol(self) -> None:
        # The gateway itself, bridging to a reasoning dialect, is a
        # Responses provider with every feature the probe asks about.
        _, base = self.upstream(DEEPSEEK_LIKE)
        config = parse(
            {
                "upstreams": {"m": {"base_url": base, "provider": "deepseek"}},
                "store": {"backend": "none"},
            },
            "t.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        port = serve(self, gateway.resource)
        code, out, err = await self.probe(
            "--base-url",
            f"http://127.0.0.1:{port.getHost().port}/v1",
            "--wire-api",
            "responses",
            "--model",
            "deepseek-fake",
            "--json",
        )
        self.assertEqual(code, 0, out + err)
        found = {f["key"]: f["supported"] for f in orjson.loads(out)["findings"]}
        self.assertTrue(found["streaming"])
        self.assertTrue(found["usage_in_stream"])
        self.assertTrue(found["tool_calls"])
        self.assertTrue(found["streamed_arguments"])
        self.assertFalse(found["parallel_tool_calls"], "this dialect makes one call a turn")
        self.assertTrue(found["reasoning_field"])
        self.assertTrue(found["field_max_output_tokens"])


class ClassificationTests(TestCase):
    def test_only_a_400_or_422_counts_as_a_refused_field(self) -> None:
        self.assertEqual(accepted(200, b"{}")[0], True)
        self.assertEqual(accepted(400, b'{"error": {"message": "no"}}'), (False, "HTTP 400: no"))
        self.assertEqual(accepted(422, b"bad")[0], False)
        self.assertIsNone(accepted(503, b"busy")[0], "an outage says nothing about the field")

    def test_what_could_not_be_told_is_left_to_the_base_profile(self) -> None:
        profile = chatProfile({"strict": None, "user": False, "max_tokens": True}, [])
        self.assertEqual(profile, {"supports_user": False, "max_tokens_field": "max_tokens"})
