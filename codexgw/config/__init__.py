# -*- test-case-name: tests.test_config -*-
"""
Configuration: YAML with C{${ENV}} interpolation and environment overrides,
validated once at start into frozen value objects.

Every problem is reported with the file, the dotted key and what was expected,
and all problems are reported at once, so an operator fixes a config in one
pass instead of one error per restart.

With no file at all the gateway serves the built-in offline demo model; one
environment variable (C{CODEXGW_UPSTREAM_URL}) points it at a real provider.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import yaml

from codexgw.config.keys import ApiKey, KeyLimits, digest
from codexgw.upstream.profiles import ProfileError, buildProfiles

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEMO_UPSTREAM = "demo"
DEMO_MODEL = "codexgw-demo"
"""The built-in offline demo model's name (codexgw.demo serves it)."""
WIRE_APIS = ("chat", "responses")

T = TypeVar("T")


@attrs.frozen
class Problem:
    """
    One thing wrong with a configuration, kept structured so that
    C{codexgw check-config --json} can report it field by field.

    @ivar file: the file (or C{<defaults>}, or an environment variable's
        source) the problem is in.
    @ivar key: the dotted key (C{upstreams.main.timeouts.idle}); empty when
        the whole file is at fault.
    @ivar message: what is wrong and what is expected instead: the fix.
    """

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if not self.key:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """
    The configuration is invalid.

    @ivar details: every problem found, in the order found.
    @ivar problems: the same, one line each, naming file, key and expectation.
    """

    def __init__(self, details: list[Problem]) -> None:
        self.details = details
        self.problems = [str(p) for p in details]
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


@attrs.frozen
class Timeouts:
    """
    Per-upstream timeouts in seconds; C{None} disables one.

    @ivar connect: establishing the TCP/TLS connection.
    @ivar first_byte: from sending the request to the response headers.
    @ivar idle: the longest silence between two body chunks of a stream.
    @ivar total: the whole exchange, body included.
    """

    connect: float = 10.0
    first_byte: float = 300.0
    idle: float = 300.0
    total: float | None = None


