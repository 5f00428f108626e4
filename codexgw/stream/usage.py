# -*- test-case-name: tests.stream.test_usage,tests.http.test_bridge_accounting -*-
"""
Token usage of an answer, for metrics and token rate limits.

Pass-through bodies are never parsed as they stream; usage is read once, at
the end, from the last bytes (where both a C{chat.completion} and a stream's
final usage chunk put it). Both Chat's names (C{prompt_tokens}) and the
Responses API's (C{input_tokens}) are understood.
"""

from __future__ import annotations

from typing import Any

import orjson

_KEY = b'"usage"'


def findUsage(tail: bytes) -> dict[str, Any] | None:
    """The last C{"usage": {...}} object in C{tail}, parsed; L{None} if absent."""
    at = tail.rfind(_KEY)
    while at >= 0:
        start = tail.find(b"{", at + len(_KEY))
        colon = tail.find(b":", at + len(_KEY))
        if start < 0 or colon < 0 or tail[colon + 1 : start].strip():
            at = tail.rfind(_KEY, 0, at)
            continue
        # From brace to brace, not byte by byte: a usage object is a few
        # hundred bytes and has three or four braces.
        depth, i = 0, start
        while True:
            close = tail.find(b"}", i)
            if close < 0:
                break
            open_ = tail.find(b"{", i, close)
            if open_ >= 0:
                depth, i = depth + 1, open_ + 1
                continue
            depth, i = depth - 1, close + 1
            if depth == 0:
                try:
                    found = orjson.loads(tail[start:i])
                except orjson.JSONDecodeError:
                    break
                return found if isinstance(found, dict) else None
        at = tail.rfind(_KEY, 0, at)
    return None


def tokens(usage: Any) -> tuple[int, int] | None:
    """
    (input, output) tokens from a Chat, Responses or Messages usage object
    (Anthropic's C{input_tokens} leaves out the cache reads and writes,
    which are input all the same).
    """
    if not isinstance(usage, dict):
        return None
    inp = usage.get("prompt_tokens", usage.get("input_tokens"))
    out = usage.get("completion_tokens", usage.get("output_tokens"))
    if not isinstance(inp, int) and not isinstance(out, int):
        return None
    inp = inp if isinstance(inp, int) else 0
    for cached in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        more = usage.get(cached)
        if isinstance(more, int):
            inp += more
    return (inp, out if isinstance(out, int) else 0)
