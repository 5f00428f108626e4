# -*- test-case-name: tests.http.test_messages_cli -*-
"""
C{codexgw claude-config}: the environment that points Claude Code at this
gateway, as C{codex-config} is the Codex CLI's configuration.

Claude Code reads its endpoint, key and models from the environment (or
the C{env} block of C{~/.claude/settings.json}): C{ANTHROPIC_BASE_URL}
(the gateway's root: Claude Code appends C{/v1/messages} itself), the key
as C{ANTHROPIC_AUTH_TOKEN} (sent as C{Authorization: Bearer}) or
C{ANTHROPIC_API_KEY} (sent as C{x-api-key}), the models it asks for, and
two switches that keep it from calling Anthropic's own services.
"""

from __future__ import annotations

import shlex

from codexgw.config import Config
from codexgw.http.codex import routedModels

AUTH_VARIABLES = {"token": "ANTHROPIC_AUTH_TOKEN", "api-key": "ANTHROPIC_API_KEY"}
"""How the key is given: C{token} (Bearer; Claude Code never asks to
approve it) or C{api-key} (C{x-api-key}, as the anthropic SDKs send it)."""

QUIET = (("DISABLE_TELEMETRY", "1"), ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"))
"""What keeps Claude Code from calling Anthropic's own services."""

NO_KEY = "codexgw"
"""The key Claude Code is given for a gateway that needs none (it asks to log
in without one)."""


def rootUrl(baseUrl: str) -> str:
    """The gateway's root: C{…/v1} without its C{/v1}, which Claude Code adds."""
    url = baseUrl.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def claudeEnv(
    config: Config,
    baseUrl: str,
    envKey: str | None,
    model: str | None = None,
    smallModel: str | None = None,
    auth: str = "token",
) -> list[tuple[str, str]]:
    """
    The variables, in order, as (name, value); the key is a reference to
    C{envKey} (C{${VAR}}), left for the shell to expand.

    @param envKey: the variable holding the gateway key, or L{None} for a
        gateway that needs none.
    @param model: the main model (default: the first this gateway routes
        by name); L{None} with none routed leaves Claude Code's own names,
        which a C{models:} rule such as C{claude-*} must then route.
    @param smallModel: the fast model for Claude Code's small tasks
        (default: C{model}).
    """
    models = routedModels(config)
    model = model or (models[0] if models else None)
    smallModel = smallModel or model
    key = f"${{{envKey}}}" if envKey else NO_KEY
    out = [("ANTHROPIC_BASE_URL", rootUrl(baseUrl)), (AUTH_VARIABLES[auth], key)]
    if model:
        for name in (
            "ANTHROPIC_MODEL",
            "ANTHROPIC_DEFAULT_OPUS_MODEL",
            "ANTHROPIC_DEFAULT_SONNET_MODEL",
        ):
            out.append((name, model))
    if smallModel:
        for name in ("ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_SMALL_FAST_MODEL"):
            out.append((name, smallModel))
    out.extend(QUIET)
    return out


def _shell(value: str) -> str:
    if value.startswith("${") and value.endswith("}"):
        return f'"{value}"'  # a reference the shell expands
    return shlex.quote(value)


def shellLines(config: Config, baseUrl: str, variables: list[tuple[str, str]]) -> str:
    """The variables as C{export} lines for a POSIX shell, with what they mean."""
    models = routedModels(config)
    lines = [f"# Claude Code through the codexgw gateway at {rootUrl(baseUrl)}"]
    if models:
        lines.append(f"# Models it routes by name: {', '.join(models)}")
    else:
        lines.append(
            "# It routes no model by name: Claude Code asks for claude-* names, which a "
            "models: rule must send to an upstream (or the default upstream gets them)."
        )
    lines += [f"export {name}={_shell(value)}" for name, value in variables]
    return "\n".join(lines) + "\n"


__all__ = ["AUTH_VARIABLES", "NO_KEY", "QUIET", "claudeEnv", "rootUrl", "shellLines"]
