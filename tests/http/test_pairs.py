"""
Tests for L{codexgw.http.pairs} and the spoke registry: every pair of
dialects has its bridge, made (and its dialect loaded) only once a call
needs it, so a gateway that serves no Messages client or upstream never
carries the Anthropic dialect.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects import HUB, Spokes
from codexgw.http.pairs import Made, Pairs


class PairsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.made: list[tuple[str, ...]] = []
        self.spokes = Spokes(
            {"chat": "codexgw.dialects.chat:CHAT", "messages": "codexgw.dialects.messages:MESSAGES"}
        )

        def bridge(**kw: Any) -> Any:
            client = kw.get("client")
            self.made.append(("bridge", kw["spoke"].name, client.name if client else HUB))
            return object()

        def reverse(**kw: Any) -> Any:
            self.made.append(("reverse", kw["spoke"].name, str(kw["early"])))
            return object()

        self.pairs = Pairs(self.spokes, bridge, reverse)  # type: ignore[arg-type]

    def test_every_pair_of_distinct_dialects_is_listed_without_making_any(self) -> None:
        self.assertEqual(
            set(self.pairs),
            {
                (HUB, "chat"),
                ("chat", HUB),
                ("messages", "chat"),
                (HUB, "messages"),
                ("messages", HUB),
                ("chat", "messages"),
            },
        )
        self.assertEqual(self.made, [])

    def test_a_pair_is_made_once_when_asked_for(self) -> None:
        first = self.pairs[(HUB, "chat")]
        self.assertIs(self.pairs[(HUB, "chat")], first)
        self.assertEqual(self.made, [("bridge", "chat", HUB)])
        self.pairs[("messages", HUB)]
        self.assertEqual(self.made[-1], ("reverse", "messages", "True"))
        self.pairs[("messages", "chat")]
        self.assertEqual(self.made[-1], ("bridge", "chat", "messages"))

    def test_a_same_dialect_pair_is_not_a_bridge(self) -> None:
        self.assertNotIn(("chat", "chat"), self.pairs)
        self.assertNotIn((HUB, HUB), self.pairs)
        self.assertRaises(KeyError, lambda: self.pairs[("chat", "chat")])
        self.assertEqual(self.made, [])

    def test_made_values_are_made_once_and_only_for_their_names(self) -> None:
        calls: list[str] = []
        made = Made(["chat", "messages"], lambda name: calls.append(name) or name.upper())
        self.assertEqual(list(made), ["chat", "messages"])
        self.assertEqual(made["chat"], "CHAT")
        self.assertEqual(made["chat"], "CHAT")
        self.assertEqual(calls, ["chat"])
        self.assertNotIn("responses", made)


LOADED = """
import sys
from codexgw.config import parse
from codexgw.service import Gateway
config = parse({"upstreams": {"main": {"base_url": "http://127.0.0.1:9/v1"}},
                "default_upstream": "main", "store": {"backend": "none"}}, "t.yaml", {})
gateway = Gateway(config)
print("idle", "codexgw.dialects.messages" in sys.modules, "codexgw.http.messages" in sys.modules)
gateway.app._messagesRoute()
print("after", "codexgw.dialects.messages" in sys.modules, "codexgw.http.messages" in sys.modules)
"""


class LoadedWhenNeededTests(SynchronousTestCase):
    def test_the_messages_dialect_loads_with_the_first_messages_call(self) -> None:
        out = subprocess.run(
            [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split("\n")
        self.assertEqual(out[:2], ["idle False False", "after True True"])
