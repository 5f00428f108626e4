"""
The Codex model catalog the gateway renders (the CLI test in
tests/integration/test_codex_cli.py proves Codex loads it).
"""

from __future__ import annotations

import io
import sys

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import ConfigError, parse
from codexgw.http.codex import catalog, main
from tests.harness import Harness

ROUTES = {
    "upstreams": {"main": {"base_url": "http://h/v1"}},
    "models": [
        {
            "match": "deepseek-coder",
            "upstream": "main",
            "codex": {"context_window": 64000, "reasoning_levels": ["low", "high"], "images": True},
        },
        {"match": "plain", "upstream": "main"},
        {"match": "glob-*", "upstream": "main", "codex": {}},
    ],
}


class CatalogTests(SynchronousTestCase):
    def test_routes_with_codex_metadata_become_entries(self) -> None:
        [entry] = catalog(parse(ROUTES, "t.yaml", {}))["models"]
        self.assertEqual(entry["slug"], "deepseek-coder")
        self.assertEqual(entry["context_window"], 64000)
        self.assertEqual(entry["apply_patch_tool_type"], "freeform")
        self.assertEqual(
            [lvl["effort"] for lvl in entry["supported_reasoning_levels"]], ["low", "high"]
        )
        self.assertEqual(entry["input_modalities"], ["text", "image"])
        self.assertIn("apply_patch", entry["base_instructions"])

    def test_a_reasoning_model_asks_codex_for_summaries_and_a_plain_one_does_not(self) -> None:
        """Codex shows a model's thinking only as summaries, and asks for them only if told."""
        config = parse(
            {
                **ROUTES,
                "models": [
                    *ROUTES["models"],
                    {"match": "chat", "upstream": "main", "codex": {"reasoning_levels": []}},
                ],
            },  # type: ignore[list-item]
            "t.yaml",
            {},
        )
        entries = {e["slug"]: e for e in catalog(config)["models"]}
        self.assertEqual(entries["deepseek-coder"]["default_reasoning_summary"], "auto")
        self.assertTrue(entries["deepseek-coder"]["supports_reasoning_summary_parameter"])
        self.assertEqual(entries["chat"]["default_reasoning_summary"], "none")

    def test_models_route_serves_it_with_format_codex(self) -> None:
        h = Harness(parse(ROUTES, "t.yaml", {}))
        client = h.connect()
        client.send(b"GET", b"/v1/models?format=codex")
        self.assertEqual([m["slug"] for m in client.json()["models"]], ["deepseek-coder"])
        self.assertEqual(h.sent, [])

    def test_it_is_written_as_a_file_too(self) -> None:
        path = self.mktemp()
        conf = self.mktemp()
        with open(conf, "w") as f:
            f.write(orjson.dumps(ROUTES).decode())
        self.assertEqual(main(["--config", conf, "--output", path]), 0)
        with open(path, "rb") as f:
            self.assertEqual(orjson.loads(f.read())["models"][0]["slug"], "deepseek-coder")

    def test_bad_metadata_is_a_config_error(self) -> None:
        bad = {
            "upstreams": ROUTES["upstreams"],
            "models": [
                {
                    "match": "x",
                    "upstream": "main",
                    "codex": {"apply_patch": "json", "reasoning_levels": ["max"]},
                }
            ],
        }
        with self.assertRaises(ConfigError) as e:
            parse(bad, "t.yaml", {})
        self.assertEqual(len(e.exception.problems), 2)

    def test_main_reports_config_errors(self) -> None:
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(main(["--config", "/nonexistent.yaml"]), 2)
        self.assertIn("cannot read", err.getvalue())
