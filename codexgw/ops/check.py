# -*- test-case-name: tests.ops.test_cli -*-
"""
C{codexgw check-config}: everything that would stop the gateway from
starting with a config, found without starting it.

L{codexgw.config.load} already reports every schema problem at once; what it
cannot see is what the server meets only at start: an endpoint string
Twisted cannot parse, a Codex instructions file that is missing, a data
directory the SQLite store cannot create. Those are checked here, so that an
operator's deploy pipeline can refuse a config before a rollout does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from codexgw.config import DEFAULT_LISTEN, Config, ConfigError, Problem, StoreConfig, load


@attrs.frozen
class CheckResult:
    """
    @ivar config: the parsed config, when the schema was valid.
    @ivar problems: what must be fixed; the gateway would not start.
    @ivar warnings: what starts but deserves a look (auth off, the demo).
    """

    file: str
    config: Config | None
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def asDict(self) -> dict[str, Any]:
        summary = None
        if self.config is not None:
            summary = {
                "listen": self.config.listen,
                "upstreams": {
                    name: {"base_url": u.base_url, "wire_api": u.wire_api, "provider": u.provider}
                    for name, u in self.config.upstreams.items()
                },
                "default_upstream": self.config.default_upstream,
                "routes": [r.match for r in self.config.models],
            }
        return {
            "file": self.file,
            "ok": self.ok,
            "problems": [attrs.asdict(p) for p in self.problems],
            "warnings": [attrs.asdict(p) for p in self.warnings],
            "config": summary,
        }


def _listen(source: str, listen: str, reactor: Any) -> list[Problem]:
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, listen)
    except Exception as e:  # noqa: BLE001 - any parse failure is the operator's to fix
        reason = str(e) or type(e).__name__
        return [
            Problem(
                source,
                "listen",
                f"not a usable Twisted endpoint string ({reason}); "
                "expected e.g. tcp:8080:interface=127.0.0.1",
            )
        ]
    return []


def _section(data: Any, key: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict | list) else {}


def _plain(value: Any) -> str | None:
    """A string the server would use as is (interpolated ones are C{load}'s to judge)."""
    return value if isinstance(value, str) and "${" not in value else None


def _files(source: str, data: Any) -> list[Problem]:
    problems = []
    for i, route in enumerate(_section(data, "models") or ()):
        path = _plain(_section(route, "codex").get("base_instructions_file"))
        if path and not os.access(path, os.R_OK):
            problems.append(
                Problem(
                    source,
                    f"models[{i}].codex.base_instructions_file",
                    f"cannot read {path!r}; give a readable file or remove the key",
                )
            )
    store = _section(data, "store")
    if store.get("backend", "sqlite") == "sqlite":
        path = _plain(store.get("path", StoreConfig().path))
        if path:
            existing = os.path.dirname(os.path.abspath(path))
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            why = None
            if not os.path.isdir(existing):
                why = f"{existing!r} is a file, not a directory"
            elif not os.access(existing, os.W_OK | os.X_OK):
                why = f"{existing!r} is not writable"
            if why:
                problems.append(
                    Problem(
                        source,
                        "store.path",
                        f"cannot create {path!r}: {why}; point it at a writable directory, "
                        "or set store.backend: none",
                    )
                )
    return problems


def _warnings(config: Config, env: Mapping[str, str]) -> list[Problem]:
    warnings = []
    if not env.get("CODEXGW_UPSTREAM_URL"):
        for name in ("CODEXGW_UPSTREAM_API_KEY", "CODEXGW_UPSTREAM_WIRE_API"):
            if env.get(name):
                warnings.append(
                    Problem(
                        name, "", "is set but ignored: it applies only with CODEXGW_UPSTREAM_URL"
                    )
                )
    if config.auth_implicitly_off:
        warnings.append(
            Problem(
                config.source,
                "auth",
                "no auth block: the gateway runs without keys (allowed only on loopback)",
            )
        )
    elif not config.auth_enabled:
        warnings.append(
            Problem(config.source, "auth.enabled", "false: anyone who reaches it can use it")
        )
    if any(u.is_demo for u in config.upstreams.values()):
        warnings.append(
            Problem(
                config.source,
                "upstreams",
                "the built-in offline demo model is configured; it is not a real LLM",
            )
        )
    return warnings


def check(
    path: str | None, environ: Mapping[str, str] | None = None, reactor: Any = None
) -> CheckResult:
    """
    Validate the config at C{path} as the server would at start: the schema
    (every problem at once), then what only starting would reveal, checked
    even when the schema is wrong so that one run reports everything.

    @param path: the file; L{None} checks the defaults plus environment.
    @param reactor: only to parse the endpoint string (nothing listens).
    """
    env = os.environ if environ is None else environ
    path = path or env.get("CODEXGW_CONFIG") or None
    source = path or "<defaults>"
    problems: list[Problem] = []
    config = None
    try:
        config = load(path, env)
    except ConfigError as e:
        problems += e.details
    data: Any = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            # load() has reported it; nothing more can be checked.
            return CheckResult(source, None, tuple(problems))
    if reactor is None:
        from twisted.internet import reactor
    listen = _plain(env.get("CODEXGW_LISTEN") or (data or {}).get("listen") or DEFAULT_LISTEN)
    if listen:
        problems += _listen(source, listen, reactor)
    problems += _files(source, data)
    warnings = _warnings(config, env) if config is not None else []
    return CheckResult(source, None if problems else config, tuple(problems), tuple(warnings))
