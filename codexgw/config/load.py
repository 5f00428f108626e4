# -*- test-case-name: tests.test_config -*-
"""
Loading: a YAML file read, structured into the schema (with C{${ENV}}
interpolation), the environment's overrides applied, and every key that
depends on another checked; all problems are reported at once, as one
L{ConfigError}: first those of single keys, in the order the schema declares
them, then those between keys (a route naming no upstream, auth beyond
loopback, a store that needs Redis).

With no file at all the gateway serves the built-in offline demo model; one
environment variable (C{CODEXGW_UPSTREAM_URL}) points it at a real provider.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import yaml

from codexgw.config import checks, validators
from codexgw.config.meta import defaultOf, keyOf
from codexgw.config.problems import ConfigError, Problem, describe
from codexgw.config.reference import envOf
from codexgw.config.schema import DEMO_UPSTREAM, WIRE_APIS, Config, UpstreamConfig, demo_upstream
from codexgw.config.structure import Structurer

UPSTREAM_URL = envOf(UpstreamConfig, "base_url")
UPSTREAM_API_KEY = envOf(UpstreamConfig, "api_key")
UPSTREAM_WIRE_API = envOf(UpstreamConfig, "wire_api")
DEFAULT_UPSTREAM = envOf(Config, "default_upstream")


def _overrides(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """The variables that simply replace a key's value (C{CODEXGW_LISTEN})."""
    for f in attrs.fields(Config):
        k = keyOf(f)
        if k.override and k.env is not None and env.get(k.env):
            values[f.name] = env[k.env]


def _upstreamOverrides(s: Structurer, values: dict[str, Any], env: Mapping[str, str]) -> None:
    """
    One variable is enough to leave the demo for a real provider:
    C{CODEXGW_UPSTREAM_URL} points the default upstream (creating it if
    needed) at it, with C{CODEXGW_UPSTREAM_API_KEY} and
    C{CODEXGW_UPSTREAM_WIRE_API}; C{CODEXGW_DEFAULT_UPSTREAM} picks the
    default.
    """
    upstreams: dict[str, UpstreamConfig] = dict(values["upstreams"])
    default: str = values["default_upstream"]
    url = env.get(UPSTREAM_URL)
    if url and (message := validators.httpURL(url)) is not None:
        s.problem(UPSTREAM_URL, message)
        url = None
    elif url and validators.hasUserinfo(url):
        s.problem(
            UPSTREAM_URL,
            f"credentials do not go in the URL (got {validators.redactUserinfo(url)!r}): "
            f"put the provider's key in {UPSTREAM_API_KEY}, "
            "any other credential in upstreams.<name>.headers in the config file",
        )
        url = None
    wire = env.get(UPSTREAM_WIRE_API)
    if url and wire and wire not in WIRE_APIS:
        s.problem(UPSTREAM_WIRE_API, f"expected one of {', '.join(WIRE_APIS)}, got {wire!r}")
    if url:
        name = env.get(DEFAULT_UPSTREAM) or default or "main"
        if name == DEMO_UPSTREAM:
            name = "main"
        base = upstreams.get(name) or UpstreamConfig(name=name, base_url=url)
        upstreams[name] = attrs.evolve(
            base,
            base_url=url.rstrip("/"),
            provider="openai" if base.is_demo else base.provider,
            api_key=env.get(UPSTREAM_API_KEY) or base.api_key,
            wire_api=wire or base.wire_api,
            models=() if base.is_demo else base.models,
        )
        default = name
    if env.get(DEFAULT_UPSTREAM) and not url:
        default = env[DEFAULT_UPSTREAM]
    if not upstreams:
        upstreams[DEMO_UPSTREAM] = demo_upstream()
    values["upstreams"], values["default_upstream"] = upstreams, default


def _withDefaults(values: dict[str, Any]) -> None:
    for f in attrs.fields(Config):
        if f.name not in values and f.default is not attrs.NOTHING:
            values[f.name] = defaultOf(f)


def parse(data: Any, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """
    Validate raw YAML data and apply environment overrides.

    @param data: what C{yaml.safe_load} returned (L{None} for an empty file).
    @param source: the file name, for error messages.
    @param environ: the environment; C{os.environ} when L{None}.
    @raise ConfigError: listing every problem found.
    """
    env = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem(source, "", f"expected a mapping at the top level, got {describe(data)}")]
        )
    s = Structurer(source, env, checks.SECTION_CHECKS)
    later: list[Callable[[], None]] = []
    values: dict[str, Any] = s.fields(Config, data, later)
    for run in later:
        run()
    given = set(values)
    _withDefaults(values)
    _upstreamOverrides(s, values, env)
    checks.defaultUpstream(s, values)
    checks.routes(s, values)
    _overrides(values, env)
    checks.auth(s, values, data, given)
    checks.profiles(s, values)
    checks.redis(s, values)
    if s.problems:
        raise ConfigError(s.problems)
    values["source"] = source
    return Config(**values)


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """
    Read and validate a config file; with no path, the defaults (demo model,
    or the provider named by C{CODEXGW_UPSTREAM_URL}).

    @raise ConfigError: the file is unreadable, not YAML, or invalid.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get("CODEXGW_CONFIG") or None
    if path is None:
        return parse({}, "<defaults>", env)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError([Problem(path, "", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(path, "", f"not UTF-8 text (byte {e.start})")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        message = f"not valid YAML{where}: {getattr(e, 'problem', e)}"
        raise ConfigError([Problem(path, "", message)]) from None
    return parse(data, path, env)
