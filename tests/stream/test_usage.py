"""
Tests for L{codexgw.stream.usage}: the token usage a relayed answer's last
bytes carry, which the token counters and the token rate limits are fed.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from codexgw.stream.usage import findUsage, tokens

CHAT_USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0},
}

counts = st.integers(min_value=0, max_value=10**9)
# Usage objects name their counts with plain words (braces are counted, not
# parsed, so a key holding one would not be found, nor is one ever sent).
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", max_size=12)
usages = st.recursive(
    st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "x"]), counts),
    lambda inner: st.dictionaries(names, inner | counts, max_size=4),
    max_leaves=8,
)


class FindUsageTests(SynchronousTestCase):
    def test_a_whole_chat_completion(self) -> None:
        body = orjson.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": CHAT_USAGE,
            }
        )
        self.assertEqual(findUsage(body), CHAT_USAGE)

    def test_the_last_chunk_of_a_stream(self) -> None:
        first = {"choices": [{"delta": {"content": "a"}}], "usage": None}
        last = {"choices": [], "usage": CHAT_USAGE}
        tail = (
            b"data: " + orjson.dumps(first) + b"\n\n"
            b"data: " + orjson.dumps(last) + b"\n\ndata: [DONE]\n\n"
        )
        self.assertEqual(findUsage(tail), CHAT_USAGE)

    def test_the_last_of_several_is_taken(self) -> None:
        tail = b'{"usage": {"prompt_tokens": 1}}\n{"usage": {"prompt_tokens": 2}}'
        self.assertEqual(findUsage(tail), {"prompt_tokens": 2})

    def test_a_null_usage_falls_back_to_an_earlier_object(self) -> None:
        tail = b'{"usage": {"prompt_tokens": 3}} {"usage": null}'
        self.assertEqual(findUsage(tail), {"prompt_tokens": 3})

    def test_usage_in_text_is_not_an_object(self) -> None:
        self.assertIsNone(findUsage(b'{"content": "the \\"usage\\" key is"}'))

    def test_a_cut_object_is_none(self) -> None:
        self.assertIsNone(findUsage(b'{"usage": {"prompt_tokens": 3, "details": {"a": 1}'))

    def test_nothing(self) -> None:
        self.assertIsNone(findUsage(b""))
        self.assertIsNone(findUsage(b'{"id": "x"}'))

    @settings(max_examples=200, deadline=None)
    @given(usages, st.binary(max_size=40).filter(lambda b: b"usage" not in b))
    def test_any_usage_object_is_found_whole(self, usage: dict[str, Any], before: bytes) -> None:
        tail = before + b'{"object": "chat.completion", "usage": ' + orjson.dumps(usage) + b"}\n"
        self.assertEqual(findUsage(tail), usage)


class TokensTests(SynchronousTestCase):
    def test_chat_names(self) -> None:
        self.assertEqual(tokens(CHAT_USAGE), (19, 10))

    def test_anthropic_cache_tokens_are_input(self) -> None:
        usage = {
            "input_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "output_tokens": 7,
        }
        self.assertEqual(tokens(usage), (125, 7))

    def test_no_counts(self) -> None:
        self.assertIsNone(tokens({"x": 1}))
        self.assertIsNone(tokens(None))
