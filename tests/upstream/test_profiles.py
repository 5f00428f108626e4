"""
Provider profiles: what each family receives, pinned by golden files, and
profiles added in YAML without code.

Regenerate the golden requests with CODEXGW_REGENERATE=1 after a deliberate
change, and read the diff.
"""

from __future__ import annotations

import json
import os

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import ConfigError, parse
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.messages.request_from_hub import responses_to_messages
from codexgw.upstream.profiles import BUILTIN, MESSAGES_PROFILES, buildProfiles
from tests.dialects.helpers import codex_request
from tests.harness import Harness
from tests.paths import FIXTURES, REPO

GOLDEN = os.path.join(FIXTURES, "profiles")
JSON = {b"content-type": b"application/json"}


def codexTurn() -> dict:
    body = codex_request("after-tool-call")
    body = dict(body, max_output_tokens=2048, reasoning={"effort": "high", "summary": "auto"})
    return body


class GoldenRequestTests(SynchronousTestCase):
    def test_every_profile_translates_a_codex_turn_as_its_golden_file_says(self) -> None:
        for name, profile in sorted(BUILTIN.items()):
            translate = responses_to_messages if name in MESSAGES_PROFILES else responses_to_chat
            chat = translate(codexTurn(), profile.dialect, upstream_model="up-model")
            got = json.loads(orjson.dumps(chat.body, option=orjson.OPT_SORT_KEYS))
            path = os.path.join(GOLDEN, f"{name}.request.json")
            if os.environ.get("CODEXGW_REGENERATE"):
                with open(path, "w") as f:
                    json.dump(got, f, indent=1, ensure_ascii=False, sort_keys=True)
                    f.write("\n")
            with open(path) as f:
                self.assertEqual(got, json.load(f), f"profile {name}")

    def test_the_goldens_differ_where_the_dialects_do(self) -> None:
        def load(name: str) -> dict:
            with open(os.path.join(GOLDEN, f"{name}.request.json")) as f:
                return json.load(f)

        openai, deepseek, vllm, zhipu = (
            load("openai"),
            load("deepseek"),
            load("vllm"),
            load("zhipu"),
        )
        self.assertIn("max_completion_tokens", openai)
        self.assertEqual(deepseek["max_tokens"], 2048)
        self.assertEqual(openai["reasoning_effort"], "high")
        self.assertNotIn("reasoning_effort", vllm)
        self.assertNotIn("stream_options", zhipu)
        self.assertTrue(any("strict" in t["function"] for t in openai["tools"]))
        self.assertFalse(any("strict" in t["function"] for t in vllm["tools"]))


