# -*- test-case-name: tests.test_config -*-
"""
The checks that need more than one key: a section's keys that depend on
each other (run as it is structured), and the whole file's (a route naming an
upstream, auth beyond loopback, a store that needs Redis), run once every
section is structured. Each reports to the L{Structurer} and never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from codexgw.config import validators
from codexgw.config.keys import ApiKey, digest
from codexgw.config.schema import (
    CodexModel,
    CorsConfig,
    KeyEntry,
    ModelRoute,
    RedisConfig,
    UpstreamConfig,
    demo_upstream,
)
from codexgw.config.structure import SectionCheck, Structurer
from codexgw.upstream.profiles import ALIASES, MESSAGES_PROFILES, ProfileError, buildProfiles


def _upstream(s: Structurer, values: dict[str, Any]) -> None:
    path = s.where + "."
    base_url: str = values["base_url"]
    if values.get("provider") == "demo":
        base_url = base_url or demo_upstream().base_url
    elif not base_url:
        s.problem(f"{path}base_url", "required: the upstream's URL, e.g. http://127.0.0.1:9000/v1")
    elif (message := validators.httpURL(base_url)) is not None:
        s.problem(f"{path}base_url", message)
    elif validators.hasUserinfo(base_url):
        s.problem(
            f"{path}base_url",
            f"credentials do not go in the URL (got {validators.redactUserinfo(base_url)!r}): "
            f"put the provider's key in {path}api_key (sent as the provider expects), "
            f"any other credential in {path}headers "
            '(e.g. Authorization: "Basic ${UPSTREAM_BASIC_AUTH}")',
        )
    values["base_url"] = base_url.rstrip("/")


def _codexModel(s: Structurer, values: dict[str, Any]) -> None:
    if "default_reasoning_level" not in values:
        levels = values.get("reasoning_levels", CodexModel().reasoning_levels)
        values["default_reasoning_level"] = "medium" if levels else None


def _route(s: Structurer, values: dict[str, Any]) -> None:
    if bool(values["upstream"]) == bool(values.get("pool")):
        s.problem(s.where, "expected exactly one of 'upstream' (one name) or 'upstreams' (a pool)")


def _keyEntry(s: Structurer, values: dict[str, Any]) -> None:
    key, sha = values.get("key"), values.get("sha256")
    if bool(key) == bool(sha):
        s.problem(s.where, "expected exactly one of 'key' or 'sha256'")
    elif sha and (message := validators.sha256Hex(sha)) is not None:
        s.problem(f"{s.where}.sha256", message)


def _cors(s: Structurer, values: dict[str, Any]) -> None:
    if values.get("allow_credentials") and "*" in values.get("allowed_origins", ()):
        s.problem(
            f"{s.where}.allowed_origins",
            "'*' cannot be combined with allow_credentials: true; list the origins",
        )


def _redis(s: Structurer, values: dict[str, Any]) -> None:
    url: str = values.get("url", RedisConfig().url)
    if (message := validators.redisURL(url)) is not None:
        s.problem(f"{s.where}.url", message)
    caFile = values.get("ca_file")
    if caFile is not None and (message := validators.redisCAFile(caFile, url)) is not None:
        s.problem(f"{s.where}.ca_file", message)


SECTION_CHECKS: Mapping[type, SectionCheck] = {
    UpstreamConfig: _upstream,
    CodexModel: _codexModel,
    ModelRoute: _route,
    KeyEntry: _keyEntry,
    CorsConfig: _cors,
    RedisConfig: _redis,
}
"""The checks of sections whose keys depend on each other, by the section's class."""


def defaultUpstream(s: Structurer, values: dict[str, Any]) -> None:
    upstreams: Mapping[str, UpstreamConfig] = values["upstreams"]
    default: str = values["default_upstream"]
    if not default:
        if len(upstreams) == 1:
            values["default_upstream"] = next(iter(upstreams))
        else:
            s.problem("default_upstream", "required when more than one upstream is defined")
    elif default not in upstreams:
        s.problem(
            "default_upstream",
            f"expected the name of an upstream ({', '.join(upstreams)}), got {default!r}",
        )


