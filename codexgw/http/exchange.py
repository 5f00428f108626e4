# -*- test-case-name: tests.http.test_exchange -*-
"""
One client request from arrival to the access log: reading the JSON body,
relaying to an upstream, and accounting (metrics, access line) exactly once.

The routes in L{codexgw.http.routes} parse and pick; this module does the work, so
the same steps serve pass-through and bridged routes alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from codexgw.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    adviseRetry,
    error_body,
)
from codexgw.http.site import STANDARD_HEADERS
from codexgw.obs.logs import logAccess
from codexgw.obs.metrics import GatewayMetrics
from codexgw.stream.interfaces import IAnswer, IEventAdapter
from codexgw.stream.outcomes import Outcome
from codexgw.stream.relay import EventRelay, PassThroughRelay, _Relay
from codexgw.stream.usage import tokens
from codexgw.upstream.client import Upstream
from codexgw.upstream.retry import retryAfterEstimate, retryAfterSeconds, wholeSeconds

# Response headers of the upstream that a client needs; the rest (hop-by-hop,
# cookies, server banners) stay behind.
_PASS_HEADERS = frozenset(
    {
        b"content-type",
        b"retry-after",
        b"retry-after-ms",
        b"openai-processing-ms",
        b"openai-version",
        b"openai-model",
        b"apim-request-id",
        # Anthropic's: its request id, which its SDK shows in errors.
        b"request-id",
    }
)
log = Logger()

COMPLETE, CLIENT_GONE, BAD_STREAM = Outcome.COMPLETE, Outcome.CLIENT_GONE, Outcome.BAD_STREAM

_JSON = b"application/json"
_NO_FIELDS: dict[str, Any] = {}


class _Discard(Protocol):
    """Takes an unwanted upstream body and closes its connection at once."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # type: ignore[attr-defined]


@implementer(IAnswer)
@attrs.define(slots=True, eq=False)
class Exchange:
    """
    One request, from arrival to its access line, and the one owner of what
    its client was sent: status, outcome and the answer's headers are
    written by these methods only; routes, bridges, relays and adapters
    report to it.

    @ivar request_id: the id used in logs and sent upstream.
    @ivar status: the HTTP status the client was sent.
    @ivar outcome: how the exchange ended (an L{Outcome}).
    """

    request: Request
    route: str
    started: float
    request_id: str
    client_request_id: bool
    metrics: GatewayMetrics
    model: str | None = None
    key: str = "-"
    upstream: str = "-"
    status: int = 200
    outcome: Outcome = Outcome.COMPLETE
    firstByteAt: float | None = None
    stream: bool = False
    finished: bool = False
    relay: _Relay | None = None
    usage: dict[str, Any] | None = None
    limits: Any = None
    sentAt: float | None = None
    errorShape: Callable[[GatewayError], tuple[int, bytes]] | None = None
    """How this route's errors look (status, body): OpenAI's when L{None},
    Anthropic's on the Messages routes."""

    def respond(self, code: int, contentType: bytes | None = None) -> None:
        """Begin the answer with C{code} (and its content type)."""
        self.status = code
        self.request.setResponseCode(code)
        if contentType is not None:
            self.request.setHeader(b"content-type", contentType)

    def respondWithError(self, code: int, contentType: bytes | None = None) -> None:
        """A whole answer that became an error: counted as C{error} when it ends."""
        self.respond(code, contentType)
        self.outcome = Outcome.ERROR

    def json(self, payload: Any, status: int = 200) -> bytes:
        """Answer with C{payload} as JSON; returns the body for Klein."""
        self.respond(status, _JSON)
        return orjson.dumps(payload)

    def fail(self, error: GatewayError) -> bytes:
        """
        Answer with C{error} in the client dialect's shape (L{renderError});
        returns the body for Klein.
        """
        if error.status == 429 and b"retry-after" not in error.headers:
            adviseRetry(error, 1)
        self.outcome = Outcome.ERROR
        if error.type == "upstream_error":
            self.metrics.upstream_errors.labels(self.upstream, error.kind).inc()
        status, body = self.renderError(error)
        self.respond(status, _JSON)
        for name, value in error.headers.items():
            self.request.setHeader(name, value)
        return body

    def renderError(self, error: GatewayError) -> tuple[int, bytes]:
        """The status and body C{error} is answered with on this route."""
        if self.errorShape is None:
            return error.status, error_body(error)
        return self.errorShape(error)

    def failedInStream(self) -> None:
        """A stream already answered 200 ended in an error event (the upstream's)."""
        self.outcome = Outcome.UPSTREAM_ERROR

    def clientGone(self) -> None:
        """The client left: whatever relays for it stops, and it is counted so."""
        self.outcome = Outcome.CLIENT_GONE
        if self.relay is not None:
            self.relay.end(Outcome.CLIENT_GONE)

    def ended(self, outcome: Outcome, failedInBand: bool = False) -> None:
        """
        How the body of the answer ended: C{outcome} is the relay's.

        A bridge answering a whole (non-streamed) object learns only at the
        end that it has an error to send instead (L{respondWithError}): a
        body that ended cleanly but became an error answer is an C{error}.
        A stream keeps its 200 and the outcome says how it ended,
        C{upstream_error} when it ended in an error event.
        """
        answeredWithError = self.outcome is Outcome.ERROR
        self.outcome = outcome
        errors = self.metrics.upstream_errors
        if outcome not in (Outcome.COMPLETE, Outcome.CLIENT_GONE):
            errors.labels(self.upstream, "stream").inc()
        if answeredWithError and outcome is Outcome.COMPLETE:
            self.outcome = Outcome.ERROR
        elif failedInBand and outcome is Outcome.COMPLETE:
            # A stream that started 200 and ended in response.failed: the
            # client saw an error, and so do the access log and metrics.
            self.outcome = Outcome.UPSTREAM_ERROR
            errors.labels(self.upstream, "stream").inc()


