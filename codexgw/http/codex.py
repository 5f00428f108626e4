# -*- test-case-name: tests.ops.test_codex_catalog,tests.http.test_models_catalog -*-
"""
The Codex CLI's model catalog for the models this gateway routes.

Codex reads model metadata from a catalog file (C{-c model_catalog_json=}),
not from C{GET /models}; for a model outside its own catalog it falls back to
defaults without C{apply_patch}, reasoning effort or images. This renders the
C{{"models": [...]}} shape it loads, one entry per route that carries
C{codex:} metadata, served at C{GET /v1/models?format=codex}. Newer Codex
versions fetch it themselves, as C{GET /models?client_version=X} with the
C{ETag} of the catalog they hold in C{If-None-Match}: the route serves the
same shape then, tagged by L{etag} and revalidated by L{notModified}.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from codexgw.config import DEMO_MODEL, CodexModel, Config

_DESCRIPTIONS = {
    "minimal": "Fastest responses with the least reasoning",
    "low": "Fast responses with lighter reasoning",
    "medium": "Balances speed and reasoning depth for everyday tasks",
    "high": "Greater reasoning depth for complex problems",
    "xhigh": "Extra high reasoning depth for complex problems",
}


_DEFAULT_INSTRUCTIONS = os.path.join(os.path.dirname(__file__), "codex_instructions.md")


def instructions(meta: CodexModel) -> str:
    """
    The base instructions Codex sends as its system prompt for this model: a
    catalog entry must carry them (Codex refuses one without). Ours are a
    short coding-agent prompt; C{base_instructions_file} replaces them.
    """
    with open(meta.base_instructions_file or _DEFAULT_INSTRUCTIONS, encoding="utf-8") as f:
        return f.read()


def entry(slug: str, meta: CodexModel) -> dict[str, Any]:
    """One catalog entry, in the shape Codex 0.169 parses."""
    return {
        "slug": slug,
        "display_name": meta.display_name or slug,
        "description": f"{slug} through codexgw",
        "default_reasoning_level": meta.default_reasoning_level if meta.reasoning_levels else None,
        "supported_reasoning_levels": [
            {"effort": level, "description": _DESCRIPTIONS[level]}
            for level in meta.reasoning_levels
        ],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 50,
        "availability_nux": None,
        "upgrade": None,
        "base_instructions": instructions(meta),
        "model_messages": None,
        "supports_reasoning_summaries": bool(meta.reasoning_levels),
        "supports_reasoning_summary_parameter": bool(meta.reasoning_levels),
        # A reasoning model's thinking reaches Codex users only as summary
        # text (raw reasoning is hidden by default): ask for it.
        "default_reasoning_summary": "auto" if meta.reasoning_levels else "none",
        "support_verbosity": False,
        "default_verbosity": None,
        "apply_patch_tool_type": None if meta.apply_patch == "none" else meta.apply_patch,
        "web_search_tool_type": "text",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": meta.parallel_tool_calls,
        "supports_image_detail_original": False,
        "context_window": meta.context_window,
        "max_context_window": meta.context_window,
        "auto_compact_token_limit": None,
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"] if meta.images else ["text"],
        "prefer_websockets": False,
        "use_responses_lite": False,
        "supports_reasoning_effort_updates": False,
        # Codex then hides MCP tools behind its client-run tool_search,
        # which the bridge offers the upstream as a function.
        "supports_search_tool": meta.search_tool,
    }


def catalog(config: Config, everyModel: bool = False) -> dict[str, Any]:
    """
    The catalog of every exactly-named route with C{codex:} metadata.

    @param everyModel: also give every other model this gateway names (routes
        without metadata, an upstream's configured models) an entry with the
        default metadata: what C{codexgw codex-config} writes, so that no
        model it offers Codex falls back to the crippled defaults.
    """
    models = [
        entry(rule.match, rule.codex)
        for rule in config.models
        if rule.codex is not None and not _isGlob(rule.match)
    ]
    if everyModel:
        named = {m["slug"] for m in models}
        for slug in routedModels(config):
            if slug not in named:
                named.add(slug)
                meta = CodexModel(reasoning_levels=()) if slug == DEMO_MODEL else CodexModel()
                models.append(entry(slug, meta))
    return {"models": models}


def etag(body: bytes) -> bytes:
    """
    A strong entity tag for one rendering of the catalog: a hash of its
    bytes, so that every gateway serving the same catalog to the same key
    gives the same tag, and any change to an entry changes it.
    """
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'


def notModified(ifNoneMatch: bytes | None, tag: bytes) -> bool:
    """
    Whether a request carrying C{If-None-Match: ifNoneMatch} already holds
    the representation tagged C{tag} (RFC 9110 13.1.2: a list of tags or
    C{*}, compared weakly, so C{W/"x"} matches C{"x"}).
    """
    if not ifNoneMatch:
        return False
    for candidate in ifNoneMatch.split(b","):
        candidate = candidate.strip()
        if candidate == b"*":
            return True
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


def _isGlob(match: str) -> bool:
    return bool(set("*?[").intersection(match))


def routedModels(config: Config) -> list[str]:
    """
    The model names a client can ask this gateway for by name: exact routes
    first (in config order), then the default upstream's listed models.
    """
    out = [r.match for r in config.models if not _isGlob(r.match)]
    for name in config.default.models:
        if name not in out:
            out.append(name)
    return out


def baseUrlFor(listen: str) -> str | None:
    """
    The URL a client on this machine reaches a gateway listening on
    C{listen} at; L{None} for endpoints that have no such URL (UNIX sockets).
    """
    parts = listen.replace("\\:", "\0").split(":")
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6", "ssl") or len(parts) < 2 or not parts[1].isdigit():
        return None
    port = parts[1]
    host = "127.0.0.1"
    for part in parts[2:]:
        key, _, value = part.partition("=")
        if key == "interface" and value:
            value = value.replace("\0", ":")
            if value not in ("0.0.0.0", "::", "::0"):
                host = f"[{value}]" if ":" in value else value
            elif value != "0.0.0.0":
                host = "[::1]"
    scheme = "https" if kind == "ssl" else "http"
    return f"{scheme}://{host}:{port}/v1"


def _toml(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return orjson.dumps(value).decode()


def codexToml(
    config: Config,
    baseUrl: str,
    catalogPath: str | None,
    envKey: str | None,
    providerName: str = "codexgw",
    model: str | None = None,
) -> str:
    """
    The C{config.toml} lines that point the Codex CLI at this gateway.

    @param envKey: the environment variable Codex reads the gateway key
        from; L{None} when the gateway needs no key.
    """
    models = routedModels(config)
    globs = [r.match for r in config.models if _isGlob(r.match)]
    model = model or (models[0] if models else None)
    lines = [f"# Codex CLI configuration for the codexgw gateway at {baseUrl}"]
    if models:
        lines.append(f"# Models it routes by name: {', '.join(models)}")
    if globs:
        lines.append(f"# and any model matching: {', '.join(globs)}")
    lines.append(
        f"# Anything else goes to upstream {config.default_upstream!r} under its own name."
    )
    if model:
        lines.append(f"model = {_toml(model)}")
    lines.append(f"model_provider = {_toml(providerName)}")
    if catalogPath:
        lines.append(f"model_catalog_json = {_toml(catalogPath)}")
    lines += [
        "",
        f"[model_providers.{providerName}]",
        f"name = {_toml(providerName)}",
        f"base_url = {_toml(baseUrl)}",
    ]
    if envKey:
        lines.append(f"env_key = {_toml(envKey)}")
    else:
        lines.append("# env_key: none needed, this gateway runs without keys")
    lines.append('wire_api = "responses"')
    if config.websocket:
        # One socket for a whole session (GET /v1/responses): each turn
        # continues the one before by id instead of resending the history.
        lines.append("supports_websockets = true")
    else:
        lines.append("# supports_websockets: off, this gateway has server.websocket: false")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """
    C{python -m codexgw.http.codex [--config FILE] [--output PATH]}: write the
    catalog file a Codex CLI is pointed at with C{-c model_catalog_json=PATH}
    (the routes with C{codex:} metadata, as C{GET /v1/models?format=codex}
    serves it; C{codexgw codex-config} also writes the config block).
    """
    import argparse
    import sys

    from codexgw.config import ConfigError, load

    parser = argparse.ArgumentParser(prog="python -m codexgw.http.codex", description=main.__doc__)
    parser.add_argument("--config", help="the gateway's YAML config (default: $CODEXGW_CONFIG)")
    parser.add_argument("--output", "-o", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    data = orjson.dumps(catalog(config), option=orjson.OPT_INDENT_2) + b"\n"
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