@attrs.frozen
class Retries:
    """
    Retries before the first byte reaches the client.

    @ivar max_attempts: attempts in all (1 disables retries).
    @ivar backoff_base: seconds before the first retry, doubling after.
    @ivar backoff_max: the longest wait between attempts.
    @ivar retry_after_max: the longest upstream C{Retry-After} honoured.
    @ivar budget: seconds after which no new attempt starts.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    budget: float = 60.0


@attrs.frozen
class UpstreamConfig:
    """
    One model server.

    @ivar wire_api: the protocol it speaks, C{chat} or C{responses}.
    @ivar provider: its dialect family; C{demo} is the built-in offline model.
    @ivar models: the models it serves, when it should not be asked.
    @ivar api_key: sent upstream, never logged (hence C{repr=False}).
    """

    name: str
    base_url: str
    wire_api: str = "chat"
    provider: str = "openai"
    api_key: str | None = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    models: tuple[str, ...] = ()
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()

    @property
    def is_demo(self) -> bool:
        return self.provider == "demo"


@attrs.frozen
class ModelRoute:
    """
    A routing rule: requests for models matching C{match} (an exact name or a
    shell glob) go to C{upstream} (or are balanced over C{pool}, with cache
    affinity), renamed to C{model} when set; C{fallbacks} are tried in order
    when those fail before the first byte.
    """

    match: str
    upstream: str
    model: str | None = None
    pool: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    codex: CodexModel | None = None


@attrs.frozen
class CodexModel:
    """
    What the Codex CLI needs to know of a bridged model (its catalog entry):
    without it Codex warns "Model metadata ... not found" and withholds the
    apply_patch tool, reasoning effort and image input.

    @ivar apply_patch: C{freeform} (a custom tool), C{function} or C{none}.
    @ivar reasoning_levels: efforts offered; empty for a model that does
        not reason.
    """

    context_window: int = 128000
    display_name: str | None = None
    apply_patch: str = "freeform"
    reasoning_levels: tuple[str, ...] = ("low", "medium", "high")
    default_reasoning_level: str | None = "medium"
    images: bool = False
    parallel_tool_calls: bool = True
    base_instructions_file: str | None = None


@attrs.frozen
class RateLimitConfig:
    """
    @ivar backend: C{memory} (one process) or C{redis} (shared by replicas).
    @ivar failure_policy: with Redis away, C{open} serves, C{closed} refuses.
    @ivar requests_per_minute: default per key (a key's own limits win).
    """

    backend: str = "memory"
    failure_policy: str = "open"
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@attrs.frozen
class RedisConfig:
    """One Redis for everything shared across replicas (limits, later state)."""

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", repr=False)
    timeout: float = 1.0
    #: For C{rediss://}: the CA file the server's certificate is checked
    #: against; L{None} for the system's trust.
    ca_file: str | None = None


@attrs.frozen
class StoreConfig:
    """
    Where bridged responses are kept for C{previous_response_id}.

    @ivar backend: C{sqlite} (a file, the default), C{redis} (shared by
        replicas, using the C{redis:} block) or C{none}.
    """

    backend: str = "sqlite"
    path: str = "data/codexgw-responses.sqlite3"
    ttl: float = 30 * 24 * 3600.0
    max_entry_bytes: int = 8 * 1024 * 1024


@attrs.frozen
class CorsConfig:
    """
    @ivar allowed_origins: exact origins (C{https://app.example}) or C{*}.
    @ivar allow_credentials: never together with C{*} (validation refuses it).
    """

    allowed_origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 600


@attrs.frozen
class Config:
    """
    The validated gateway configuration.

    @ivar source: the file it came from, or C{<defaults>}.
    @ivar heartbeat_interval: seconds of upstream silence before a stream gets
        a keep-alive.
    @ivar models_cache_ttl: how long C{GET /v1/models} trusts an upstream list.
    @ivar request_timeout: seconds a client has to send a whole request; 0
        for no deadline.
    @ivar max_connections: client connections served at once; 0 for no cap.
    """

    upstreams: Mapping[str, UpstreamConfig]
    default_upstream: str
    listen: str = DEFAULT_LISTEN
    models: tuple[ModelRoute, ...] = ()
    heartbeat_interval: float = 15.0
    models_cache_ttl: float = 60.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_sse_line_bytes: int = 4 * 1024 * 1024
    health_probe_interval: float = 5.0
    drain_timeout: float = 30.0
    circuit_threshold: int = 5
    circuit_cooldown: float = 30.0
    request_timeout: float = 60.0
    max_connections: int = 10000
    auth_enabled: bool = False
    auth_implicitly_off: bool = False
    keys: tuple[ApiKey, ...] = ()
    cors: CorsConfig = CorsConfig()
    profiles: Mapping[str, Any] = attrs.field(factory=dict)
    rate_limits: RateLimitConfig = RateLimitConfig()
    redis: RedisConfig | None = None
    store: StoreConfig = StoreConfig()
    source: str = "<defaults>"
    gateway_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    """
    The gateway keys written in the config as plain text (not those given by
    digest), kept only so that no upstream can echo one to a client.
    """

    @property
    def default(self) -> UpstreamConfig:
        return self.upstreams[self.default_upstream]


def demo_upstream() -> UpstreamConfig:
    """The built-in offline model's upstream; its address is bound at start."""
    return UpstreamConfig(
        name=DEMO_UPSTREAM,
        base_url="http://127.0.0.1:0/v1",
        provider="demo",
        models=("codexgw-demo",),
    )


_EMPTY: Mapping[str, Any] = {}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Reader:
    """Walks raw YAML data, collecting problems instead of raising at the first."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.source, key, message))

    def interpolate(self, key: str, value: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = self.environ.get(name)
            # As in the shell: ${VAR:-default} also replaces an empty value.
            if value and default is not None:
                return value
            if default is not None:
                return default
            if value is not None:
                return value
            self.problem(
                key,
                f"environment variable {name} is not set (write ${{{name}:-}} to make it optional)",
            )
            return ""

        return _ENV_REF.sub(sub, value)

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        kind: Callable[[str, Any], T | None],
        default: T,
    ) -> T:
        if key not in data or data[key] is None:
            return default
        value = kind(f"{path}{key}", data[key])
        return default if value is None else value

    def string(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_kind(value)}")
            return None
        return self.interpolate(key, value)

    def number(self, key: str, value: Any) -> float | None:
        if isinstance(value, str):
            value = self.interpolate(key, value)
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.problem(key, f"expected a non-negative number of seconds, got {value!r}")
            return None
        return float(value)

    def integer(self, key: str, value: Any, zero: bool = False) -> int | None:
        """A positive whole number (or 0 too, with C{zero})."""
        if isinstance(value, str):
            value = self.interpolate(key, value)
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            expected = "a whole number (0 for none)" if zero else "a positive whole number"
            self.problem(key, f"expected {expected}, got {value!r}")
            return None
        return value

    def count(self, key: str, value: Any) -> int | None:
        """A whole number that may be 0 (for keys where 0 means off)."""
        return self.integer(key, value, zero=True)

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(self.interpolate(key, value).lower(), value)
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {value!r}")
            return None
        return value

    def strings(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.problem(key, f"expected a list of strings, got {_kind(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            s = self.string(f"{key}[{i}]", item)
            if s:
                out.append(s)
        return tuple(out)

    def mapping(self, key: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(key, f"expected a mapping, got {_kind(value)}")
            return None
        return value

    def unknown(self, data: Mapping[str, Any], path: str, section: str) -> None:
        known = SECTIONS[section]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"{path}{key}", f"unknown key ({hint}expected one of: {', '.join(known)})"
                )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


_TOP_KEYS = (
    "listen",
    "upstreams",
    "default_upstream",
    "models",
    "server",
    "auth",
    "cors",
    "profiles",
    "rate_limits",
    "redis",
    "store",
)
_UPSTREAM_KEYS = (
    "base_url",
    "api_key",
    "wire_api",
    "provider",
    "headers",
    "models",
    "timeouts",
    "retries",
)
_SERVER_KEYS = (
    "heartbeat_interval",
    "models_cache_ttl",
    "max_body_bytes",
    "max_sse_line_bytes",
    "health_probe_interval",
    "drain_timeout",
    "circuit_threshold",
    "circuit_cooldown",
    "request_timeout",
    "max_connections",
)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(attrs.fields_dict(cls))


def _profileKeys() -> tuple[str, ...]:
    from codexgw.dialects.chat.dialect import ChatDialect
    from codexgw.upstream.profiles import ProviderProfile

    own = tuple(k for k in _fields(ProviderProfile) if k not in ("name", "dialect"))
    return ("extends", *own, *_fields(ChatDialect))


SECTIONS: dict[str, tuple[str, ...]] = {
    "": _TOP_KEYS,
    "upstreams.<name>": _UPSTREAM_KEYS,
    "upstreams.<name>.timeouts": _fields(Timeouts),
    "upstreams.<name>.retries": _fields(Retries),
    "models[]": ("match", "upstream", "upstreams", "fallbacks", "model", "codex"),
    "models[].codex": _fields(CodexModel),
    "auth": ("enabled", "keys"),
    "auth.keys[]": ("name", "key", "sha256", "models", "limits"),
    "auth.keys[].limits": ("requests_per_minute", "tokens_per_minute"),
    "cors": _fields(CorsConfig),
    "profiles.<name>": _profileKeys(),
    "rate_limits": _fields(RateLimitConfig),
    "redis": _fields(RedisConfig),
    "store": _fields(StoreConfig),
    "server": _SERVER_KEYS,
}
"""
Every key the config file may hold, by the section it sits in; the parser
refuses any other, and C{docs/configuration.md} is checked against it.
"""

ENVIRONMENT: dict[str, str] = {
    "CODEXGW_CONFIG": "the config file, when --config is not given",
    "CODEXGW_LISTEN": "listen",
    "CODEXGW_UPSTREAM_URL": "upstreams.<default>.base_url (creates the upstream if needed)",
    "CODEXGW_UPSTREAM_API_KEY": "upstreams.<default>.api_key (only with CODEXGW_UPSTREAM_URL)",
    "CODEXGW_UPSTREAM_WIRE_API": "upstreams.<default>.wire_api (only with CODEXGW_UPSTREAM_URL)",
    "CODEXGW_DEFAULT_UPSTREAM": "default_upstream",
}
"""The environment variables that override config keys, and what each sets."""


def keyPaths() -> list[str]:
    """Every dotted key path (C{upstreams.<name>.timeouts.idle}), sections included."""
    return [
        f"{section}.{key}" if section else key for section, keys in SECTIONS.items() for key in keys
    ]


def defaults() -> dict[str, Any]:
    """The default of every key that has a plain one, by dotted path."""
    out: dict[str, Any] = {"listen": DEFAULT_LISTEN}
    server = Config(upstreams={}, default_upstream="")
    for key in _SERVER_KEYS:
        out[f"server.{key}"] = getattr(server, key)
    for section, cls in (
        ("upstreams.<name>.timeouts", Timeouts),
        ("upstreams.<name>.retries", Retries),
        ("models[].codex", CodexModel),
        ("cors", CorsConfig),
        ("rate_limits", RateLimitConfig),
        ("redis", RedisConfig),
        ("store", StoreConfig),
    ):
        instance = cls()
        for key in _fields(cls):
            out[f"{section}.{key}"] = getattr(instance, key)
    upstream = UpstreamConfig(name="", base_url="")
    for key in ("wire_api", "provider"):
        out[f"upstreams.<name>.{key}"] = getattr(upstream, key)
    return out


# The scheme and a C{user:password@} (or a lone C{token@}) before the host.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def _redactUserinfo(url: str) -> str:
    """C{url} with any credentials before the host shown as C{***}: safe to print."""
    return _USERINFO.sub(r"\1***@", url)


def _upstream(r: _Reader, name: str, data: Any) -> UpstreamConfig | None:
    path = f"upstreams.{name}."
    raw = r.mapping(path[:-1], data)
    if raw is None:
        return None
    r.unknown(raw, path, "upstreams.<name>")
    provider = r.get(raw, "provider", path, r.string, "openai")
    base_url = r.get(raw, "base_url", path, r.string, "")
    if provider == "demo":
        base_url = base_url or demo_upstream().base_url
    elif not base_url:
        r.problem(f"{path}base_url", "required: the upstream's URL, e.g. http://127.0.0.1:9000/v1")
    elif not re.match(r"^https?://[^/\s]+", base_url):
        r.problem(
            f"{path}base_url",
            f"expected an http:// or https:// URL, got {_redactUserinfo(base_url)!r}",
        )
    elif _USERINFO.match(base_url):
        r.problem(
            f"{path}base_url",
            f"credentials do not go in the URL (got {_redactUserinfo(base_url)!r}): "
            f"put the provider's key in {path}api_key (sent as the provider expects), "
            f"any other credential in {path}headers "
            '(e.g. Authorization: "Basic ${UPSTREAM_BASIC_AUTH}")',
        )
    wire_api = r.get(raw, "wire_api", path, r.string, "chat")
    if wire_api not in WIRE_APIS:
        r.problem(f"{path}wire_api", f"expected one of {', '.join(WIRE_APIS)}, got {wire_api!r}")
    api_key = r.get(raw, "api_key", path, r.string, "") or None
    headers: dict[str, str] = {}
    rawHeaders = r.get(raw, "headers", path, r.mapping, _EMPTY)
    for hname, hvalue in rawHeaders.items():
        value = r.string(f"{path}headers.{hname}", hvalue)
        if value is not None:
            headers[str(hname)] = value
    models: list[str] = []
    rawModels = raw.get("models")
    if rawModels is not None:
        if not isinstance(rawModels, list):
            r.problem(f"{path}models", f"expected a list of model names, got {_kind(rawModels)}")
        else:
            for i, m in enumerate(rawModels):
                value = r.string(f"{path}models[{i}]", m)
                if value:
                    models.append(value)
    timeouts = Timeouts()
    rawTimeouts = r.get(raw, "timeouts", path, r.mapping, _EMPTY)
    if rawTimeouts:
        tpath = f"{path}timeouts."
        r.unknown(rawTimeouts, tpath, "upstreams.<name>.timeouts")
        timeouts = Timeouts(
            connect=r.get(rawTimeouts, "connect", tpath, r.number, timeouts.connect),
            first_byte=r.get(rawTimeouts, "first_byte", tpath, r.number, timeouts.first_byte),
            idle=r.get(rawTimeouts, "idle", tpath, r.number, timeouts.idle),
            total=r.get(rawTimeouts, "total", tpath, r.number, 0.0) or None,
        )
    retries = Retries()
    rawRetries = r.get(raw, "retries", path, r.mapping, _EMPTY)
    if rawRetries:
        rpath = f"{path}retries."
        r.unknown(rawRetries, rpath, "upstreams.<name>.retries")
        retries = Retries(
            max_attempts=r.get(rawRetries, "max_attempts", rpath, r.integer, retries.max_attempts),
            backoff_base=r.get(rawRetries, "backoff_base", rpath, r.number, retries.backoff_base),
            backoff_max=r.get(rawRetries, "backoff_max", rpath, r.number, retries.backoff_max),
            retry_after_max=r.get(
                rawRetries, "retry_after_max", rpath, r.number, retries.retry_after_max
            ),
            budget=r.get(rawRetries, "budget", rpath, r.number, retries.budget),
        )
    return UpstreamConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        wire_api=wire_api,
        provider=provider,
        api_key=api_key,
        headers=headers,
        models=tuple(models),
        timeouts=timeouts,
        retries=retries,
    )


def _routes(r: _Reader, data: Any, upstreams: Mapping[str, Any]) -> tuple[ModelRoute, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        r.problem("models", f"expected a list of routing rules, got {_kind(data)}")
        return ()
    routes = []
    for i, item in enumerate(data):
        path = f"models[{i}]"
        raw = r.mapping(path, item)
        if raw is None:
            continue
        r.unknown(raw, path + ".", "models[]")
        codex = _codexModel(r, f"{path}.codex", raw["codex"]) if raw.get("codex") else None
        match = r.get(raw, "match", path + ".", r.string, "")
        upstream = r.get(raw, "upstream", path + ".", r.string, "")
        pool = r.strings(f"{path}.upstreams", raw["upstreams"]) if raw.get("upstreams") else ()
        fallbacks = r.strings(f"{path}.fallbacks", raw["fallbacks"]) if raw.get("fallbacks") else ()
        model = r.get(raw, "model", path + ".", r.string, "") or None
        if not match:
            r.problem(f"{path}.match", "required: a model name or glob such as 'gpt-4o*'")
        if bool(upstream) == bool(pool):
            r.problem(path, "expected exactly one of 'upstream' (one name) or 'upstreams' (a pool)")
        names = [(f"{path}.upstream", upstream)] if upstream else []
        names += [(f"{path}.upstreams", n) for n in pool]
        names += [(f"{path}.fallbacks", n) for n in fallbacks]
        for key, name in names:
            if name not in upstreams:
                r.problem(
                    key,
                    f"expected the name of an upstream ({', '.join(upstreams) or 'none defined'}), "
                    f"got {name!r}",
                )
        kinds = {upstreams[n].wire_api for _, n in names if n in upstreams}
        if len(kinds) > 1:
            r.problem(
                path,
                "all upstreams of one route must speak the same wire_api "
                f"(got {', '.join(sorted(kinds))})",
            )
        routes.append(
            ModelRoute(
                match=match,
                upstream=upstream or (pool[0] if pool else ""),
                model=model,
                pool=pool or ((upstream,) if upstream else ()),
                fallbacks=fallbacks,
                codex=codex,
            )
        )
    return tuple(routes)


def _codexModel(r: _Reader, path: str, data: Any) -> CodexModel | None:
    raw = r.mapping(path, data)
    if raw is None:
        return None
    r.unknown(raw, path + ".", "models[].codex")
    d = CodexModel()
    applyPatch = r.get(raw, "apply_patch", path + ".", r.string, d.apply_patch)
    if applyPatch not in ("freeform", "function", "none"):
        r.problem(f"{path}.apply_patch", f"expected freeform, function or none, got {applyPatch!r}")
    levels = (
        r.strings(f"{path}.reasoning_levels", raw["reasoning_levels"])
        if raw.get("reasoning_levels") is not None
        else d.reasoning_levels
    )
    for i, level in enumerate(levels):
        if level not in ("minimal", "low", "medium", "high", "xhigh"):
            r.problem(f"{path}.reasoning_levels[{i}]", f"expected minimal..xhigh, got {level!r}")
    return CodexModel(
        context_window=r.get(raw, "context_window", path + ".", r.integer, d.context_window),
        display_name=r.get(raw, "display_name", path + ".", r.string, "") or None,
        apply_patch=applyPatch,
        reasoning_levels=levels,
        default_reasoning_level=r.get(
            raw, "default_reasoning_level", path + ".", r.string, "medium" if levels else ""
        )
        or None,
        images=r.get(raw, "images", path + ".", r.boolean, d.images),
        parallel_tool_calls=r.get(
            raw, "parallel_tool_calls", path + ".", r.boolean, d.parallel_tool_calls
        ),
        base_instructions_file=r.get(raw, "base_instructions_file", path + ".", r.string, "")
        or None,
    )


_PROFILE_CHOICES = {
    "url_layout": ("openai", "azure"),
    "max_tokens_field": ("max_tokens", "max_completion_tokens"),
    "image_detail_original": ("low", "high", "auto"),
}


def _profile(r: _Reader, name: str, data: Any) -> dict[str, Any]:
    """
    One user profile's fields, each checked for its type (a quoted "false"
    is a string, and truthy) and interpolated, so that every mistake is
    reported at once; the inheritance is L{buildProfiles}'s.
    """
    from codexgw.dialects.chat.dialect import ChatDialect
    from codexgw.upstream.profiles import ProviderProfile

    path = f"profiles.{name}"
    raw = r.mapping(path, data)
    if raw is None:
        return {}
    r.unknown(raw, path + ".", "profiles.<name>")
    types = {
        f.name: str(f.type) for f in (*attrs.fields(ProviderProfile), *attrs.fields(ChatDialect))
    }
    types["extends"] = "str"
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = types.get(key)
        where = f"{path}.{key}"
        if kind is None:
            continue
        if value is None and "None" in kind:
            out[key] = None
            continue
        checked: Any
        if kind == "bool":
            checked = r.boolean(where, value)
        elif kind.startswith("tuple"):
            checked = r.strings(where, value)
        elif kind.startswith("Mapping"):
            mapping = r.mapping(where, value)
            checked = None
            if mapping is not None:
                checked = {
                    str(k): v
                    for k, v in ((k, r.string(f"{where}.{k}", v)) for k, v in mapping.items())
                    if v is not None
                }
        else:
            checked = r.string(where, value)
            choices = _PROFILE_CHOICES.get(key)
            if checked is not None and choices and checked not in choices:
                r.problem(where, f"expected one of {', '.join(choices)}, got {checked!r}")
                checked = None
        if checked is not None:
            out[key] = checked
    return out


def isLoopback(listen: str) -> bool:
    """Whether an endpoint string only accepts connections from this machine."""
    kind = listen.split(":", 1)[0].lower()
    if kind == "unix":
        return True
    m = re.search(r"interface=((?:\\:|[^:])+)", listen)
    if m is None:
        return False
    host = m.group(1).replace("\\", "").strip("[]").lower()
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _keys(r: _Reader, data: Any, plain: list[str] | None = None) -> tuple[ApiKey, ...]:
    if not isinstance(data, list):
        r.problem("auth.keys", f"expected a list of keys, got {_kind(data)}")
        return ()
    keys: list[ApiKey] = []
    names: set[str] = set()
    for i, item in enumerate(data):
        path = f"auth.keys[{i}]"
        raw = r.mapping(path, item)
        if raw is None:
            continue
        r.unknown(raw, path + ".", "auth.keys[]")
        name = r.get(raw, "name", path + ".", r.string, "")
        if not name:
            r.problem(f"{path}.name", "required: a name for logs and metrics (never the key)")
        elif name in names:
            r.problem(f"{path}.name", f"duplicate key name {name!r}")
        names.add(name)
        key = r.get(raw, "key", path + ".", r.string, "")
        sha = r.get(raw, "sha256", path + ".", r.string, "")
        value = b""
        if bool(key) == bool(sha):
            r.problem(path, "expected exactly one of 'key' or 'sha256'")
        elif key:
            value = digest(key)
            if plain is not None:
                plain.append(key)
        elif not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            r.problem(f"{path}.sha256", "expected 64 hexadecimal digits")
        else:
            value = bytes.fromhex(sha)
        models = r.strings(f"{path}.models", raw["models"]) if raw.get("models") is not None else ()
        limits = KeyLimits()
        rawLimits = r.get(raw, "limits", path + ".", r.mapping, _EMPTY)
        if rawLimits:
            lpath = f"{path}.limits."
            r.unknown(rawLimits, lpath, "auth.keys[].limits")
            limits = KeyLimits(
                requests_per_minute=r.get(rawLimits, "requests_per_minute", lpath, r.integer, 0)
                or None,
                tokens_per_minute=r.get(rawLimits, "tokens_per_minute", lpath, r.integer, 0)
                or None,
            )
        keys.append(ApiKey(name=name, digest=value, models=models, limits=limits))
    return tuple(keys)


def parse(data: Any, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """
    Validate raw YAML data and apply environment overrides.

    @param data: what C{yaml.safe_load} returned (L{None} for an empty file).
    @param source: the file name, for error messages.
    @param environ: the environment; C{os.environ} when L{None}.
    @raise ConfigError: listing every problem found.
    """
    env = os.environ if environ is None else environ
    r = _Reader(source, env)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem(source, "", f"expected a mapping at the top level, got {_kind(data)}")]
        )
    r.unknown(data, "", "")

    upstreams: dict[str, UpstreamConfig] = {}
    rawUpstreams = r.get(data, "upstreams", "", r.mapping, _EMPTY)
    for name, raw in rawUpstreams.items():
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", str(name)):
            r.problem(f"upstreams.{name}", "upstream names are letters, digits, _ . - only")
            continue
        upstream = _upstream(r, str(name), raw)
        if upstream is not None:
            upstreams[str(name)] = upstream

    default = r.get(data, "default_upstream", "", r.string, "")
    # One variable is enough to leave the demo for a real provider.
    url = env.get("CODEXGW_UPSTREAM_URL")
    if url and not re.match(r"^https?://[^/\s]+", url):
        r.problem(
            "CODEXGW_UPSTREAM_URL",
            f"expected an http:// or https:// URL, got {_redactUserinfo(url)!r}",
        )
        url = None
    elif url and _USERINFO.match(url):
        r.problem(
            "CODEXGW_UPSTREAM_URL",
            f"credentials do not go in the URL (got {_redactUserinfo(url)!r}): "
            "put the provider's key in CODEXGW_UPSTREAM_API_KEY, "
            "any other credential in upstreams.<name>.headers in the config file",
        )
        url = None
    envWire = env.get("CODEXGW_UPSTREAM_WIRE_API")
    if url and envWire and envWire not in WIRE_APIS:
        r.problem(
            "CODEXGW_UPSTREAM_WIRE_API", f"expected one of {', '.join(WIRE_APIS)}, got {envWire!r}"
        )
    if url:
        name = env.get("CODEXGW_DEFAULT_UPSTREAM") or default or "main"
        if name == DEMO_UPSTREAM:
            name = "main"
        base = upstreams.get(name) or UpstreamConfig(name=name, base_url=url)
        upstreams[name] = attrs.evolve(
            base,
            base_url=url.rstrip("/"),
            provider="openai" if base.is_demo else base.provider,
            api_key=env.get("CODEXGW_UPSTREAM_API_KEY") or base.api_key,
            wire_api=env.get("CODEXGW_UPSTREAM_WIRE_API") or base.wire_api,
            models=() if base.is_demo else base.models,
        )
        default = name
    if env.get("CODEXGW_DEFAULT_UPSTREAM") and not url:
        default = env["CODEXGW_DEFAULT_UPSTREAM"]
    if not upstreams:
        upstreams[DEMO_UPSTREAM] = demo_upstream()
    if not default:
        if len(upstreams) == 1:
            default = next(iter(upstreams))
        else:
            r.problem("default_upstream", "required when more than one upstream is defined")
    elif default not in upstreams:
        r.problem(
            "default_upstream",
            f"expected the name of an upstream ({', '.join(upstreams)}), got {default!r}",
        )

    routes = _routes(r, data.get("models"), upstreams)
    listen = env.get("CODEXGW_LISTEN") or r.get(data, "listen", "", r.string, DEFAULT_LISTEN)

    # Auth is on whenever an auth block exists. Without one, a gateway that
    # only loopback can reach runs open (with a warning at start); one that
    # listens beyond loopback refuses to start until keys are configured or
    # auth is switched off explicitly.
    keys: tuple[ApiKey, ...] = ()
    plainKeys: list[str] = []
    implicit = False
    rawAuth = r.get(data, "auth", "", r.mapping, _EMPTY)
    if "auth" in data and data["auth"] is not None:
        r.unknown(rawAuth, "auth.", "auth")
        enabled = r.get(rawAuth, "enabled", "auth.", r.boolean, True)
        if rawAuth.get("keys") is not None:
            keys = _keys(r, rawAuth["keys"], plainKeys)
        if enabled and not keys and not rawAuth.get("keys"):
            r.problem(
                "auth.keys",
                "at least one key is required while auth is enabled "
                "(or set auth.enabled: false to run without keys on purpose)",
            )
    elif isLoopback(listen):
        enabled, implicit = False, True
    else:
        enabled = True
        r.problem(
            "auth",
            f"listening on {listen!r} reaches beyond this machine: configure auth.keys, "
            "or set auth.enabled: false to run without keys on purpose",
        )

    cors = CorsConfig()
    rawCors = r.get(data, "cors", "", r.mapping, _EMPTY)
    if rawCors:
        r.unknown(rawCors, "cors.", "cors")
        origins = (
            r.strings("cors.allowed_origins", rawCors["allowed_origins"])
            if rawCors.get("allowed_origins") is not None
            else ()
        )
        credentials = r.get(rawCors, "allow_credentials", "cors.", r.boolean, False)
        if credentials and "*" in origins:
            r.problem(
                "cors.allowed_origins",
                "'*' cannot be combined with allow_credentials: true; list the origins",
            )
        for i, origin in enumerate(origins):
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                r.problem(
                    f"cors.allowed_origins[{i}]",
                    f"expected an origin such as https://app.example (no path), got {origin!r}",
                )
        cors = CorsConfig(
            allowed_origins=origins,
            allow_credentials=credentials,
            max_age=r.get(rawCors, "max_age", "cors.", r.integer, 600),
        )

    rawProfiles = r.get(data, "profiles", "", r.mapping, _EMPTY)
    profiles = {str(name): _profile(r, str(name), raw) for name, raw in rawProfiles.items()}
    try:
        known = buildProfiles(profiles)
    except ProfileError as e:
        r.problem(str(e).split(":", 1)[0], str(e).split(": ", 1)[1])
        known = buildProfiles({})
    for name, upstream in upstreams.items():
        if upstream.provider not in known:
            r.problem(
                f"upstreams.{name}.provider",
                f"no profile named {upstream.provider!r} (built in: {', '.join(sorted(known))}; "
                "or define it under profiles:)",
            )

    limits = RateLimitConfig()
    rawLimits = r.get(data, "rate_limits", "", r.mapping, _EMPTY)
    if rawLimits:
        r.unknown(rawLimits, "rate_limits.", "rate_limits")
        backend = r.get(rawLimits, "backend", "rate_limits.", r.string, "memory")
        policy = r.get(rawLimits, "failure_policy", "rate_limits.", r.string, "open")
        if backend not in ("memory", "redis"):
            r.problem("rate_limits.backend", f"expected memory or redis, got {backend!r}")
        if policy not in ("open", "closed"):
            r.problem("rate_limits.failure_policy", f"expected open or closed, got {policy!r}")
        limits = RateLimitConfig(
            backend=backend,
            failure_policy=policy,
            requests_per_minute=r.get(
                rawLimits, "requests_per_minute", "rate_limits.", r.integer, 0
            )
            or None,
            tokens_per_minute=r.get(rawLimits, "tokens_per_minute", "rate_limits.", r.integer, 0)
            or None,
        )
    redis = None
    rawRedis = r.get(data, "redis", "", r.mapping, _EMPTY)
    if rawRedis:
        r.unknown(rawRedis, "redis.", "redis")
        url = r.get(rawRedis, "url", "redis.", r.string, RedisConfig().url)
        if not url.startswith(("redis://", "rediss://")):
            r.problem("redis.url", "expected redis[s]://[[user]:password@]host[:port][/db]")
        caFile = r.get(rawRedis, "ca_file", "redis.", r.string, "") or None
        if caFile is not None and not url.startswith("rediss://"):
            r.problem("redis.ca_file", "is for TLS: the url must be rediss://")
        elif caFile is not None and not os.path.isfile(caFile):
            r.problem("redis.ca_file", f"no such file: {caFile}")
        redis = RedisConfig(
            url=url, timeout=r.get(rawRedis, "timeout", "redis.", r.number, 1.0), ca_file=caFile
        )
    if limits.backend == "redis" and redis is None:
        r.problem("rate_limits.backend", "redis needs a redis: block with its url")
    store = StoreConfig()
    rawStore = r.get(data, "store", "", r.mapping, _EMPTY)
    if rawStore:
        r.unknown(rawStore, "store.", "store")
        backend = r.get(rawStore, "backend", "store.", r.string, store.backend)
        if backend not in ("sqlite", "redis", "none"):
            r.problem("store.backend", f"expected sqlite, redis or none, got {backend!r}")
        if backend == "redis" and redis is None:
            r.problem("store.backend", "redis needs a redis: block with its url")
        store = StoreConfig(
            backend=backend,
            path=r.get(rawStore, "path", "store.", r.string, store.path),
            ttl=r.get(rawStore, "ttl", "store.", r.number, store.ttl),
            max_entry_bytes=r.get(
                rawStore, "max_entry_bytes", "store.", r.integer, store.max_entry_bytes
            ),
        )

    server = r.get(data, "server", "", r.mapping, _EMPTY)
    r.unknown(server, "server.", "server")
    defaults = Config(upstreams={}, default_upstream="")
    config = Config(
        upstreams=upstreams,
        default_upstream=default,
        listen=listen,
        models=routes,
        heartbeat_interval=r.get(
            server, "heartbeat_interval", "server.", r.number, defaults.heartbeat_interval
        ),
        models_cache_ttl=r.get(
            server, "models_cache_ttl", "server.", r.number, defaults.models_cache_ttl
        ),
        max_body_bytes=r.get(
            server, "max_body_bytes", "server.", r.integer, defaults.max_body_bytes
        ),
        max_sse_line_bytes=r.get(
            server, "max_sse_line_bytes", "server.", r.integer, defaults.max_sse_line_bytes
        ),
        health_probe_interval=r.get(
            server, "health_probe_interval", "server.", r.number, defaults.health_probe_interval
        ),
        drain_timeout=r.get(server, "drain_timeout", "server.", r.number, defaults.drain_timeout),
        circuit_threshold=r.get(
            server, "circuit_threshold", "server.", r.integer, defaults.circuit_threshold
        ),
        circuit_cooldown=r.get(
            server, "circuit_cooldown", "server.", r.number, defaults.circuit_cooldown
        ),
        request_timeout=r.get(
            server, "request_timeout", "server.", r.number, defaults.request_timeout
        ),
        max_connections=r.get(
            server, "max_connections", "server.", r.count, defaults.max_connections
        ),
        auth_enabled=enabled,
        auth_implicitly_off=implicit,
        keys=keys,
        cors=cors,
        profiles=profiles,
        rate_limits=limits,
        redis=redis,
        store=store,
        source=source,
        gateway_secrets=tuple(plainKeys),
    )
    if config.heartbeat_interval == 0:
        r.problem("server.heartbeat_interval", "expected a positive number of seconds, got 0")
    if r.problems:
        raise ConfigError(r.problems)
    return config


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
