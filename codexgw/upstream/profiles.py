# -*- test-case-name: tests.upstream.test_profiles -*-
"""
Provider profiles: how each family of model server wants to be spoken to.

A profile is data, not code: the URL layout and auth header, extra headers,
the output cap a Messages upstream gets when the client set none, and the
Chat dialect (which output cap field, whether C{strict} or
C{stream_options} are refused, where reasoning arrives and whether it must be
sent back). An upstream names its family with C{provider:}; a config may add
or override families under C{profiles:}, each extending a built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from codexgw.dialects.chat.dialect import ChatDialect

OPENAI_LAYOUT = "openai"  # {base_url}/chat/completions
AZURE_LAYOUT = "azure"  # {base_url}/openai/deployments/{model}/chat/completions?api-version=


@attrs.frozen
class ProviderProfile:
    """
    @ivar auth_header: the header the upstream key goes in.
    @ivar auth_prefix: what precedes the key in it (C{"Bearer "} or nothing).
    @ivar url_layout: C{openai} or C{azure} (deployment in the path).
    @ivar api_version: Azure's C{api-version} query value.
    @ivar headers: extra headers every request carries (OpenRouter's
        C{HTTP-Referer}/C{X-Title}, Anthropic's C{anthropic-version}; a
        header the client sent itself, as a Messages client sends
        C{anthropic-version}, wins over the profile's).
    @ivar default_max_tokens: for C{wire_api: messages}, the C{max_tokens}
        a bridged request gets when its client set no output cap (the
        Messages API requires one); L{None} for the Messages spoke's own
        default (32000, what Claude Code asks for).
    """

    name: str
    dialect: ChatDialect = ChatDialect()
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    url_layout: str = OPENAI_LAYOUT
    api_version: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    default_max_tokens: int | None = None


ANTHROPIC_VERSION = "2023-06-01"
"""The C{anthropic-version} a Messages upstream is sent when the client named none."""

_ANTHROPIC: dict[str, Any] = dict(headers={"anthropic-version": ANTHROPIC_VERSION})
_X_API_KEY: dict[str, Any] = dict(auth_header="x-api-key", auth_prefix="")


_OPEN_WEIGHTS: dict[str, Any] = dict(
    max_tokens_field="max_tokens",
    supports_strict=False,
    supports_reasoning_effort=False,
    supports_metadata=False,
)


def _p(name: str, **kw: Any) -> ProviderProfile:
    profileKeys = {f.name for f in attrs.fields(ProviderProfile)}
    dialect = ChatDialect(**{k: v for k, v in kw.items() if k not in profileKeys})
    return ProviderProfile(
        name=name, dialect=dialect, **{k: v for k, v in kw.items() if k in profileKeys}
    )


MESSAGES_PROFILES = frozenset(
    {
        "anthropic",
        "deepseek-anthropic",
        "zhipu-anthropic",
        "moonshot-anthropic",
        "minimax-anthropic",
        "qwen-anthropic",
    }
)
"""The built-in profiles of Messages API servers (C{wire_api: messages})."""

BUILTIN: dict[str, ProviderProfile] = {
    p.name: p
    for p in [
        # prompt_cache_key and service_tier stay off even here: "openai" is
        # also the default profile of every OpenAI-compatible server, and a
        # strict one would refuse the first request twice over.
        _p("openai"),
        _p(
            "azure",
            auth_header="api-key",
            auth_prefix="",
            url_layout=AZURE_LAYOUT,
            api_version="2024-10-21",
        ),
        _p("demo", max_tokens_field="max_tokens", supports_strict=False),
        _p(
            "deepseek",
            max_tokens_field="max_tokens",
            supports_strict=False,
            supports_reasoning_effort=False,
            send_back_reasoning=True,
        ),
        _p("qwen", **_OPEN_WEIGHTS),
        _p(
            "moonshot",
            max_tokens_field="max_tokens",
            supports_strict=False,
            supports_reasoning_effort=False,
            send_back_reasoning=True,
        ),
        _p("zhipu", **_OPEN_WEIGHTS, supports_stream_options=False),
        _p(
            "openrouter",
            max_tokens_field="max_tokens",
            headers={"HTTP-Referer": "https://github.com/codexgw", "X-Title": "codexgw"},
        ),
        _p("groq", max_tokens_field="max_tokens", supports_strict=False),
        _p(
            "mistral",
            max_tokens_field="max_tokens",
            supports_strict=False,
            supports_reasoning_effort=False,
            supports_stream_options=False,
        ),
        _p("together", **_OPEN_WEIGHTS),
        _p("vllm", **_OPEN_WEIGHTS),
        _p("sglang", **_OPEN_WEIGHTS),
        _p("ollama", **_OPEN_WEIGHTS, supports_parallel_tool_calls=False),
        _p("llamacpp", **_OPEN_WEIGHTS, single_system_message=True),
        _p("lmstudio", **_OPEN_WEIGHTS),
        # Messages API upstreams (wire_api: messages): {base_url}/messages,
        # base_url ending in /v1 (https://api.anthropic.com/v1). The
        # compatible endpoints take the key as their Claude Code guides set
        # it (ANTHROPIC_AUTH_TOKEN, i.e. Bearer; DeepSeek documents x-api-key).
        _p("anthropic", **_ANTHROPIC, **_X_API_KEY),
        _p("deepseek-anthropic", **_ANTHROPIC, **_X_API_KEY),
        _p("zhipu-anthropic", **_ANTHROPIC),
        _p("moonshot-anthropic", **_ANTHROPIC),
        _p("minimax-anthropic", **_ANTHROPIC),
        _p("qwen-anthropic", **_ANTHROPIC),
    ]
}
ALIASES = {
    "kimi": "moonshot",
    "glm": "zhipu",
    "llama.cpp": "llamacpp",
    "dashscope": "qwen",
    "kimi-anthropic": "moonshot-anthropic",
    "glm-anthropic": "zhipu-anthropic",
    "dashscope-anthropic": "qwen-anthropic",
}


class ProfileError(ValueError):
    """A user profile names an unknown field or base."""


def buildProfiles(user: Mapping[str, Mapping[str, Any]]) -> dict[str, ProviderProfile]:
    """
    The built-in profiles plus the config's, each extending another
    (C{extends:}, default C{openai}) with the fields it sets.

    @raise ProfileError: naming the profile and the field.
    """
    profiles = dict(BUILTIN)
    for alias, target in ALIASES.items():
        profiles[alias] = attrs.evolve(BUILTIN[target], name=alias)
    profileKeys = {f.name for f in attrs.fields(ProviderProfile)} - {"name", "dialect"}
    dialectKeys = {f.name for f in attrs.fields(ChatDialect)}
    pending = dict(user)
    while pending:
        progressed = False
        for name, fields in list(pending.items()):
            base = str(fields.get("extends", "openai"))
            if base not in profiles:
                if base in pending:
                    continue
                raise ProfileError(f"profiles.{name}.extends: no profile named {base!r}")
            parent = profiles[base]
            own: dict[str, Any] = {}
            dial: dict[str, Any] = {}
            for key, value in fields.items():
                if key == "extends":
                    continue
                if key in profileKeys:
                    own[key] = dict(value) if key == "headers" else value
                elif key in dialectKeys:
                    dial[key] = tuple(value) if isinstance(value, list) else value
                else:
                    raise ProfileError(
                        f"profiles.{name}.{key}: unknown field (known: "
                        f"{', '.join(sorted(profileKeys | dialectKeys))})"
                    )
            try:
                dialect = attrs.evolve(parent.dialect, **dial)
                profiles[name] = attrs.evolve(parent, name=name, dialect=dialect, **own)
            except TypeError as e:
                raise ProfileError(f"profiles.{name}: {e}") from None
            del pending[name]
            progressed = True
        if not progressed:
            raise ProfileError(f"profiles: circular 'extends' among {', '.join(pending)}")
    return profiles


def dialectFor(upstream: Any) -> ChatDialect:
    """The Chat dialect of an L{codexgw.upstream.client.Upstream}."""
    dialect: ChatDialect = upstream.profile.dialect
    return dialect


__all__ = [
    "ANTHROPIC_VERSION",
    "BUILTIN",
    "MESSAGES_PROFILES",
    "ChatDialect",
    "ProviderProfile",
    "buildProfiles",
    "dialectFor",
]
