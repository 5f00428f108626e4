# -*- test-case-name: tests.ops.test_cli -*-
"""
The C{codexgw} command for operators, beside C{twistd codexgw} (which serves):

  - C{codexgw check-config FILE}: validate a config as the server would;
  - C{codexgw probe}: ask a provider which dialect features it supports;
  - C{codexgw codex-config}: the Codex CLI configuration for this gateway;
  - C{codexgw claude-config}: the environment Claude Code needs for it.

Results print in a human form, or as one JSON document with C{--json};
progress goes to standard error so that standard output stays parseable.
Exit codes: 0 fine, 1 a problem was found, 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import orjson
from twisted.internet.defer import Deferred

from codexgw._version import __version__

EX_PROBLEM = 1
EX_USAGE = 2


def _dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="codexgw",
        description="Operator tools for the codexgw gateway (serve it with `twistd codexgw`).",
    )
    top.add_argument("--version", action="version", version=f"codexgw {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check-config",
        help="validate a config file as the server would",
        description="Validate a gateway config as `twistd codexgw` would at start: print every "
        "problem with its file, key and fix, and exit 1 if there is any.",
    )
    check.add_argument("file", metavar="FILE", help="the YAML config file")
    check.add_argument("--json", action="store_true", help="print one JSON document")

    probe = sub.add_parser(
        "probe",
        help="ask a provider which dialect features it supports",
        description="Send a few small real requests to a provider and report what its dialect "
        "supports: streaming, usage in stream, tool calls (streamed arguments, parallel), the "
        "reasoning field and which request fields it accepts. The key is read from the config "
        "or from an environment variable, never from the command line.",
    )
    target = probe.add_mutually_exclusive_group(required=True)
    target.add_argument("--upstream", metavar="NAME", help="an upstream of the config")
    target.add_argument("--base-url", metavar="URL", help="a provider's base URL, e.g. .../v1")
    probe.add_argument("--config", metavar="FILE", help="the config (default: $CODEXGW_CONFIG)")
    probe.add_argument(
        "--wire-api", choices=("chat", "responses"), help="what --base-url speaks (default chat)"
    )
    probe.add_argument(
        "--provider", metavar="PROFILE", help="profile for URL layout and auth (default openai)"
    )
    probe.add_argument("--api-key-env", metavar="VAR", help="environment variable with the key")
    probe.add_argument("--model", metavar="MODEL", help="model to ask (default: the first listed)")
    probe.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per request (60)"
    )
    probe.add_argument(
        "--write-profile", metavar="FILE", help="write the findings as a provider profile"
    )
    probe.add_argument(
        "--profile-name", metavar="NAME", help="name of the written profile (default: probed)"
    )
    probe.add_argument("--json", action="store_true", help="print one JSON document")

    codex = sub.add_parser(
        "codex-config",
        help="print the Codex CLI config.toml block for this gateway",
        description="Print the Codex CLI config.toml block for this gateway (provider, base URL, "
        "env key, the models it routes) and write the model catalog file it points at with "
        "model_catalog_json, so Codex gives bridged models apply_patch and reasoning levels.",
    )
    codex.add_argument("--config", metavar="FILE", help="the config (default: $CODEXGW_CONFIG)")
    codex.add_argument(
        "--base-url", metavar="URL", help="the gateway as clients reach it (default: from listen)"
    )
    codex.add_argument(
        "--env-key",
        metavar="VAR",
        help="variable Codex reads the gateway key from (default CODEXGW_API_KEY when auth is on)",
    )
    codex.add_argument(
        "--catalog",
        metavar="PATH",
        default="codexgw-models.json",
        help="model catalog file to write (default ./codexgw-models.json)",
    )
    codex.add_argument("--provider-name", default="codexgw", help="provider id in config.toml")
    codex.add_argument("--model", help="the default model (default: the first routed)")
    codex.add_argument("--json", action="store_true", help="print one JSON document")

    claude = sub.add_parser(
        "claude-config",
        help="print the environment that points Claude Code at this gateway",
        description="Print the shell environment a Claude Code user sets for this gateway "
        "(ANTHROPIC_BASE_URL, the key variable, the models, and the switches that keep Claude "
        "Code from calling Anthropic's own services).",
    )
    claude.add_argument("--config", metavar="FILE", help="the config (default: $CODEXGW_CONFIG)")
    claude.add_argument(
        "--base-url", metavar="URL", help="the gateway as clients reach it (default: from listen)"
    )
    claude.add_argument(
        "--env-key",
        metavar="VAR",
        help="variable holding the gateway key (default CODEXGW_API_KEY when auth is on)",
    )
    claude.add_argument(
        "--auth",
        choices=("token", "api-key"),
        default="token",
        help="pass the key as ANTHROPIC_AUTH_TOKEN (token, the default) or ANTHROPIC_API_KEY",
    )
    claude.add_argument("--model", help="the main model (default: the first routed)")
    claude.add_argument("--small-model", help="the fast model for small tasks (default: --model)")
    claude.add_argument("--json", action="store_true", help="print one JSON document")
    return top


def checkConfig(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from codexgw.ops.check import check

    result = check(args.file)
    if args.json:
        out.write(_dumps(result.asDict()))
        return 0 if result.ok else EX_PROBLEM
    for problem in result.problems:
        out.write(f"error: {problem}\n")
    for warning in result.warnings:
        out.write(f"warning: {warning}\n")
    if result.ok:
        assert result.config is not None
        config = result.config
        out.write(
            f"{result.file}: ok ({len(config.upstreams)} upstream(s), "
            f"{len(config.models)} route(s), listening on {config.listen})\n"
        )
        return 0
    count = len(result.problems)
    out.write(f"{result.file}: {count} problem{'s' if count != 1 else ''}\n")
    return EX_PROBLEM


class _WithoutSecrets(Mapping[str, str]):
    """The environment, where a variable that is not set reads as empty."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "")

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def codexConfig(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from codexgw.config import ConfigError, load
    from codexgw.http import codex

    try:
        # The block needs no upstream secret: unset ${VARS} read as empty.
        config = load(args.config, _WithoutSecrets())
    except ConfigError as e:
        err.write(f"codexgw: {e}\n")
        return EX_PROBLEM
    baseUrl = args.base_url or codex.baseUrlFor(config.listen)
    if baseUrl is None:
        err.write(f"codexgw: cannot tell a URL for listen {config.listen!r}; pass --base-url\n")
        return EX_USAGE
    envKey = args.env_key or ("CODEXGW_API_KEY" if config.auth_enabled else None)
    data = codex.catalog(config, everyModel=True)
    catalogPath = None
    if data["models"]:
        catalogPath = os.path.abspath(args.catalog)
        with open(catalogPath, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    toml = codex.codexToml(config, baseUrl, catalogPath, envKey, args.provider_name, args.model)
    if args.json:
        out.write(
            _dumps(
                {
                    "toml": toml,
                    "base_url": baseUrl,
                    "env_key": envKey,
                    "catalog": catalogPath,
                    "models": [m["slug"] for m in data["models"]],
                }
            )
        )
        return 0
    if catalogPath:
        err.write(f"wrote {len(data['models'])} model(s) to {catalogPath}\n")
    err.write("add this to ~/.codex/config.toml:\n")
    out.write(toml)
    return 0


def claudeConfig(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from codexgw.config import ConfigError, load
    from codexgw.http import codex
    from codexgw.ops import claude

    try:
        config = load(args.config, _WithoutSecrets())
    except ConfigError as e:
        err.write(f"codexgw: {e}\n")
        return EX_PROBLEM
    baseUrl = args.base_url or codex.baseUrlFor(config.listen)
    if baseUrl is None:
        err.write(f"codexgw: cannot tell a URL for listen {config.listen!r}; pass --base-url\n")
        return EX_USAGE
    envKey = args.env_key or ("CODEXGW_API_KEY" if config.auth_enabled else None)
    variables = claude.claudeEnv(config, baseUrl, envKey, args.model, args.small_model, args.auth)
    if args.json:
        out.write(_dumps({"env": dict(variables), "env_key": envKey}))
        return 0
    err.write("set this in the shell that runs claude (or in ~/.claude/settings.json's env):\n")
    out.write(claude.shellLines(config, baseUrl, variables))
    return 0


async def probe(args: argparse.Namespace, out: TextIO, err: TextIO, reactor: Any) -> int:
    """C{codexgw probe}; a coroutine so that tests await it on their own reactor."""
    import treq

    from codexgw.config import ConfigError, Timeouts, UpstreamConfig, load
    from codexgw.ops.probe import probe as runProbe
    from codexgw.ops.probe import profileYAML
    from codexgw.upstream.client import Upstream, makeAgent, makePool
    from codexgw.upstream.profiles import ProfileError, buildProfiles

    profileName = args.profile_name or args.upstream or "probed"
    try:
        if args.upstream:
            config = load(args.config)
            if args.upstream not in config.upstreams:
                names = ", ".join(config.upstreams)
                err.write(f"codexgw: no upstream {args.upstream!r} in the config ({names})\n")
                return EX_USAGE
            upstreamConfig = config.upstreams[args.upstream]
            if upstreamConfig.is_demo:
                err.write("codexgw: the demo upstream is in-process; probe a real provider\n")
                return EX_USAGE
            profiles = buildProfiles(config.profiles)
        else:
            apiKey = os.environ.get(args.api_key_env) if args.api_key_env else None
            if args.api_key_env and not apiKey:
                err.write(f"codexgw: environment variable {args.api_key_env} is not set\n")
                return EX_USAGE
            upstreamConfig = UpstreamConfig(
                name="probe",
                base_url=args.base_url.rstrip("/"),
                wire_api=args.wire_api or "chat",
                provider=args.provider or "openai",
                api_key=apiKey,
            )
            profiles = buildProfiles({})
    except (ConfigError, ProfileError) as e:
        err.write(f"codexgw: {e}\n")
        return EX_PROBLEM
    if upstreamConfig.provider not in profiles:
        err.write(f"codexgw: no profile named {upstreamConfig.provider!r}\n")
        return EX_USAGE
    wire = args.wire_api or upstreamConfig.wire_api
    if args.write_profile and wire != "chat":
        err.write(
            "codexgw: --write-profile describes Chat dialects; this upstream speaks responses\n"
        )
        return EX_USAGE
    upstreamConfig = UpstreamConfig(
        name=upstreamConfig.name,
        base_url=upstreamConfig.base_url,
        wire_api=wire,
        provider=upstreamConfig.provider,
        api_key=upstreamConfig.api_key,
        headers=upstreamConfig.headers,
        timeouts=Timeouts(connect=min(upstreamConfig.timeouts.connect, args.timeout)),
    )
    pool = makePool(reactor, maxPersistentPerHost=2)
    agent = makeAgent(reactor, pool, upstreamConfig.timeouts.connect)
    upstream = Upstream(
        upstreamConfig, reactor, pool, agent=agent, profile=profiles[upstreamConfig.provider]
    )

    async def send(method: bytes, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        model = body.get("model") if body else None
        data = orjson.dumps(body) if body is not None else None
        try:
            response = await upstream.request(method, path, data, timeout=args.timeout, model=model)
            reading: Deferred[bytes] = treq.content(response)
            reading.addTimeout(args.timeout, reactor)
            return response.code, await reading
        except Exception as e:  # noqa: BLE001 - reported as the probe's finding
            return 0, orjson.dumps({"error": {"message": str(e) or type(e).__name__}})

    def progress(step: str) -> None:
        if not args.json:
            err.write(f"probing: {step}\n")

    try:
        report = await runProbe(send, upstreamConfig.base_url, wire, args.model, progress)
    finally:
        await pool.closeCachedConnections()
    written = None
    if args.write_profile and report.error is None:
        extends = upstreamConfig.provider if upstreamConfig.provider != "demo" else "openai"
        with open(args.write_profile, "w", encoding="utf-8") as f:
            f.write(profileYAML(profileName, extends, report))
        written = os.path.abspath(args.write_profile)
    if args.json:
        document = report.asDict()
        document["profile_file"] = written
        out.write(_dumps(document))
    else:
        out.write(report.table())
        if written:
            out.write(f"wrote profile {profileName!r} to {written}\n")
    return 0 if report.error is None else EX_PROBLEM


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command == "check-config":
        return checkConfig(args, out, err)
    if args.command == "codex-config":
        return codexConfig(args, out, err)
    if args.command == "claude-config":
        return claudeConfig(args, out, err)
    from twisted.internet import task

    code: list[int] = []

    async def run(reactor: Any) -> None:
        code.append(await probe(args, out, err, reactor))

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if not code:
            return int(e.code or 0)
    return code[0] if code else EX_PROBLEM


if __name__ == "__main__":
    raise SystemExit(main())