def routes(s: Structurer, values: dict[str, Any]) -> None:
    """Every upstream a route names exists and speaks the same wire_api as the others."""
    upstreams: Mapping[str, UpstreamConfig] = values["upstreams"]
    out = []
    routes: tuple[ModelRoute, ...] = values.get("models", ())
    for i, route in zip(s.positions.get("models", ()), routes, strict=True):
        path = f"models[{i}]"
        names = [(f"{path}.upstream", route.upstream)] if route.upstream else []
        names += [(f"{path}.upstreams", n) for n in route.pool]
        names += [(f"{path}.fallbacks", n) for n in route.fallbacks]
        for key, name in names:
            if name not in upstreams:
                s.problem(
                    key,
                    f"expected the name of an upstream ({', '.join(upstreams) or 'none defined'}), "
                    f"got {name!r}",
                )
        kinds = {upstreams[n].wire_api for _, n in names if n in upstreams}
        if len(kinds) > 1:
            s.problem(
                path,
                "all upstreams of one route must speak the same wire_api "
                f"(got {', '.join(sorted(kinds))})",
            )
        pool = route.pool or ((route.upstream,) if route.upstream else ())
        out.append(
            attrs.evolve(route, upstream=route.upstream or (pool[0] if pool else ""), pool=pool)
        )
    values["models"] = tuple(out)


def auth(s: Structurer, values: dict[str, Any], data: Mapping[str, Any], given: set[str]) -> None:
    """
    Auth is on whenever an auth block exists. Without one, a gateway that
    only loopback can reach runs open (with a warning at start); one that
    listens beyond loopback refuses to start until keys are configured or
    auth is switched off explicitly. The keys become L{ApiKey}s (digests).

    @param given: the fields the file gave.
    """
    entries: tuple[KeyEntry, ...] = values.get("keys", ())
    keys: list[ApiKey] = []
    plain: list[str] = []
    names: set[str] = set()
    for i, entry in zip(s.positions.get("auth.keys", ()), entries, strict=True):
        if entry.name and entry.name in names:
            s.problem(f"auth.keys[{i}].name", f"duplicate key name {entry.name!r}")
        names.add(entry.name)
        value = b""
        if entry.key and not entry.sha256:
            value = digest(entry.key)
            plain.append(entry.key)
        elif entry.sha256 and not entry.key and validators.sha256Hex(entry.sha256) is None:
            value = bytes.fromhex(entry.sha256)
        keys.append(ApiKey(name=entry.name, digest=value, models=entry.models, limits=entry.limits))
    values["keys"] = tuple(keys)
    values["gateway_secrets"] = tuple(plain)
    raw = data.get("auth")
    if raw is not None:
        enabled = values["auth_enabled"] if "auth_enabled" in given else True
        values["auth_enabled"] = enabled
        listed = raw.get("keys") if isinstance(raw, dict) else None
        if enabled and not keys and not listed:
            s.problem(
                "auth.keys",
                "at least one key is required while auth is enabled "
                "(or set auth.enabled: false to run without keys on purpose)",
            )
    elif validators.isLoopback(values["listen"]):
        values["auth_enabled"], values["auth_implicitly_off"] = False, True
    else:
        values["auth_enabled"] = True
        s.problem(
            "auth",
            f"listening on {values['listen']!r} reaches beyond this machine: configure auth.keys, "
            "or set auth.enabled: false to run without keys on purpose",
        )


def profiles(s: Structurer, values: dict[str, Any]) -> None:
    """User profiles build, and every upstream's provider is a profile."""
    try:
        known = buildProfiles(values.get("profiles", {}))
    except ProfileError as e:
        s.problem(str(e).split(":", 1)[0], str(e).split(": ", 1)[1])
        known = buildProfiles({})
    for name, upstream in values["upstreams"].items():
        if upstream.provider not in known:
            s.problem(
                f"upstreams.{name}.provider",
                f"no profile named {upstream.provider!r} (built in: {', '.join(sorted(known))}; "
                "or define it under profiles:)",
            )
        elif _speaksMessages(upstream.provider) and upstream.wire_api != "messages":
            s.problem(
                f"upstreams.{name}.wire_api",
                f"provider {upstream.provider!r} speaks Anthropic's Messages API: set "
                "wire_api: messages (its base_url ending in /v1)",
            )


def _speaksMessages(provider: str) -> bool:
    """A built-in profile (or alias) of Messages API servers."""
    return ALIASES.get(provider, provider) in MESSAGES_PROFILES


def redis(s: Structurer, values: dict[str, Any]) -> None:
    """What is shared across replicas needs the redis: block."""
    if values.get("redis") is not None:
        return
    for name, section in (
        ("rate_limits", values.get("rate_limits")),
        ("store", values.get("store")),
    ):
        if section is not None and section.backend == "redis":
            s.problem(f"{name}.backend", "redis needs a redis: block with its url")
