# -*- test-case-name: tests.http.test_websocket -*-
"""
The Responses API's WebSocket mode: C{GET /v1/responses} upgraded to one
long-lived socket on which each C{response.create} frame is a turn, answered
with the same events an SSE stream carries, one text frame each.

A turn is served by exactly the code that serves C{POST /v1/responses}:
auth, per-key model rules, rate limits, routing, the bridges, the relays,
accounting. It is handed a L{TurnRequest}, which stands in for the
twisted.web request: what the route writes as SSE it sends as frames, an
error answer becomes an C{error} event, the socket's transport is the
consumer the relays' producers pause and resume, and a socket that closes
is a client gone. So a WebSocket turn and an HTTP request cannot behave
differently by accident.

The socket (L{ResponsesSocket}) owns what only a connection has: the turn
queue (one at a time, in order), the cache of its own turns for
C{previous_response_id} (L{codexgw.dialects.responses.continuation}), its
age and idle limits, and the drain.

The upgrade itself is Twisted's (L{twisted.web.websocket}, on wsproto).
Twisted hands the connection over by replacing the HTTP channel's
C{dataReceived} and C{connectionLost}; L{WebSocketEndpoint.upgrade} then
gives back to the channel what it still owns (the site's connection count,
its request accounting) and takes from it what would cut a socket (its idle
timer) or clash with the relays (its registration as the transport's
producer).
"""

from __future__ import annotations

import functools
import io
import os
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

if TYPE_CHECKING:
    from twisted.web.websocket import WebSocketTransport

from codexgw.dialects.responses.continuation import (
    ConnectionCache,
    Turn,
    continuable,
    continued,
    createBody,
    inputItems,
    warmupEvents,
    warmupResponse,
)
from codexgw.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ShuttingDown,
    errorObject,
)
from codexgw.http.exchange import Exchange, Proxy
from codexgw.obs.metrics import GatewayMetrics
from codexgw.obs.redaction import Redactor
from codexgw.state.conversation import history, notFound
from codexgw.state.store import IResponseStore

log = Logger()

ROUTE = "/v1/responses"

# Close codes (RFC 6455 7.4.1).
NORMAL, GOING_AWAY, TOO_BIG = 1000, 1001, 1009

# Frames a client may queue behind the turn in flight.
MAX_QUEUED = 8

# An error answer's body is read up to this much; the rest is noise.
_ERROR_BODY_CAP = 64 * 1024

_TERMINAL = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})

# Request headers a turn does not inherit from its upgrade: each turn is a
# JSON body of its own, with a request id of its own.
_NOT_INHERITED = frozenset(
    {b"content-type", b"content-length", b"x-request-id", b"accept", b"transfer-encoding"}
)


@attrs.frozen
class SocketSettings:
    """The C{server.websocket*} settings, as one socket needs them."""

    maxAge: float = 3600.0
    idleTimeout: float = 900.0
    cacheTurns: int = 16
    cacheBytes: int = 16 * 1024 * 1024
    maxFrame: int = 32 * 1024 * 1024


def textFrame(payload: bytes) -> bytes:
    """
    One unmasked, unfragmented text frame (RFC 6455 5.2), as a server sends
    it: the event's bytes as they are, where wsproto would take a str and
    encode it again. No extension is negotiated, so nothing else is framed.
    """
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def errorEvent(status: int, error: dict[str, Any], headers: Headers | None = None) -> bytes:
    """
    An C{error} event as the specification shapes it: the HTTP status the
    same failure has on C{POST}, the error object, and a string C{code}
    (required there; OpenAI's own objects may carry none).
    """
    error = dict(error)
    error.setdefault("message", "error")
    if not error.get("code"):
        error["code"] = error.get("type") or "server_error"
    event: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if headers is not None:
        retry = headers.getRawHeaders(b"retry-after")
        if retry:
            # What the Retry-After header says on HTTP (the Codex CLI reads
            # a wrapped error's headers; the message says it in words too).
            event["headers"] = {"retry-after": retry[0].decode("latin-1")}
    return orjson.dumps(event)


