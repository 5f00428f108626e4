# -*- test-case-name: tests.test_profiles -*-
"""
Provider families and the Chat dialect each speaks.

A profile is data: the differences from OpenAI's Chat Completions that a
bridge must respect (which output cap field, whether C{strict} or
C{stream_options} are refused, whether reasoning must be sent back). An
upstream names its family with C{provider:}; unknown families get OpenAI's.
"""

from __future__ import annotations

from typing import Any

from codexgw.translate.dialect import ChatDialect

_OPEN_WEIGHTS = dict(
    max_tokens_field="max_tokens",
    supports_strict=False,
    supports_reasoning_effort=False,
    supports_metadata=False,
)

PROFILES: dict[str, ChatDialect] = {
    "openai": ChatDialect(),
    "azure": ChatDialect(),
    "demo": ChatDialect(max_tokens_field="max_tokens", supports_strict=False),
    "deepseek": ChatDialect(
        max_tokens_field="max_tokens",
        supports_strict=False,
        supports_reasoning_effort=False,
        send_back_reasoning=True,
    ),
    "moonshot": ChatDialect(
        max_tokens_field="max_tokens",
        supports_strict=False,
        supports_reasoning_effort=False,
        send_back_reasoning=True,
    ),
    "qwen": ChatDialect(**_OPEN_WEIGHTS),  # type: ignore[arg-type]
    "zhipu": ChatDialect(**_OPEN_WEIGHTS, supports_stream_options=False),  # type: ignore[arg-type]
    "vllm": ChatDialect(**_OPEN_WEIGHTS),  # type: ignore[arg-type]
    "sglang": ChatDialect(**_OPEN_WEIGHTS),  # type: ignore[arg-type]
    "ollama": ChatDialect(**_OPEN_WEIGHTS, supports_parallel_tool_calls=False),  # type: ignore[arg-type]
    "llamacpp": ChatDialect(**_OPEN_WEIGHTS, single_system_message=True),  # type: ignore[arg-type]
    "lmstudio": ChatDialect(**_OPEN_WEIGHTS),  # type: ignore[arg-type]
    "groq": ChatDialect(max_tokens_field="max_tokens", supports_strict=False),
    "mistral": ChatDialect(
        max_tokens_field="max_tokens",
        supports_strict=False,
        supports_reasoning_effort=False,
        supports_stream_options=False,
    ),
    "together": ChatDialect(**_OPEN_WEIGHTS),  # type: ignore[arg-type]
    "openrouter": ChatDialect(max_tokens_field="max_tokens"),
}
PROFILES["kimi"] = PROFILES["moonshot"]
PROFILES["glm"] = PROFILES["zhipu"]
PROFILES["llama.cpp"] = PROFILES["llamacpp"]


def dialectFor(upstream: Any) -> ChatDialect:
    """The dialect of an L{codexgw.upstream.Upstream} (by its C{provider})."""
    dialect = getattr(upstream, "dialect", None)
    if isinstance(dialect, ChatDialect):
        return dialect
    found = PROFILES.get(upstream.config.provider, PROFILES["openai"])
    upstream.dialect = found
    return found


__all__ = ["PROFILES", "ChatDialect", "dialectFor"]