class WireTests(SynchronousTestCase):
    def upstream(self, **fields: object) -> Harness:
        data = {
            "upstreams": {
                "main": dict(
                    {
                        "base_url": "https://res.example.com",
                        "api_key": "k-123",
                        "retries": {"max_attempts": 1},
                    },
                    **fields,
                )
            },
            "models": [{"match": "gpt-4o", "upstream": "main", "model": "my-deployment"}],
        }
        return Harness(parse(data, "t.yaml", {}))

    def test_azure_puts_the_deployment_in_the_path_and_the_key_in_api_key(self) -> None:
        h = self.upstream(provider="azure")
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "gpt-4o", "messages": []})
        [sent] = h.sent
        self.assertEqual(
            sent.uri,
            b"https://res.example.com/openai/deployments/my-deployment/chat/completions"
            b"?api-version=2024-10-21",
        )
        self.assertEqual(sent.header(b"api-key"), b"k-123")
        self.assertIsNone(sent.header(b"authorization"))

    def test_openrouter_sends_its_attribution_headers(self) -> None:
        h = self.upstream(provider="openrouter")
        client = h.connect()
        client.post(b"/v1/responses", {"model": "x", "input": "hi"})
        sent = h.sent[0]
        self.assertEqual(sent.header(b"x-title"), b"codexgw")
        self.assertEqual(sent.header(b"authorization"), b"Bearer k-123")

    def test_a_yaml_profile_extends_a_builtin_without_code(self) -> None:
        data = {
            "profiles": {
                "my-vllm": {
                    "extends": "vllm",
                    "send_back_reasoning": True,
                    "headers": {"x-tenant": "blue"},
                    "max_tokens_field": "max_completion_tokens",
                }
            },
            "upstreams": {
                "main": {
                    "base_url": "http://h/v1",
                    "provider": "my-vllm",
                    "retries": {"max_attempts": 1},
                }
            },
        }
        h = Harness(parse(data, "t.yaml", {}))
        client = h.connect()
        client.post(b"/v1/responses", {"model": "x", "input": "hi", "max_output_tokens": 50})
        sent = h.sent[0]
        self.assertEqual(sent.header(b"x-tenant"), b"blue")
        body = orjson.loads(sent.body)
        self.assertEqual(body["max_completion_tokens"], 50)
        self.assertNotIn("reasoning_effort", body)
        profiles = buildProfiles(data["profiles"])
        self.assertTrue(profiles["my-vllm"].dialect.send_back_reasoning)
        self.assertFalse(profiles["my-vllm"].dialect.supports_strict)  # inherited from vllm

    def test_profile_errors_name_the_profile_and_field(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse({"profiles": {"p": {"extends": "vllm", "max_tokns": 3}}}, "t.yaml", {})
        self.assertIn("profiles.p.max_tokns", e.exception.problems[0])
        with self.assertRaises(ConfigError) as e:
            parse({"upstreams": {"m": {"base_url": "http://h", "provider": "nope"}}}, "t.yaml", {})
        self.assertIn("upstreams.m.provider", e.exception.problems[0])

    def test_every_profile_mistake_is_reported_at_once_with_its_type(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse(
                {
                    "profiles": {
                        "a": {"supports_strict": "no", "max_tokens_field": "max_tokenz"},
                        "b": {"reasoning_fields": "reasoning", "headers": ["x"], "send_back": 1},
                    }
                },
                "t.yaml",
                {},
            )
        keys = {p.split(": ")[1] for p in e.exception.problems}
        self.assertEqual(
            keys,
            {
                "profiles.a.supports_strict",
                "profiles.a.max_tokens_field",
                "profiles.b.reasoning_fields",
                "profiles.b.headers",
                "profiles.b.send_back",
            },
        )
        self.assertIn("did you mean 'send_back_reasoning'?", " ".join(e.exception.problems))

    def test_profile_values_take_variables_like_the_rest_of_the_config(self) -> None:
        config = parse(
            {
                "profiles": {"p": {"headers": {"x-tenant": "${TENANT}"}, "supports_user": "false"}},
                "upstreams": {"m": {"base_url": "http://h/v1", "provider": "p"}},
            },
            "t.yaml",
            {"TENANT": "blue"},
        )
        profile = buildProfiles(config.profiles)["p"]
        self.assertEqual(profile.headers, {"x-tenant": "blue"})
        self.assertIs(profile.dialect.supports_user, False)

    def test_fifteen_families_ship(self) -> None:
        for name in [
            "openai",
            "azure",
            "deepseek",
            "qwen",
            "moonshot",
            "zhipu",
            "openrouter",
            "groq",
            "mistral",
            "together",
            "vllm",
            "sglang",
            "ollama",
            "llamacpp",
            "lmstudio",
        ]:
            self.assertIn(name, BUILTIN)
        self.assertIn("kimi", buildProfiles({}))


class DocsTests(SynchronousTestCase):
    def test_docs_list_every_shipped_profile(self) -> None:
        with open(os.path.join(REPO, "docs", "providers.md")) as f:
            text = f.read()
        for name in BUILTIN:
            self.assertIn(f"| `{name}`", text)


# Error answers as each family sends them (before any stream), and what the
# client must see: the status kept, OpenAI's shape, context overflows named
# so the Codex CLI compacts instead of retrying.
PROVIDER_ERRORS = [
    (
        "openai",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        "context_length_exceeded",
    ),
    (
        "azure",
        400,
        {
            "error": {
                "message": "The response was filtered",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
            }
        },
        "content_filter",
    ),
    (
        "deepseek",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 65536 tokens. "
                "However, you requested 70000 tokens",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
        "context_length_exceeded",
    ),
    (
        "vllm",
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 32768 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        "context_length_exceeded",
    ),
    (
        "ollama",
        500,
        {"error": "model requires more system memory than is available"},
        "upstream_unavailable",
    ),
    (
        "groq",
        429,
        {
            "error": {
                "message": "Rate limit reached for model. Please try again in 2.5s.",
                "type": "tokens",
                "code": "rate_limit_exceeded",
            }
        },
        "rate_limit_exceeded",
    ),
    ("mistral", 401, {"message": "Unauthorized", "request_id": "abc"}, "invalid_api_key"),
    (
        "openrouter",
        402,
        {"error": {"message": "Insufficient credits", "code": 402}},
        "upstream_error",
    ),
]


class ProviderErrorTests(SynchronousTestCase):
    def test_each_familys_error_answer_keeps_its_status_in_openai_shape(self) -> None:
        from codexgw.dialects.chat.errors import upstream_error

        for family, status, body, code in PROVIDER_ERRORS:
            error = upstream_error(status, orjson.dumps(body))
            shaped = error.to_dict()["error"]
            self.assertEqual(error.status, status, family)
            self.assertEqual(shaped["code"], code, family)
            self.assertEqual(set(shaped), {"message", "type", "param", "code"}, family)
            self.assertTrue(shaped["message"], family)