def _error(message: str, type: str, code: str | None = None, param: str | None = None) -> Any:
    """OpenAI's error object itself (what C{errorObject} wraps in C{error})."""
    return errorObject(message, type, code, param)["error"]


def gatewayErrorEvent(error: GatewayError) -> bytes:
    return errorEvent(error.status, _error(error.message, error.type, error.code, error.param))


class _Channel:
    """What a relay looks at on a request's channel: its transport."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport


class TurnRequest:
    """
    One turn, as the request the C{POST /v1/responses} route serves.

    It carries the frame's body as its content and the upgrade's headers
    (the key, session ids) as its own. What the route writes is SSE (the
    bridges' events, or a Responses upstream's bytes relayed untouched);
    each event's data goes out as one text frame, parsed only to see the
    terminal event's response (what the connection keeps). An error status
    turns what is written into one C{error} event.
    """

    method = b"WS"
    path = uri = ROUTE.encode()
    clientproto = b"HTTP/1.1"

    def __init__(
        self, socket: ResponsesSocket, raw: bytes, upgrade: Request, redactor: Redactor
    ) -> None:
        self._socket = socket
        self.content = io.BytesIO(raw)
        # The body the socket built, so the route need not parse it again.
        self.parsedBody: dict[str, Any] | None = None
        self.args: dict[bytes, list[bytes]] = {}
        self.requestHeaders = upgrade.requestHeaders
        self.responseHeaders = Headers()
        self.accessFields = {"socket": socket.id}
        self.code = 200
        self.startedWriting = False
        self.finished = False
        self.producer: Any = None
        self.channel: _Channel | None = _Channel(socket.transport)
        self._upgrade = upgrade
        self._redacting = redactor.stream() if redactor.active else None
        self._waiting: list[Deferred[None]] = []
        self._buffer = b""
        self._event = b""
        self._data: list[bytes] = []
        self._errorBody = bytearray()
        self.cut = False
        self.sentError = False
        self.terminal: dict[str, Any] | None = None
        self.terminalSize = 0

    # What routes read.

    def getHeader(self, name: bytes | str) -> bytes | None:
        key = name.lower() if isinstance(name, bytes) else name.lower().encode()
        if key == b"content-type":
            return b"application/json"
        if key == b"accept":
            return b"text/event-stream"
        if key in _NOT_INHERITED:
            return None
        return self._upgrade.getHeader(key)

    def getClientAddress(self) -> Any:
        return self._upgrade.getClientAddress()

    # What routes write.

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def write(self, data: bytes) -> None:
        if self.finished or self.channel is None:
            return
        self.startedWriting = True
        if self._redacting is not None:
            data = self._redacting.feed(data)
        self._take(data)

    def _take(self, data: bytes) -> None:
        if self.code >= 400:
            room = _ERROR_BODY_CAP - len(self._errorBody)
            if room > 0:
                self._errorBody += data[:room]
            return
        buffer = self._buffer + data if self._buffer else data
        start = 0
        find = buffer.find
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                self._dispatch()
            elif line[:5] == b"data:":
                value = line[5:]
                self._data.append(value[1:] if value[:1] == b" " else value)
            elif line[:6] == b"event:":
                self._event = line[6:].strip()
            # Comments (keep-alives), id: and retry: mean nothing on a socket.
        self._buffer = buffer[start:]
        if len(self._buffer) > self._socket.settings.maxFrame:
            # No event is that large; what is it sending?
            self._buffer = b""
            self.cut = True

    def _dispatch(self) -> None:
        data = self._data
        if not data:
            self._event = b""
            return
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        self._data = []
        kind, self._event = self._event, b""
        if payload == b"[DONE]":
            return
        if not kind:
            # Typed by the JSON alone (no event: line): read it to know.
            try:
                parsed = orjson.loads(payload)
                kind = str(parsed.get("type", "")).encode()
            except (orjson.JSONDecodeError, AttributeError):
                parsed, kind = None, b"other"
            if not kind and isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                # A relay's own word that the stream broke (OpenAI's error
                # object in a data line): on a socket, an error event.
                self.sentError = True
                self._socket.sendFrame(errorEvent(502, parsed["error"]), "error")
                return
        if kind in _TERMINAL:
            try:
                response = orjson.loads(payload).get("response")
            except (orjson.JSONDecodeError, AttributeError):
                response = None
            if isinstance(response, dict):
                self.terminal = response
                self.terminalSize = len(payload)
        elif kind == b"error":
            self.sentError = True
        self._socket.sendFrame(payload, kind.decode("latin-1", "replace"))

    def finish(self) -> None:
        if self.finished:
            return
        if self.channel is not None:
            if self._redacting is not None:
                held = self._redacting.flush()
                if held:
                    self._take(held)
            if self._buffer:
                self._take(b"\n\n")
            self._dispatch()
            if self.code >= 400:
                self._sendError()
        self.finished = True
        self._fire(None)

    def _sendError(self) -> None:
        body = bytes(self._errorBody)
        error: Any = None
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            pass
        if not isinstance(error, dict):
            text = body.decode("utf-8", "replace").strip()[:500]
            error = _error(text or f"upstream answered {self.code}", "upstream_error")
        self.sentError = True
        self._socket.sendFrame(errorEvent(self.code, error, self.responseHeaders), "error")

    def notifyFinish(self) -> Deferred[None]:
        if self.finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _fire(self, reason: Failure | None) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if reason is None:
                d.callback(None)
            else:
                d.errback(reason)

    # Flow control: the socket's transport is the consumer.

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if self.channel is not None:
            self._socket.ws.attachProducer(producer)

    def unregisterProducer(self) -> None:
        if self.producer is not None and self.channel is not None:
            self._socket.ws.detachProducer()
        self.producer = None

    # Endings from outside.

    def loseConnection(self) -> None:
        """
        A relay cuts the connection of a stream it cannot end cleanly; on a
        socket the turn is cut instead (an C{error} event follows), and the
        socket stays usable.
        """
        if self.finished:
            return
        self.cut = True
        self._detach()
        self.finished = True
        self._fire(Failure(ConnectionLost("the turn was cut")))

    def connectionLost(self, reason: Failure) -> None:
        """The socket closed: this turn's client is gone."""
        if self.finished:
            self.channel = None
            return
        self._detach()
        self.channel = None
        self._fire(reason)

    def _detach(self) -> None:
        if self.producer is not None and self.channel is not None:
            self._socket.ws.detachProducer()
        self.producer = None


