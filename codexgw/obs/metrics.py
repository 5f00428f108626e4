# -*- test-case-name: tests.http.test_exchange -*-
"""
Prometheus metrics, in a registry per gateway so that two gateways embedded in
one process (or one test run) do not collide.

Label values are bounded: routes are fixed strings, upstreams come from the
config, and models are capped at L{MAX_MODEL_LABELS} distinct values (after
which C{other}), so a client inventing model names cannot grow the registry.
Keys and secrets are never labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MAX_MODEL_LABELS = 100
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Distinct (direction, type) pairs of WebSocket frames before "other".
MAX_FRAME_LABELS = 128


class GatewayMetrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "codexgw_requests_total",
            "Requests answered, by route, HTTP status, upstream and model.",
            ["route", "status", "upstream", "model"],
            registry=r,
        )
        self.duration = Histogram(
            "codexgw_request_duration_seconds",
            "Time from the request to the last byte of the response.",
            ["route", "upstream"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "codexgw_time_to_first_byte_seconds",
            "Time from the request to the first body byte sent to the client.",
            ["route", "upstream"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "codexgw_active_streams",
            "Streams being relayed right now.",
            ["route"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "codexgw_upstream_errors_total",
            "Upstream failures, by upstream and kind: connect (unreachable), timeout, status "
            "(an error answer before any stream), circuit_open (every upstream of the route "
            "cooling down), stream (broke after the first byte).",
            ["upstream", "kind"],
            registry=r,
        )
        self.upstream_up = Gauge(
            "codexgw_upstream_up",
            "1 when the last health probe reached the upstream, 0 when it did not.",
            ["upstream"],
            registry=r,
        )
        self.dropped_tools = Counter(
            "codexgw_dropped_tools_total",
            "Tools dropped from bridged requests because the upstream cannot run them.",
            ["upstream", "tool"],
            registry=r,
        )
        self.retries = Counter(
            "codexgw_upstream_retries_total",
            "Upstream attempts retried before the first byte, by upstream and reason.",
            ["upstream", "reason"],
            registry=r,
        )
        self.cancellations = Counter(
            "codexgw_cancellations_total",
            "Requests whose client went away before the answer ended; the upstream "
            "request was aborted.",
            ["route"],
            registry=r,
        )
        self.tokens = Counter(
            "codexgw_tokens_total",
            "Tokens the upstreams reported, by direction (input/output), model and key name.",
            ["direction", "model", "key"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "codexgw_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers, by upstream.",
            ["upstream"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.circuit_state = Gauge(
            "codexgw_circuit_state",
            "Circuit breaker of each upstream: 0 closed, 1 open, 2 half-open (probing).",
            ["upstream"],
            registry=r,
        )
        self.circuit_transitions = Counter(
            "codexgw_circuit_transitions_total",
            "Circuit breaker state changes, by upstream and new state.",
            ["upstream", "state"],
            registry=r,
        )
        self.failovers = Counter(
            "codexgw_failovers_total",
            "Requests moved to the next upstream of their route, by the one that failed and why.",
            ["upstream", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "codexgw_rate_limited_total",
            "Requests refused by a key's rate limit, by key name.",
            ["key"],
            registry=r,
        )
        self.ratelimit_backend_errors = Counter(
            "codexgw_ratelimit_backend_errors_total",
            "Rate-limit checks that could not reach the shared backend (Redis).",
            registry=r,
        )
        self.ratelimit_backend_up = Gauge(
            "codexgw_ratelimit_backend_up",
            "1 while the shared rate-limit backend answers, 0 while it does not.",
            registry=r,
        )
        self.websockets_open = Gauge(
            "codexgw_websockets_open",
            "Responses WebSocket connections open right now.",
            registry=r,
        )
        self.websocket_turns = Histogram(
            "codexgw_websocket_turns",
            "Turns (response.create frames answered) per WebSocket connection, at its close.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.websocket_frames = Counter(
            "codexgw_websocket_frames_total",
            "WebSocket messages, by direction (in, out) and type: the JSON type of a frame "
            "(response.create, error, response.* events), binary, invalid, or other.",
            ["direction", "type"],
            registry=r,
        )
        self._frameChildren: dict[tuple[str, str], Counter] = {}
        self._models: set[str] = set()
        self._requestChildren: dict[tuple[str, str, str, str], Counter] = {}

    def model_label(self, model: str | None) -> str:
        """A bounded label value for C{model}."""
        if not model:
            return "none"
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODEL_LABELS or len(model) > 128:
            return "other"
        self._models.add(model)
        return model

    def count_request(self, route: str, status: int, upstream: str, model: str | None) -> None:
        key = (route, str(status), upstream, self.model_label(model))
        child = self._requestChildren.get(key)
        if child is None:
            child = self._requestChildren[key] = self.requests.labels(*key)
        child.inc()

    def count_frame(self, direction: str, kind: str) -> None:
        """Count one WebSocket message; the label set stays bounded."""
        key = (direction, kind)
        child = self._frameChildren.get(key)
        if child is None:
            if len(self._frameChildren) >= MAX_FRAME_LABELS or len(kind) > 64:
                key = (direction, "other")
                child = self._frameChildren.get(key)
            if child is None:
                child = self._frameChildren[key] = self.websocket_frames.labels(*key)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
