# -*- test-case-name: tests.test_config,tests.test_docs -*-
"""
The configuration schema, declared once: attrs classes nested as the YAML is,
each key a field whose metadata (a L{codexgw.config.meta.Key}) says what the
loader, the docs check and the key list need to know of it: its name in the
file when that differs, its environment variable, what it must be, and what
an empty value means.

Everything else is derived from these classes: structuring
(L{codexgw.config.structure}), the list of keys, their defaults and the
environment variables (L{codexgw.config.reference}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from codexgw.config import validators
from codexgw.config.keys import ApiKey, Limits
from codexgw.config.meta import DERIVED, spec
from codexgw.upstream.retry import RetryPolicy

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEMO_UPSTREAM = "demo"
DEMO_MODEL = "codexgw-demo"
"""The built-in offline demo model's name (codexgw.demo serves it)."""
WIRE_APIS = ("chat", "responses", "messages")


@attrs.frozen
class Timeouts:
    """Per-upstream timeouts in seconds; C{None} disables one."""

    connect: float = attrs.field(default=10.0, metadata=spec(unit="seconds"))
    first_byte: float = attrs.field(default=300.0, metadata=spec(unit="seconds"))
    idle: float = attrs.field(
        default=300.0,
        metadata=spec(unit="seconds", doc="the longest silence between two body chunks"),
    )
    total: float | None = attrs.field(
        default=None,
        metadata=spec(unit="seconds", emptyIsNone=True, doc="the whole exchange, body included"),
    )


Retries = RetryPolicy
"""C{upstreams.<name>.retries}: the retry policy itself (L{codexgw.upstream.retry})."""


@attrs.frozen
class UpstreamConfig:
    """
    One model server (C{upstreams.<name>}).

    @ivar name: the name it is configured under, used in metrics and logs.
    """

    name: str = attrs.field(metadata=DERIVED)
    base_url: str = attrs.field(
        metadata=spec(
            env="CODEXGW_UPSTREAM_URL",
            envNote="creates the upstream if needed",
            doc="the provider's URL; not needed for provider: demo",
        )
    )
    api_key: str | None = attrs.field(
        default=None,
        repr=False,
        metadata=spec(
            env="CODEXGW_UPSTREAM_API_KEY",
            envNote="only with CODEXGW_UPSTREAM_URL",
            emptyIsNone=True,
            secret=True,
            doc="sent upstream, never logged",
        ),
    )
    wire_api: str = attrs.field(
        default="chat",
        metadata=spec(
            env="CODEXGW_UPSTREAM_WIRE_API",
            envNote="only with CODEXGW_UPSTREAM_URL",
            choices=WIRE_APIS,
            expected="one of " + ", ".join(WIRE_APIS),
            doc="the protocol it speaks",
        ),
    )
    provider: str = attrs.field(
        default="openai", metadata=spec(doc="its dialect family; demo is the offline model")
    )
    headers: Mapping[str, str] = attrs.field(
        factory=dict, repr=False, metadata=spec(doc="extra headers sent on every request")
    )
    models: tuple[str, ...] = attrs.field(
        default=(), metadata=spec(noun="model names", doc="the models it serves")
    )
    timeouts: Timeouts = Timeouts()
    retries: RetryPolicy = RetryPolicy()

    @property
    def is_demo(self) -> bool:
        return self.provider == "demo"


@attrs.frozen
class CodexModel:
    """
    What the Codex CLI needs to know of a bridged model (its catalog entry):
    without it Codex warns "Model metadata ... not found" and withholds the
    apply_patch tool, reasoning effort and image input.
    """

    context_window: int = 128000
    display_name: str | None = attrs.field(default=None, metadata=spec(emptyIsNone=True))
    apply_patch: str = attrs.field(
        default="freeform", metadata=spec(choices=("freeform", "function", "none"))
    )
    reasoning_levels: tuple[str, ...] = attrs.field(
        default=("low", "medium", "high"),
        metadata=spec(itemCheck=validators.reasoningLevel, doc="empty: the model does not reason"),
    )
    default_reasoning_level: str | None = attrs.field(
        default="medium", metadata=spec(emptyIsNone=True, doc="none when reasoning_levels is empty")
    )
    images: bool = False
    parallel_tool_calls: bool = True
    search_tool: bool = False
    base_instructions_file: str | None = attrs.field(default=None, metadata=spec(emptyIsNone=True))