Serve = Callable[[TurnRequest], Awaitable[bytes | None]]


class ResponsesSocket:
    """
    One client's socket: its turns, one at a time, in order; its own turns
    kept for continuation; its limits.
    """

    ws: WebSocketTransport

    def __init__(self, endpoint: WebSocketEndpoint, upgrade: Request, ex: Exchange) -> None:
        self.endpoint = endpoint
        self.settings = endpoint.settings
        self.upgrade = upgrade
        self.ex = ex
        self.id = "ws-" + os.urandom(8).hex()
        self.transport = upgrade.channel.transport if upgrade.channel is not None else None
        self.cache = ConnectionCache(self.settings.cacheTurns, self.settings.cacheBytes)
        self.turns = 0
        self.closed = False
        self._queue: deque[bytes] = deque()
        self._turn: TurnRequest | None = None
        self._running: Deferred[None] | None = None
        self._closeAfterTurn: tuple[int, bytes | None] | None = None
        clock = endpoint.clock
        self._clock = clock
        self._opened = clock.seconds()
        self._idleCall: IDelayedCall | None = None
        self._ageCall: IDelayedCall | None = None

    # WebSocketProtocol.

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.ws = transport

    def negotiationFinished(self) -> None:
        self.endpoint.opened(self)
        if self.settings.maxAge:
            self._ageCall = self._clock.callLater(self.settings.maxAge, self._aged)
        self._armIdle()

    def pongReceived(self, payload: bytes) -> None:
        pass

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.endpoint.metrics.count_frame("in", "binary")
        self._armIdle()
        self._refuse(InvalidRequest("binary frames are not accepted; send JSON text frames"))

    def textMessageReceived(self, message: str) -> None:
        metrics = self.endpoint.metrics
        self._armIdle()
        if self.closed:
            return
        raw = message.encode("utf-8")
        if len(raw) > self.settings.maxFrame:
            metrics.count_frame("in", "invalid")
            self._refuse(InvalidRequest(f"a frame may be at most {self.settings.maxFrame} bytes"))
            return
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            metrics.count_frame("in", "invalid")
            self._refuse(InvalidRequest(f"frame is not valid JSON: {e}", code="invalid_json"))
            return
        if not isinstance(frame, dict):
            metrics.count_frame("in", "invalid")
            self._refuse(InvalidRequest("a frame must be a JSON object", code="invalid_json"))
            return
        kind = frame.get("type")
        if kind != "response.create":
            metrics.count_frame("in", "other" if not isinstance(kind, str) else kind)
            self._refuse(
                InvalidRequest(
                    f"unknown frame type {kind!r}; expected 'response.create'",
                    param="type",
                    code="unknown_event_type",
                )
            )
            return
        metrics.count_frame("in", "response.create")
        if len(self._queue) >= MAX_QUEUED:
            self._refuse(
                InvalidRequest(
                    f"at most {MAX_QUEUED} response.create frames may wait behind the one "
                    "in flight",
                    code="too_many_queued",
                )
            )
            return
        self._queue.append(raw)
        if self._running is None:
            self._next()

    def tooLarge(self) -> None:
        """A message past the frame limit, still arriving: refused, and closed (1009)."""
        if self.closed:
            return
        self.endpoint.metrics.count_frame("in", "invalid")
        self._refuse(PayloadTooLarge(f"a frame may be at most {self.settings.maxFrame} bytes"))
        self.closed = True
        self._queue.clear()
        self._cancelTimers()
        self.ws.loseConnection(TOO_BIG)

    def connectionLost(self, reason: Failure) -> None:
        if self.closed and self.ex.finished:
            return
        self.closed = True
        self._queue.clear()
        self._cancelTimers()
        turn, running = self._turn, self._running
        if turn is not None:
            turn.connectionLost(reason)
        if running is not None:
            # As Klein does for a request whose client left: the turn's
            # work is cancelled wherever it waits (an upstream's headers).
            running.cancel()
        self.endpoint.closed(self, clean=reason.check(ConnectionDone) is not None)

    # Sending.

    def sendFrame(self, payload: bytes, kind: str) -> None:
        if self.closed:
            return
        self.endpoint.metrics.count_frame("out", kind)
        transport = self.transport
        if transport is None:
            self.ws.sendTextMessage(payload.decode("utf-8", "replace"))
            return
        if not payload.isascii():
            # A text frame must be UTF-8; an upstream's bytes might not be.
            payload = payload.decode("utf-8", "replace").encode("utf-8")
        transport.write(textFrame(payload))

    def _refuse(self, error: GatewayError) -> None:
        """An error about a frame: the socket stays open for the next."""
        self.sendFrame(gatewayErrorEvent(error), "error")

    def close(self, code: int = NORMAL, final: bytes | None = None) -> None:
        """Close now, or once the turn in flight has ended."""
        if self.closed:
            return
        if self._running is not None:
            if self._closeAfterTurn is None:
                self._closeAfterTurn = (code, final)
            return
        if final is not None:
            self.sendFrame(final, "error")
        self.closed = True
        self._queue.clear()
        self._cancelTimers()
        self.ws.loseConnection(code)

    # Turns.

    def _next(self) -> None:
        if self._closeAfterTurn is not None:
            code, final = self._closeAfterTurn
            self._closeAfterTurn = None
            self._running = None
            self.close(code, final)
            return
        if self.closed or not self._queue:
            self._running = None
            self._armIdle()
            return
        raw = self._queue.popleft()
        self.turns += 1
        self._running = d = Deferred.fromCoroutine(self._serve(raw))
        d.addErrback(self._broken)
        d.addBoth(lambda _: self._next())

    def _broken(self, failure: Failure) -> None:
        """A bug: logged whole; the client is told, and the socket goes on."""
        if failure.check(CancelledError):
            return
        log.failure("unhandled error in a WebSocket turn socket={socket}", failure, socket=self.id)
        self.sendFrame(gatewayErrorEvent(GatewayError("internal gateway error")), "error")

    async def _serve(self, raw: bytes) -> None:
        endpoint = self.endpoint
        try:
            frame = orjson.loads(raw)
            body = createBody(frame)
            generate = body.pop("generate", True)
            previous = body.get("previous_response_id")
            kept = None
            if isinstance(previous, str) and previous:
                kept = self.cache.get(previous)
                if kept is None:
                    kept = await self._stored(previous)
                if kept is not None:
                    body = continued(body, kept)
            if generate is False:
                if previous and kept is None:
                    raise notFound(str(previous))
                await self._warmup(body)
                return
            sent = inputItems(body.get("input")) if kept is not None or not previous else None
            raw = orjson.dumps(body)
        except GatewayError as e:
            self._refuse(e)
            return
        turn = self._turn = TurnRequest(self, raw, self.upgrade, endpoint.redactor)
        turn.parsedBody = body
        try:
            answer = await endpoint.serve(turn)
        finally:
            self._turn = None
        if self.closed:
            return
        if answer:
            turn.write(answer)
        if not turn.finished:
            turn.finish()
        failed = turn.sentError or turn.cut
        if turn.cut and not turn.sentError:
            self.sendFrame(
                errorEvent(
                    502,
                    _error(
                        "the upstream's stream broke before the response was complete; "
                        "retry the turn",
                        "upstream_error",
                        "upstream_stream_broken",
                    ),
                ),
                "error",
            )
        response = turn.terminal
        if response is not None and response.get("status") == "failed":
            failed = True
        if failed and isinstance(previous, str):
            # Open Responses: a continuation that fails evicts what it
            # continued from, so the client starts over with full input.
            self.cache.evict(previous)
        if not failed and response is not None and continuable(response) and sent is not None:
            rid = response.get("id")
            output = response.get("output")
            if isinstance(rid, str) and isinstance(output, list):
                self.cache.keep(rid, sent, output, len(raw) + turn.terminalSize)

    async def _stored(self, rid: str) -> Turn | None:
        """
        A turn of another connection (or replica) that the store keeps: its
        history read once, so that this socket's continuations of it are
        kept like its own. L{None} when the store has no such turn for this
        key: the route then decides (a Responses upstream may hold it).
        """
        store = self.endpoint.store
        if store is None:
            return None
        try:
            past = await history(store, rid, self.ex.key)
        except NotFound:
            return None
        return Turn(rid, past, 0)

    async def _warmup(self, body: dict[str, Any]) -> None:
        """
        C{generate: false}: the settings and input are checked and kept for
        the next turn; nothing is sent upstream.
        """
        endpoint = self.endpoint
        endpoint.authorize(self.upgrade, body)
        items = inputItems(body.get("input"))
        rid = f"resp_{uuid.uuid4().hex}"
        now = int(self._clock.seconds())
        for event in warmupEvents(warmupResponse(rid, body, now), now):
            self.sendFrame(orjson.dumps(event), event["type"])
        self.cache.keep(rid, items, [], len(orjson.dumps(items)))

    # Limits.

    def _armIdle(self) -> None:
        timeout = self.settings.idleTimeout
        if not timeout or self.closed:
            return
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.reset(timeout)
        else:
            self._idleCall = self._clock.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._idleCall = None
        if self._running is None:
            self.close(NORMAL)
        else:
            self._armIdle()

    def _aged(self) -> None:
        self._ageCall = None
        minutes = self.settings.maxAge / 60
        limit = f"{minutes:g} minutes" if minutes >= 1 else f"{self.settings.maxAge:g} seconds"
        final = errorEvent(
            400,
            _error(
                f"Responses websocket connection limit reached ({limit}). Create a new "
                "websocket connection to continue.",
                "invalid_request_error",
                "websocket_connection_limit_reached",
            ),
        )
        self.close(NORMAL, final)

    def _cancelTimers(self) -> None:
        for call in (self._idleCall, self._ageCall):
            if call is not None and call.active():
                call.cancel()
        self._idleCall = self._ageCall = None

    def drain(self) -> None:
        """Shutdown: the turn in flight finishes, then the socket closes (1001)."""
        self._queue.clear()
        self.close(GOING_AWAY)