class Proxy:
    """
    The shared steps of every route.

    @ivar active: relays in flight, so shutdown can end them.
    @ivar inflight: every exchange from arrival to its access line, relayed
        or still waiting for an upstream: what a drain waits for.
    """

    def __init__(
        self,
        clock: IReactorTime,
        metrics: GatewayMetrics,
        maxBody: int,
        heartbeat: float,
        maxLine: int,
        recordTokens: Callable[[Exchange, int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.maxBody = maxBody
        self.heartbeat = heartbeat
        self.maxLine = maxLine
        self.active: set[_Relay] = set()
        self.draining = False
        self.inflight: set[Exchange] = set()
        self._idle: list[Deferred[None]] = []
        self._recordTokens = recordTokens
        self._observers: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._streamGauges: dict[str, Any] = {}
        # Label children by (model, key), made once: labels() is a lock and
        # a tuple's hash each time. Bounded as the labels are (models past
        # MAX_MODEL_LABELS share "other"; keys are configured).
        self._tokenCounters: dict[tuple[str | None, str], tuple[Any, Any]] = {}

    # Arrival.

    def begin(
        self,
        request: Request,
        route: str,
        errorShape: Callable[[GatewayError], tuple[int, bytes]] | None = None,
    ) -> Exchange:
        """
        Start accounting for a request and set the headers every answer
        carries.

        @param errorShape: how the route's errors look, when not OpenAI's.
        """
        given = request.getHeader(b"x-request-id")
        if given and len(given) <= 200:
            request_id, supplied = given.decode("latin-1"), True
        else:
            request_id, supplied = "gw-" + os.urandom(12).hex(), False
        for name, value in STANDARD_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"x-request-id", request_id.encode("latin-1"))
        ex = Exchange(request, route, self.clock.seconds(), request_id, supplied, self.metrics)
        ex.errorShape = errorShape
        self.inflight.add(ex)
        return ex

    def idle(self) -> Deferred[None]:
        """Fire once no exchange is in flight (at once if none is)."""
        if not self.inflight:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def readJSON(self, request: Request) -> tuple[dict[str, Any], bytes]:
        """
        The request body as a JSON object, and its raw bytes.

        @raise GatewayError: 413, 415 or 400, in OpenAI's error shape.
        """
        ctype = request.getHeader(b"content-type")
        if ctype is not None and not ctype.split(b";", 1)[0].strip().lower().endswith(b"json"):
            raise UnsupportedMediaType(
                f"expected Content-Type application/json, got {ctype.decode('latin-1')!r}"
            )
        content = request.content
        assert content is not None
        parsed = getattr(request, "parsedBody", None)
        if parsed is not None:
            # A WebSocket turn: built by the socket, its bytes made from it.
            return parsed, content.getvalue()
        content.seek(0, 2)
        size = content.tell()
        if getattr(request, "tooLarge", False) or size > self.maxBody:
            raise PayloadTooLarge(f"request body is over the limit of {self.maxBody} bytes")
        content.seek(0)
        raw = content.read()
        if not raw:
            raise InvalidRequest("request body is empty; expected a JSON object")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidRequest(f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        return body, raw

    # Relaying.

    def upstreamHeaders(self, ex: Exchange, request: Request) -> dict[bytes, list[bytes]]:
        headers = {b"x-request-id": [ex.request_id.encode("latin-1")]}
        accept = request.getHeader(b"accept")
        if accept:
            headers[b"accept"] = [accept]
        return headers

    def copyResponseHeaders(self, ex: Exchange, response: Any) -> None:
        request = ex.request
        mine = request.responseHeaders
        for name, values in response.headers.getAllRawHeaders():
            lower = name.lower()
            if lower == b"x-request-id":
                # Ours stays: it is the one in our logs and the one we sent
                # upstream; the upstream's own id is kept beside it.
                mine.setRawHeaders(b"x-upstream-request-id", values)
            elif lower.startswith((b"x-ratelimit-", b"anthropic-ratelimit-")):
                # The gateway's own limits for this key, when it has any, are
                # the ones this client is held to.
                if not mine.hasHeader(lower):
                    mine.setRawHeaders(lower, values)
            elif lower == b"retry-after":
                # Whole seconds: clients (the Codex CLI first) parse nothing else.
                seconds = retryAfterSeconds(values[0])
                if seconds is not None:
                    mine.setRawHeaders(lower, [wholeSeconds(seconds)])
            elif lower in _PASS_HEADERS:
                mine.setRawHeaders(lower, values)

    def sending(self, ex: Exchange) -> None:
        """Mark the start of the upstream request, for its latency."""
        ex.sentAt = self.clock.seconds()

    def answered(self, ex: Exchange) -> None:
        """The upstream's response headers arrived."""
        if ex.sentAt is not None:
            self.metrics.upstream_latency.labels(ex.upstream).observe(
                self.clock.seconds() - ex.sentAt
            )

    def passThrough(
        self,
        ex: Exchange,
        upstream: Upstream,
        response: Any,
        stream: bool,
        failureEvent: Callable[[str, str], bytes] | None = None,
        usageAtStart: bool = False,
    ) -> Deferred[None]:
        """
        Relay an upstream response unchanged: status, the headers a client
        needs, and the body as it arrives.

        @param failureEvent: the SSE bytes that end a stream broken after
            its start (given the outcome's code and message), when the
            client's dialect is not OpenAI's.
        @param usageAtStart: the stream's first event says usage too
            (Anthropic's C{message_start}: the input tokens).
        """
        request = ex.request
        self.answered(ex)
        ex.respond(response.code)
        self.copyResponseHeaders(ex, response)
        if response.code == 429:
            # The Codex CLI retries a 429 only when told how long to wait:
            # the upstream's word when it gave one, else the gateway's.
            seconds = retryAfterEstimate(response, upstream.policy)
            request.setHeader(b"retry-after", b"%d" % seconds)
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        sse = stream and response.code < 400 and ctype.startswith(b"text/event-stream")
        if not sse and isinstance(response.length, int):
            request.setHeader(b"content-length", b"%d" % response.length)
        timeouts = upstream.config.timeouts
        return self.run(
            ex,
            response,
            lambda onDone: PassThroughRelay(
                request,
                self.clock,
                onDone,
                sse=sse,
                maxLine=self.maxLine,
                failureEvent=failureEvent,
                usageAtStart=usageAtStart and sse,
                heartbeat=self.heartbeat if sse else None,
                idleTimeout=timeouts.idle,
                totalTimeout=self.remaining(ex, timeouts.total),
            ),
            stream=sse,
        )

    def translate(
        self, ex: Exchange, upstream: Upstream, response: Any, adapter: IEventAdapter, stream: bool
    ) -> Deferred[None]:
        """
        Relay an upstream SSE body through a translating C{adapter} (the
        bridges'), with keep-alives only for a client that streams.
        """
        timeouts = upstream.config.timeouts
        return self.run(
            ex,
            response,
            lambda onDone: EventRelay(
                ex.request,
                self.clock,
                onDone,
                adapter,
                maxLine=self.maxLine,
                heartbeat=self.heartbeat if stream else None,
                idleTimeout=timeouts.idle,
                totalTimeout=self.remaining(ex, timeouts.total),
            ),
            stream=stream,
        )

    def remaining(self, ex: Exchange, total: float | None) -> float | None:
        if not total:
            return None
        return max(0.001, total - (self.clock.seconds() - ex.started))

    def run(self, ex: Exchange, response: Any, makeRelay: Any, stream: bool) -> Deferred[None]:
        """
        Deliver C{response}'s body through a relay; fire when the client's
        answer is finished (or the client has gone).
        """
        if ex.request.channel is None:
            # The client left while the upstream was answering. notifyFinish
            # would never fire for a connection already lost, so account the
            # exchange here and drop the upstream body unread.
            ex.clientGone()
            response.deliverBody(_Discard())
            return succeed(None)
        ex.stream = stream
        gauge = None
        if stream:
            gauge = self._streamGauges.get(ex.route)
            if gauge is None:
                gauge = self._streamGauges[ex.route] = self.metrics.active_streams.labels(ex.route)
            gauge.inc()

        def onDone(relay: _Relay) -> None:
            self.active.discard(relay)
            if gauge is not None:
                gauge.dec()
            ex.firstByteAt = relay.firstByteAt
            ex.usage = relay.usage()
            if relay.outcome == BAD_STREAM:
                log.warn(
                    "upstream {upstream} sent a stream the gateway cannot read: {error}; "
                    "the stream was failed request_id={request_id}",
                    upstream=ex.upstream,
                    error=getattr(relay, "error", None) or BAD_STREAM.message,
                    request_id=ex.request_id,
                )
            inBand = isinstance(relay, EventRelay) and relay.translator.failed
            ex.ended(relay.outcome or COMPLETE, inBand)

        relay = makeRelay(onDone)
        # The route's answer is done when the request is: finished by the
        # relay, or its connection gone (dropped by the relay or the client).
        # Asked after the relay asked, so that a client that leaves is seen
        # by the relay (the outcome) before the route ends (the access line).
        done: Deferred[None] = ex.request.notifyFinish()

        def lost(_: object) -> None:
            # However the route learns it first (Klein cancels it), a client
            # gone while its relay runs is what ends the relay and the outcome.
            if relay.outcome is None:
                ex.clientGone()

        done.addErrback(lost)
        self.active.add(relay)
        ex.relay = relay
        response.deliverBody(relay)
        return done

    def onRetry(self, ex: Exchange) -> Any:
        """A callback counting and logging each retry of C{ex}'s upstream request."""

        def retried(reason: str, delay: float) -> None:
            self.metrics.retries.labels(ex.upstream, reason).inc()
            log.info(
                "retrying upstream {upstream} after {reason} in {delay:.2f}s "
                "request_id={request_id}",
                upstream=ex.upstream,
                reason=reason,
                delay=delay,
                request_id=ex.request_id,
            )

        return retried

    # Endings.

    def finish(self, ex: Exchange) -> None:
        """Count and log the exchange; safe to call more than once."""
        if ex.finished:
            return
        ex.finished = True
        self.inflight.discard(ex)
        if not self.inflight and self._idle:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)
        now = self.clock.seconds()
        key = (ex.route, ex.upstream)
        observers = self._observers.get(key)
        if observers is None:
            observers = self._observers[key] = (
                self.metrics.duration.labels(*key),
                self.metrics.ttfb.labels(*key),
            )
        observers[0].observe(now - ex.started)
        if ex.firstByteAt is not None:
            observers[1].observe(ex.firstByteAt - ex.started)
        self.metrics.count_request(ex.route, ex.status, ex.upstream, ex.model)
        if ex.outcome is CLIENT_GONE:
            self.metrics.cancellations.labels(ex.route).inc()
        counted = tokens(ex.usage)
        if counted is not None:
            pair = self._tokenCounters.get((ex.model, ex.key))
            if pair is None:
                model = self.metrics.model_label(ex.model)
                pair = self._tokenCounters[(ex.model, ex.key)] = (
                    self.metrics.tokens.labels("input", model, ex.key),
                    self.metrics.tokens.labels("output", model, ex.key),
                )
            pair[0].inc(counted[0])
            pair[1].inc(counted[1])
            if self._recordTokens is not None:
                self._recordTokens(ex, counted[0] + counted[1])
        # A WebSocket's upgrade and turns say which socket they belong to.
        fields = getattr(ex.request, "accessFields", None) or _NO_FIELDS
        logAccess(
            **fields,
            method=ex.request.method.decode("latin-1"),
            route=ex.route,
            status=ex.status,
            duration_ms=round((now - ex.started) * 1000, 1),
            upstream=ex.upstream,
            model=ex.model or "-",
            request_id=ex.request_id,
            outcome=ex.outcome.value,
            key=ex.key,
        )