@attrs.frozen
class ModelRoute:
    """
    A routing rule (C{models[]}): requests for models matching C{match} (an
    exact name or a shell glob) go to C{upstream} (or are balanced over
    C{pool}, with cache affinity), renamed to C{model} when set;
    C{fallbacks} are tried in order when those fail before the first byte.
    """

    match: str = attrs.field(
        metadata=spec(required="required: a model name or glob such as 'gpt-4o*'")
    )
    upstream: str = attrs.field(metadata=spec(doc="exactly one of upstream and upstreams"))
    pool: tuple[str, ...] = attrs.field(
        default=(), metadata=spec(name="upstreams", falsyIsAbsent=True, docDefault="—")
    )
    fallbacks: tuple[str, ...] = attrs.field(default=(), metadata=spec(falsyIsAbsent=True))
    model: str | None = attrs.field(
        default=None, metadata=spec(emptyIsNone=True, docDefault="the requested name")
    )
    codex: CodexModel | None = attrs.field(default=None, metadata=spec(falsyIsAbsent=True))


@attrs.frozen
class KeyEntry:
    """
    One gateway key as written (C{auth.keys[]}); loading turns it into an
    L{ApiKey}, which keeps only the digest.
    """

    name: str = attrs.field(
        default="",
        metadata=spec(
            required="required: a name for logs and metrics (never the key)",
            docDefault="required",
        ),
    )
    key: str | None = attrs.field(
        default=None, repr=False, metadata=spec(emptyIsNone=True, secret=True)
    )
    sha256: str | None = attrs.field(default=None, metadata=spec(emptyIsNone=True))
    models: tuple[str, ...] = attrs.field(default=(), metadata=spec(docDefault="all"))
    limits: Limits = attrs.field(default=Limits(), metadata=spec(docDefault="rate_limits.<key>"))


@attrs.frozen
class RateLimitConfig:
    backend: str = attrs.field(
        default="memory",
        metadata=spec(choices=("memory", "redis"), doc="memory (one process) or redis (shared)"),
    )
    failure_policy: str = attrs.field(
        default="open",
        metadata=spec(choices=("open", "closed"), doc="with Redis away: open serves"),
    )
    requests_per_minute: int | None = attrs.field(
        default=None, metadata=spec(doc="default per key (a key's own limits win)")
    )
    tokens_per_minute: int | None = None


@attrs.frozen
class RedisConfig:
    """One Redis for everything shared across replicas (limits, later state)."""

    url: str = attrs.field(
        default="redis://127.0.0.1:6379/0",
        repr=False,
        metadata=spec(secret=True, doc="redis[s]://[[user]:password@]host[:port][/db]"),
    )
    timeout: float = attrs.field(default=1.0, metadata=spec(unit="seconds"))
    ca_file: str | None = attrs.field(
        default=None,
        metadata=spec(
            emptyIsNone=True,
            doc="for rediss://: the CA file the server's certificate is checked against; "
            "none for the system's trust",
        ),
    )


@attrs.frozen
class StoreConfig:
    """Where bridged responses are kept for C{previous_response_id}."""

    backend: str = attrs.field(default="sqlite", metadata=spec(choices=("sqlite", "redis", "none")))
    path: str = "data/codexgw-responses.sqlite3"
    ttl: float = attrs.field(default=30 * 24 * 3600.0, metadata=spec(unit="seconds"))
    max_entry_bytes: int = attrs.field(default=8 * 1024 * 1024, metadata=spec(unit="bytes"))


@attrs.frozen
class CorsConfig:
    allowed_origins: tuple[str, ...] = attrs.field(
        default=(), metadata=spec(itemCheck=validators.origin, doc="exact origins or *")
    )
    allow_credentials: bool = attrs.field(default=False, metadata=spec(doc="never with *"))
    max_age: int = attrs.field(default=600, metadata=spec(unit="seconds"))


class ProfileBlocks:
    """
    The shape of C{profiles:}: blocks by name, each the fields of a
    L{codexgw.upstream.profiles.ProviderProfile} and its C{ChatDialect} plus
    C{extends}; those classes declare them, and L{buildProfiles} checks the
    inheritance.
    """

    @staticmethod
    def fields(everything: bool = False) -> list[attrs.Attribute[Any]]:
        """
        The fields a block may set; with C{everything}, also the profile's
        C{name} and C{dialect}, which are refused as unknown keys but still
        checked for their type.
        """
        from codexgw.dialects.chat.dialect import ChatDialect
        from codexgw.upstream.profiles import ProviderProfile

        own = [
            f
            for f in attrs.fields(ProviderProfile)
            if everything or f.name not in ("name", "dialect")
        ]
        return [*own, *attrs.fields(ChatDialect)]

    @staticmethod
    def keys() -> tuple[str, ...]:
        return ("extends", *(f.name for f in ProfileBlocks.fields()))


def _server(default: Any, **fields: Any) -> Any:
    return attrs.field(default=default, metadata=spec(section="server", **fields))