class _Factory:
    def __init__(self, socket: ResponsesSocket) -> None:
        self._socket = socket

    def buildProtocol(self, request: Request) -> ResponsesSocket:
        return self._socket


class WebSocketEndpoint:
    """
    The upgrade of C{GET /v1/responses}, and every socket it made: what a
    drain closes and what the metrics count.

    @param serve: serves one turn as C{POST /v1/responses} would.
    @param authenticate: the gateway key of an upgrade request (raises
        L{codexgw.errors.Unauthorized}).
    @param store: the response store, whose turns a socket may continue
        (read once, then kept like the socket's own); L{None} without one.
    @param authorize: refuses a body whose model the upgrade's key may not
        use (raises L{codexgw.errors.Forbidden}).
    """

    def __init__(
        self,
        *,
        exchanges: Proxy,
        authenticate: Callable[[Request], Any],
        authorize: Callable[[Request, dict[str, Any]], None],
        serve: Serve,
        redactor: Redactor,
        metrics: GatewayMetrics,
        clock: IReactorTime,
        settings: SocketSettings,
        enabled: bool = True,
        store: IResponseStore | None = None,
    ) -> None:
        self.proxy = exchanges
        self._authenticate = authenticate
        self.authorize = authorize
        self.serve = serve
        self.redactor = redactor
        self.metrics = metrics
        self.clock = clock
        self.settings = settings
        self.enabled = enabled
        self.store = store
        self.sockets: set[ResponsesSocket] = set()

    def upgrade(self, request: Request) -> bytes | Resource:
        """
        Answer the upgrade: 426 when WebSocket mode is off (or the request
        asks for no upgrade), 401 without a good key, 503 while draining;
        else the socket, from Twisted's L{WebSocketResource}.
        """
        proxy = self.proxy
        ex = proxy.begin(request, ROUTE)
        upgrade = (request.getHeader(b"upgrade") or b"").lower() == b"websocket"
        try:
            if not self.enabled or not upgrade:
                request.setHeader(b"connection", b"close")
                raise _UpgradeRequired(
                    "WebSocket mode is not served here; use POST /v1/responses"
                    if not self.enabled
                    else "GET /v1/responses is the WebSocket mode: send an Upgrade: "
                    "websocket request, or POST a response"
                )
            if proxy.draining:
                raise ShuttingDown(
                    "the gateway is shutting down; retry", headers={b"retry-after": b"1"}
                )
            key = self._authenticate(request)
            ex.key = key.name
        except GatewayError as e:
            body = ex.fail(e)
            proxy.finish(ex)
            return body
        socket = ResponsesSocket(self, request, ex)
        ex.status = 101
        return _upgradeResource(self, socket)

    # Bookkeeping.

    def opened(self, socket: ResponsesSocket) -> None:
        self.sockets.add(socket)
        self.metrics.websockets_open.inc()

    def closed(self, socket: ResponsesSocket, clean: bool) -> None:
        if socket in self.sockets:
            self.sockets.discard(socket)
            self.metrics.websockets_open.dec()
        self.metrics.websocket_turns.observe(socket.turns)
        ex = socket.ex
        socket.upgrade.accessFields = {  # type: ignore[attr-defined]
            "socket": socket.id,
            "turns": socket.turns,
        }
        self.proxy.finish(ex)

    def drain(self) -> None:
        for socket in list(self.sockets):
            socket.drain()


