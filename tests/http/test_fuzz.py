"""
Random and mutated request bodies against both model routes: every answer
is a well-formed OpenAI error (4xx) or a success; never a 500, never a hang.
Driven without sockets, so thousands of cases run in seconds.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes.chat_upstream import textStream
from tests.harness import Harness
from tests.paths import FIXTURES

CODEX = os.path.join(FIXTURES, "codex")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "model",
    "input",
    "messages",
    "tools",
    "tool_choice",
    "stream",
    "instructions",
    "text",
    "reasoning",
    "max_output_tokens",
    "max_tokens",
    "temperature",
    "parallel_tool_calls",
    "include",
    "store",
    "metadata",
    "user",
    "stream_options",
    "response_format",
]


def codexBodies() -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(CODEX)):
        with open(os.path.join(CODEX, name)) as f:
            out.append(json.load(f)["body"])
    return out


BASES = codexBodies()


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real Codex request with a few parts replaced by random JSON."""
    body = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        target: Any = body
        path = []
        while isinstance(target, dict | list) and target and draw(st.booleans()):
            key = (
                draw(st.sampled_from(list(target)))
                if isinstance(target, dict)
                else draw(st.integers(0, len(target) - 1))
            )
            path.append((target, key))
            target = target[key]
        if path:
            parent, key = path[-1]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[key]
            else:
                parent[key] = draw(json_values)
        else:
            body[draw(st.sampled_from(FIELDS))] = draw(json_values)
    return body


random_bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)


class FuzzTests(SynchronousTestCase):
    def answer(self, route: bytes, body: Any, raw: bytes | None = None) -> None:
        h = Harness()
        client = h.connect()
        client.send(b"POST", route, raw if raw is not None else orjson.dumps(body))
        for sent in h.sent:
            if not sent.deferred.called:
                sent.respond(
                    200, {b"content-type": b"text/event-stream"}, b"".join(textStream(["ok"]))
                )
        self.assertTrue(client.raw, f"no answer (a hang) for {body!r:.300}")
        status, headers, content = client.response()
        self.assertLess(status, 500, f"{status} for {body!r:.300}: {content[:300]!r}")
        if status >= 400:
            error = orjson.loads(content)["error"]
            self.assertEqual(set(error), {"message", "type", "param", "code"})
            self.assertIsInstance(error["message"], str)
        self.assertTrue(
            client.raw.endswith(b"\r\n0\r\n\r\n") or b"content-length" in client.raw.lower()
        )

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=random_bodies)
    def test_random_bodies_on_responses(self, body: dict[str, Any]) -> None:
        self.answer(b"/v1/responses", body)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=mutated())
    def test_mutated_codex_requests_on_responses(self, body: dict[str, Any]) -> None:
        self.answer(b"/v1/responses", body)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=random_bodies)
    def test_random_bodies_on_chat(self, body: dict[str, Any]) -> None:
        self.answer(b"/v1/chat/completions", body)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=200))
    def test_random_bytes_on_both_routes(self, raw: bytes) -> None:
        self.answer(b"/v1/responses", None, raw)
        self.answer(b"/v1/chat/completions", None, raw)

    def test_deeply_nested_json_is_a_400(self) -> None:
        raw = b'{"model": "m", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        self.answer(b"/v1/responses", None, raw)