@attrs.frozen(kw_only=True)
class Config:
    """
    The validated gateway configuration: the file's top level, with the
    C{server:} and C{auth:} blocks flat on it.

    @ivar source: the file it came from, or C{<defaults>}.
    @ivar auth_implicitly_off: no auth block, and only loopback can connect.
    @ivar gateway_secrets: the gateway keys written in the config as plain
        text (not those given by digest), kept only so that no upstream can
        echo one to a client.
    """

    listen: str = attrs.field(
        default=DEFAULT_LISTEN, metadata=spec(env="CODEXGW_LISTEN", override=True)
    )
    upstreams: Mapping[str, UpstreamConfig] = attrs.field(
        metadata=spec(nameCheck=validators.upstreamName)
    )
    default_upstream: str = attrs.field(metadata=spec(env="CODEXGW_DEFAULT_UPSTREAM"))
    models: tuple[ModelRoute, ...] = attrs.field(default=(), metadata=spec(noun="routing rules"))
    heartbeat_interval: float = _server(
        15.0, unit="seconds", check=validators.positiveSeconds, doc="silence before a keep-alive"
    )
    models_cache_ttl: float = _server(60.0, unit="seconds")
    max_body_bytes: int = _server(32 * 1024 * 1024, unit="bytes")
    max_sse_line_bytes: int = _server(4 * 1024 * 1024, unit="bytes")
    health_probe_interval: float = _server(5.0, unit="seconds")
    drain_timeout: float = _server(30.0, unit="seconds")
    circuit_threshold: int = _server(5)
    circuit_cooldown: float = _server(30.0, unit="seconds")
    request_timeout: float = _server(60.0, unit="seconds", doc="0 for no deadline")
    max_connections: int = _server(10000, minimum=0, doc="0 for no cap")
    websocket: bool = _server(True, doc="serve the Responses API's WebSocket mode")
    websocket_max_age: float = _server(3600.0, unit="seconds", doc="0 for no limit")
    websocket_idle_timeout: float = _server(900.0, unit="seconds", doc="0 for none")
    websocket_cache_responses: int = _server(16, minimum=1)
    websocket_cache_bytes: int = _server(16 * 1024 * 1024, unit="bytes")
    seal_key: str | None = attrs.field(
        default=None,
        repr=False,
        metadata=spec(
            section="server",
            env="CODEXGW_SEAL_KEY",
            override=True,
            emptyIsNone=True,
            secret=True,
            doc=(
                "secret shared by every replica that seals and verifies tokens the gateway "
                "hands clients, e.g. reasoning carried in encrypted_content; without it each "
                "process makes its own random key at start, so tokens do not survive a "
                "restart or cross replicas"
            ),
        ),
    )
    compaction_prompt: str | None = attrs.field(
        default=None,
        metadata=spec(
            section="server",
            emptyIsNone=True,
            doc=(
                "the prompt a Chat upstream is asked to summarise a conversation with "
                "(POST /v1/responses/compact, Codex's compaction_trigger); the gateway's own "
                "when unset"
            ),
        ),
    )
    auth_enabled: bool = attrs.field(
        default=False,
        metadata=spec(section="auth", name="enabled", docDefault="true with an auth: block"),
    )
    keys: tuple[ApiKey, ...] = attrs.field(
        default=(),
        metadata=spec(
            section="auth",
            shape=tuple[KeyEntry, ...],
            noun="keys",
            docDefault="required while enabled",
        ),
    )
    cors: CorsConfig = CorsConfig()
    profiles: Mapping[str, Any] = attrs.field(factory=dict, metadata=spec(shape=ProfileBlocks))
    rate_limits: RateLimitConfig = RateLimitConfig()
    redis: RedisConfig | None = attrs.field(default=None, metadata=spec(emptyIsNone=True))
    store: StoreConfig = StoreConfig()
    auth_implicitly_off: bool = attrs.field(default=False, metadata=DERIVED)
    source: str = attrs.field(default="<defaults>", metadata=DERIVED)
    gateway_secrets: tuple[str, ...] = attrs.field(default=(), repr=False, metadata=DERIVED)

    @property
    def default(self) -> UpstreamConfig:
        return self.upstreams[self.default_upstream]


for _cls in (
    Timeouts,
    RetryPolicy,
    UpstreamConfig,
    CodexModel,
    ModelRoute,
    Limits,
    KeyEntry,
    RateLimitConfig,
    RedisConfig,
    StoreConfig,
    CorsConfig,
    Config,
):
    attrs.resolve_types(_cls, globals())


def demo_upstream() -> UpstreamConfig:
    """The built-in offline model's upstream; its address is bound at start."""
    return UpstreamConfig(
        name=DEMO_UPSTREAM,
        base_url="http://127.0.0.1:0/v1",
        provider="demo",
        models=(DEMO_MODEL,),
    )