class _UpgradeRequired(GatewayError):
    status = 426
    type = "invalid_request_error"
    code = "upgrade_required"


def _upgradeResource(endpoint: WebSocketEndpoint, socket: ResponsesSocket) -> Resource:
    """
    Twisted's upgrade, then the channel given back what it still owns.
    twisted.web.websocket (and wsproto, h11 under it) is loaded with the
    first upgrade: a gateway nobody opens a socket to does not hold it.
    """
    upgrade: Resource = _defineUpgrade()(endpoint, socket)
    return upgrade


@functools.cache
def _defineUpgrade() -> Any:
    from twisted.web.websocket import WebSocketResource

    class Upgrade(WebSocketResource):
        """Twisted's upgrade, then the channel given back what it still owns."""

        # Rendered by Klein for the route it matched: no child lookup below it.
        isLeaf = True

        def __init__(self, endpoint: WebSocketEndpoint, socket: ResponsesSocket) -> None:
            super().__init__(_Factory(socket))
            self._endpoint = endpoint
            self._socket = socket

        def render_GET(self, request: Request) -> bytes | int:
            channel: Any = request.channel
            result = super().render_GET(request)
            if request.code == 400:
                # wsproto refused the handshake: a plain 400, accounted.
                self._socket.ex.status = 400
                self._endpoint.proxy.finish(self._socket.ex)
                return result
            # The channel's idle timer knows nothing of frames: a quiet socket
            # is the socket's own to close (server.websocket_idle_timeout).
            channel.setTimeout(None)
            # The relays register their producers on the transport, one at a
            # time; the HTTP channel must not hold that place.
            producer = getattr(channel, "_networkProducer", None)
            if producer is not None:
                producer.unregisterProducer()
            transport = channel.transport
            if transport is not None:
                # Twisted may have paused reading while the request was handled.
                transport.resumeProducing()
            # wsproto reassembles a fragmented message whole before it is
            # delivered: the part held so far is bounded here, read by read.
            wire = getattr(channel.dataReceived, "__self__", None)
            buffers = [getattr(wire, "_textBuffer", None), getattr(wire, "_bytesBuffer", None)]
            held = [b for b in buffers if b is not None]
            if held:
                received = channel.dataReceived
                limit = self._socket.settings.maxFrame
                socket = self._socket

                def dataReceived(data: bytes) -> None:
                    received(data)
                    if any(len(b.data) > limit for b in held):
                        for b in held:
                            b.done()
                        socket.tooLarge()

                channel.dataReceived = dataReceived
            socketLost = channel.connectionLost
            channelLost = type(channel).connectionLost

            def connectionLost(reason: Failure = Failure(ConnectionDone())) -> None:
                try:
                    socketLost(reason)
                finally:
                    # The site's connection count, the request's own ending.
                    channelLost(channel, reason)

            channel.connectionLost = connectionLost
            return result

    return Upgrade


def socketSettings(config: Any) -> SocketSettings:
    return SocketSettings(
        maxAge=config.websocket_max_age,
        idleTimeout=config.websocket_idle_timeout,
        cacheTurns=config.websocket_cache_responses,
        cacheBytes=config.websocket_cache_bytes,
        maxFrame=config.max_body_bytes,
    )


__all__ = [
    "ResponsesSocket",
    "SocketSettings",
    "TurnRequest",
    "WebSocketEndpoint",
    "errorEvent",
    "socketSettings",
]
