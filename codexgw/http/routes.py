# -*- test-case-name: tests.http.test_http,tests.http.test_exchange -*-
"""
The HTTP routes, as a Klein app. Routes are thin: they parse, pick an
upstream and hand over to L{codexgw.http.exchange.Proxy}.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import orjson
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import MethodNotAllowed as WZMethodNotAllowed
from werkzeug.exceptions import NotFound as WZNotFound
from zope.interface import implementer

from codexgw._version import __version__
from codexgw.config import Config
from codexgw.dialects.responses.compaction import is_trigger
from codexgw.dialects.responses.validate import check_create
from codexgw.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ShuttingDown,
    StoreUnavailable,
)
from codexgw.http.auth import Authenticator
from codexgw.http.bridge import Bridge
from codexgw.http.codex import catalog, etag, notModified
from codexgw.http.compact import Compactor
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Exchange, Proxy
from codexgw.http.limits import RequestLimits
from codexgw.http.reverse import ReverseBridge
from codexgw.http.site import STANDARD_HEADERS
from codexgw.http.websocket import WebSocketEndpoint
from codexgw.obs.logs import Throttle
from codexgw.obs.metrics import CONTENT_TYPE, GatewayMetrics
from codexgw.state.conversation import history
from codexgw.state.store import IResponseStore
from codexgw.upstream.client import Upstream
from codexgw.upstream.health import HealthChecker
from codexgw.upstream.models import ModelCatalog
from codexgw.upstream.routing import Router

if TYPE_CHECKING:
    from codexgw.http.messages import MessagesRoute

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
COMPACT = "/v1/responses/compact"
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"

log = Logger()


def _affinity(body: dict[str, Any], request: Request) -> str | None:
    """What keeps a conversation on one upstream of a pool: its cache key."""
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return key
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user:
        # Claude Code's user_id names its session: the Messages cache key.
        return user
    for name in (b"session-id", b"session_id", b"x-session-id", b"x-claude-code-session-id"):
        value = request.getHeader(name)
        if value:
            return value.decode("latin-1")
    return None


def _page(items: list[dict[str, Any]], args: dict[bytes, list[bytes]]) -> dict[str, Any]:
    """C{input_items} pagination: C{after}, C{limit} (1-100, 20), C{order} (desc)."""

    def arg(name: bytes) -> str | None:
        values = args.get(name)
        return values[0].decode("utf-8", "replace") if values else None

    order = arg(b"order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc", param="order")
    try:
        limit = int(arg(b"limit") or 20)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    ordered = items if order == "asc" else list(reversed(items))
    after = arg(b"after")
    if after is not None:
        ids = [i.get("id") for i in ordered]
        if after not in ids:
            raise InvalidRequest(f"no item with id {after!r}", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(ordered) > limit,
    }


def _withoutCredentials(url: str) -> str:
    """C{url} without any C{user:password@} or query: /health needs no key."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _anthropicError(error: GatewayError) -> tuple[int, bytes]:
    """Anthropic's error shape, its module loaded with the first Messages call."""
    from codexgw.http.messages import anthropicError

    return anthropicError(error)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    return model


@attrs.define
class Status:
    """What the health routes report about the gateway as a whole."""

    config: Config
    upstreams: Mapping[str, Upstream]
    health: HealthChecker
    clock: IReactorTime


class GatewayApp:
    """
    The gateway's routes. Each collaborator is one concern, handed in by the
    composition root (L{codexgw.service.Gateway}); no route reaches past
    them.

    @param exchanges: accounting, the relays, what each client was sent.
    @param storedRelay: the Responses upstream that may hold a response id
        this gateway did not store, or L{None}.
    """

    app = Klein()

    def __init__(
        self,
        *,
        exchanges: Proxy,
        auth: Authenticator,
        router: Router,
        limits: RequestLimits,
        dispatcher: Dispatcher,
        store: IResponseStore | None,
        bridge: Bridge,
        reverse: ReverseBridge,
        catalog: ModelCatalog,
        status: Status,
        metrics: GatewayMetrics,
        storedRelay: Upstream | None,
        compactor: Compactor | None = None,
        compactors: Mapping[str, Compactor] | None = None,
        bridges: Mapping[tuple[str, str], Any] | None = None,
        messages: MessagesRoute | None = None,
        sockets: WebSocketEndpoint | None = None,
    ) -> None:
        self.proxy = exchanges
        self._auth = auth
        self._router = router
        self._limits = limits
        self._dispatcher = dispatcher
        self._store = store
        self._bridge = bridge
        self._reverse = reverse
        self._catalog = catalog
        self._status = status
        self._metrics = metrics
        self._storedRelay = storedRelay
        self._compactor = compactor
        # Compaction through the upstream's spoke, by its wire_api.
        # Looked up, never copied: the bridges and compactors of a dialect
        # are made (and its spoke imported) only once a call needs them.
        self._compactors: Mapping[str, Compactor] = ChainMap(
            compactors if compactors is not None else {},  # type: ignore[arg-type]
            {"chat": compactor} if compactor is not None else {},
        )
        # What serves a client of one dialect from an upstream of another,
        # by (client dialect, upstream wire_api); same-dialect pairs relay.
        self._bridges: Mapping[tuple[str, str], Any] = ChainMap(
            bridges if bridges is not None else {},  # type: ignore[arg-type]
            {("responses", "chat"): bridge, ("chat", "responses"): reverse},
        )
        self._messages = messages
        self._sockets = sockets
        self._storeOutage = Throttle(status.clock)

    def resource(self) -> IResource:
        """
        The routes as a resource: the model routes (every request a client
        makes in a loop) matched by a dict lookup, the rest by Klein.
        """
        return _Compiled(
            {
                (b"POST", CHAT.encode()): self.chat_completions,
                (b"POST", RESPONSES.encode()): self.responses,
                (b"POST", MESSAGES.encode()): self.messages,
            },
            self.app.resource(),
        )

    @app.route(CHAT, methods=["POST"])
    async def chat_completions(self, request: Request) -> bytes | None:
        return await self._api(request, CHAT, self._chat)

    @app.route(RESPONSES, methods=["POST"])
    async def responses(self, request: Request) -> bytes | None:
        return await self._api(request, RESPONSES, self._responses)

    @app.route(RESPONSES, methods=["GET"])
    def responses_socket(self, request: Request) -> bytes | Any:
        # Synchronous: the upgrade happens as the request arrives, before
        # the HTTP channel buffers the client's first frames.
        if self._sockets is None:
            return self.notAllowed(request, Failure(WZMethodNotAllowed(["POST"])))
        return self._sockets.upgrade(request)

    def serveTurn(self, request: Any) -> Awaitable[bytes | None]:
        """One WebSocket turn, served as C{POST /v1/responses} is."""
        return self._api(request, RESPONSES, self._responses)

    def authorizeTurn(self, request: Request, body: dict[str, Any]) -> None:
        """What a turn that calls no model is held to: the key and its models."""
        self._auth.authorize(self._auth.authenticate(request), _model(body))

    @app.route(COMPACT, methods=["POST"])
    async def responses_compact(self, request: Request) -> bytes | None:
        return await self._api(request, COMPACT, self._compact)

    async def _compact(self, call: Call) -> None:
        # What Codex adds to a compact request (tools, reasoning, text, ...)
        # has the create body's types; a Responses upstream compacts itself.
        check_create(call.body, bridged=call.wire_api != "responses")
        if call.wire_api == "responses":
            await self._relay(call, "/responses/compact")
        else:
            await self._compactorFor(call).compact(call)

    def _compactorFor(self, call: Call) -> Compactor:
        compactor = self._compactors.get(call.wire_api)
        if compactor is None:
            raise NotFound("compaction is not served by this gateway", param="model")
        return compactor

    async def _chat(self, call: Call) -> None:
        if call.wire_api == "chat":
            await self._relay(call, "/chat/completions")
        else:
            await self._bridgeFor("chat", call).run(call)

    def _bridgeFor(self, client: str, call: Call) -> Any:
        """What serves a C{client}-dialect call from its upstreams' dialect."""
        bridge = self._bridges.get((client, call.wire_api))
        if bridge is None:
            raise InvalidRequest(
                f"the model {call.model!r} is served by a {call.wire_api} upstream, "
                f"which this route cannot reach",
                param="model",
            )
        return bridge

    @app.route(MESSAGES, methods=["POST"])
    async def messages(self, request: Request) -> bytes | None:
        return await self._api(
            request, MESSAGES, self._messagesRoute().create, errorShape=_anthropicError
        )

    @app.route(COUNT_TOKENS, methods=["POST"])
    async def messages_count_tokens(self, request: Request) -> bytes | None:
        return await self._api(
            request, COUNT_TOKENS, self._messagesRoute().countTokens, errorShape=_anthropicError
        )

    def _messagesRoute(self) -> MessagesRoute:
        if self._messages is None:
            from codexgw.http.messages import MessagesRoute

            self._messages = MessagesRoute(
                exchanges=self.proxy,
                dispatcher=self._dispatcher,
                bridges={
                    upstream: bridge
                    for (client, upstream), bridge in self._bridges.items()
                    if client == "messages"
                },
            )
        return self._messages

    async def _responses(self, call: Call) -> None:
        # Field types are refused before anything is looked up or sent;
        # only the bridge must know every tool type (see translate.validate).
        check_create(call.body, bridged=call.wire_api != "responses")
        if call.wire_api == "responses":
            await self._relay(call, "/responses")
        elif is_trigger(call.body):
            # The Codex CLI's remote compaction: one compaction item back.
            await self._compactorFor(call).trigger(call)
        else:
            await self._bridgeFor("responses", call).run(call)

    async def _relay(self, call: Call, path: str) -> None:
        """Pass the request through untouched but for the model's name."""
        proxy, ex = self.proxy, call.ex
        raw = call.raw
        if call.upstreamModel != call.model:
            call.body["model"] = call.upstreamModel
            raw = orjson.dumps(call.body)
        headers = proxy.upstreamHeaders(ex, ex.request)
        upstream, response = await self._dispatcher.firstAnswer(
            call,
            lambda u: u.send(
                b"POST", path, raw, headers, proxy.onRetry(ex), model=call.upstreamModel
            ),
        )
        await proxy.passThrough(ex, upstream, response, call.body.get("stream") is True)

    async def _api(
        self,
        request: Request,
        route: str,
        work: Callable[[Call], Awaitable[None]],
        errorShape: Callable[[GatewayError], tuple[int, bytes]] | None = None,
    ) -> bytes | None:
        """
        What every model route shares: shutdown, auth, the JSON body and
        routing by model, then C{work}; errors in C{errorShape} when the
        route's dialect is not OpenAI's.
        """

        async def model(ex: Exchange) -> None:
            if self.proxy.draining:
                raise ShuttingDown(
                    "the gateway is shutting down; retry", headers={b"retry-after": b"1"}
                )
            key = self._auth.authenticate(request)
            ex.key = key.name
            body, raw = self.proxy.readJSON(request)
            name = _model(body)
            self._auth.authorize(key, name)
            await self._limits.check(ex, key)
            candidates, upstreamModel = self._router.route(name)
            order = candidates.order(_affinity(body, request))
            ex.model, ex.upstream = name, order[0].name
            await work(Call(ex, body, raw, name, order, upstreamModel))

        return await self._serve(request, route, model, errorShape)

    async def _serve(
        self,
        request: Request,
        route: str,
        work: Callable[[Exchange], Awaitable[None]],
        errorShape: Callable[[GatewayError], tuple[int, bytes]] | None = None,
    ) -> bytes | None:
        """
        Accounting for one request, and every failure turned into the
        route's error shape, OpenAI's by default (or, once the client has
        gone, into nothing).
        """
        proxy = self.proxy
        ex = proxy.begin(request, route, errorShape)
        try:
            await work(ex)
            return None
        except StoreUnavailable as e:
            # An outage, not a bug: one line, no traceback, and one a minute
            # at most (each request has its access line already).
            suppressed = self._storeOutage.due()
            if suppressed is not None:
                log.warn(
                    "response store unavailable: {cause}; answered 503 on {route} "
                    "request_id={request_id} ({suppressed} more since the last such line)",
                    cause=e.cause,
                    route=ex.route,
                    request_id=ex.request_id,
                    suppressed=suppressed,
                )
            return ex.fail(e)
        except GatewayError as e:
            return ex.fail(e)
        except CancelledError:
            ex.clientGone()
            return None
        except Exception:
            return self._internal(ex)
        finally:
            proxy.finish(ex)

    @app.route("/v1/responses/<string:rid>", methods=["GET", "DELETE"])
    async def response_object(self, request: Request, rid: str) -> bytes | None:
        return await self._stored(request, rid, "")

    @app.route("/v1/responses/<string:rid>/input_items", methods=["GET"])
    async def response_input_items(self, request: Request, rid: str) -> bytes | None:
        return await self._stored(request, rid, "/input_items")

    async def _stored(self, request: Request, rid: str, suffix: str) -> bytes | None:
        """
        A bridged turn this key stored is answered here; any other id
        (unknown, expired, or another key's) is relayed untouched to the
        Responses upstream that may hold it (the default upstream if it
        speaks Responses, else the first that does), or is 404 without one.
        """
        proxy = self.proxy

        async def relay(ex: Exchange) -> None:
            key = self._auth.authenticate(request)
            ex.key = key.name
            store = self._store
            record = await store.get(rid) if store is not None else None
            if record is not None and record.owner != key.name:
                # Another key's response must look exactly like none: same
                # answer, same routing, nothing of it used.
                record = None
            if record is not None:
                assert store is not None
                answer = await self._local(store, record, suffix, request)
                ex.request.write(ex.json(answer))
                return
            upstream = self._storedRelay
            if upstream is None:
                raise NotFound(
                    f"no response with id {rid!r}: no upstream here stores responses",
                    param="response_id",
                )
            ex.upstream = upstream.name
            path = f"/responses/{quote(rid, safe='')}{suffix}"
            query = request.uri.partition(b"?")[2]
            if query:
                path += "?" + query.decode("ascii", "replace")
            proxy.sending(ex)
            response = await upstream.send(
                request.method, path, None, proxy.upstreamHeaders(ex, request), proxy.onRetry(ex)
            )
            await proxy.passThrough(ex, upstream, response, False)

        return await self._serve(request, "/v1/responses/{id}" + suffix, relay)

    async def _local(
        self, store: Any, record: Any, suffix: str, request: Request
    ) -> dict[str, Any]:
        """A stored (bridged) response: retrieve, delete or list its input."""
        if suffix == "/input_items":
            items = (
                await history(store, record.previous_id, record.owner) if record.previous_id else []
            ) + record.input_items
            return _page(items, request.args)
        if request.method == b"DELETE":
            await store.delete(record.id)
            return {"id": record.id, "object": "response.deleted", "deleted": True}
        response: dict[str, Any] = record.response
        return response

    @app.route("/v1/models", methods=["GET"])
    async def models(self, request: Request) -> bytes:
        ex = self.proxy.begin(request, "/v1/models")
        try:
            key = self._auth.authenticate(request)
            ex.key = key.name
            # Codex fetches its catalog itself with a client_version, and
            # revalidates it with the ETag of this key's view of it.
            if b"client_version" in request.args or request.args.get(b"format") == [b"codex"]:
                codex = catalog(self._status.config)
                codex["models"] = [m for m in codex["models"] if key.allows(m["slug"])]
                body = orjson.dumps(codex)
                tag = etag(body)
                request.setHeader(b"etag", tag)
                if notModified(request.getHeader(b"if-none-match"), tag):
                    ex.respond(304)
                    return b""
                ex.respond(200, b"application/json")
                return body
            listing = await self._catalog.list()
            listing["data"] = [m for m in listing["data"] if key.allows(m["id"])]
            return ex.json(listing)
        except GatewayError as e:
            return ex.fail(e)
        finally:
            self.proxy.finish(ex)

    @app.route("/health/live", methods=["GET"])
    def live(self, request: Request) -> bytes:
        ex = self.proxy.begin(request, "/health/live")
        try:
            return ex.json({"status": "ok"})
        finally:
            self.proxy.finish(ex)

    @app.route("/health/ready", methods=["GET"])
    async def ready(self, request: Request) -> bytes:
        ex = self.proxy.begin(request, "/health/ready")
        try:
            gw = self._status
            if self.proxy.draining:
                return ex.json({"status": "draining"}, 503)
            state = await gw.health.probe(gw.config.default_upstream)
            ok = bool(state.reachable)
            return ex.json(
                {
                    "status": "ok" if ok else "unavailable",
                    "upstream": gw.config.default_upstream,
                    "error": state.error,
                },
                200 if ok else 503,
            )
        finally:
            self.proxy.finish(ex)

    @app.route("/health", methods=["GET"])
    async def health(self, request: Request) -> bytes:
        ex = self.proxy.begin(request, "/health")
        try:
            gw = self._status
            # All at once: silent upstreams cost one probe timeout, not one each.
            states = await gw.health.probeMany(gw.upstreams)
            upstreams = {}
            for name, upstream in gw.upstreams.items():
                state = states[name]
                upstreams[name] = dict(
                    state.asDict(),
                    wire_api=upstream.config.wire_api,
                    provider=upstream.config.provider,
                    base_url=_withoutCredentials(upstream.base_url),
                    refused_params=upstream.refused.names(),
                )
            return ex.json(
                {
                    "status": "draining" if self.proxy.draining else "ok",
                    "version": __version__,
                    "uptime_seconds": round(gw.clock.seconds() - gw.health.started, 3),
                    "default_upstream": gw.config.default_upstream,
                    "active_streams": len(self.proxy.active),
                    "upstreams": upstreams,
                },
            )
        finally:
            self.proxy.finish(ex)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Request) -> bytes:
        # Not through proxy.begin: a scrape is not counted as a request; it
        # carries the headers every answer does all the same.
        for name, value in STANDARD_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        return self._metrics.render()

    @app.handle_errors(WZNotFound)  # type: ignore[arg-type]
    def notFound(self, request: Request, failure: Failure) -> bytes:
        return self._routeError(
            request, NotFound(f"no route for {request.method.decode()} {request.path.decode()}")
        )

    @app.handle_errors(WZMethodNotAllowed)  # type: ignore[arg-type]
    def notAllowed(self, request: Request, failure: Failure) -> bytes:
        # RFC 9110 15.5.6: a 405 lists the methods the resource takes.
        valid = getattr(failure.value, "valid_methods", None) or []
        headers = {b"allow": ", ".join(sorted(valid)).encode("ascii")} if valid else None
        return self._routeError(
            request,
            MethodNotAllowed(
                f"method {request.method.decode()} is not allowed on {request.path.decode()}",
                headers=headers,
            ),
        )

    def _internal(self, ex: Exchange) -> bytes | None:
        """A bug: log it whole, answer 500 in OpenAI's shape, keep serving."""
        log.failure(
            "unhandled error in {route} request_id={request_id}",
            route=ex.route,
            request_id=ex.request_id,
        )
        if ex.request.startedWriting:
            ex.request.loseConnection()
            return None
        return ex.fail(GatewayError("internal gateway error"))

    def _routeError(self, request: Request, error: GatewayError) -> bytes:
        # Anthropic's clients get their own shape under the Messages paths.
        path = request.path or b""
        shape = _anthropicError if path.startswith(MESSAGES.encode()) else None
        ex = self.proxy.begin(request, "unmatched", shape)
        try:
            return ex.fail(error)
        finally:
            self.proxy.finish(ex)


@implementer(IResource)
class _Compiled:
    """
    Klein's dispatch for a few exact routes, without Klein: binding
    werkzeug's URL map, matching every rule and adapting the request cost
    more than the rest of routing a request did (bench --floor, py-spy).
    What Klein does for a route's coroutine is done here alike: its bytes
    written, the request finished unless the client left, and the work
    cancelled when the client leaves first. Any other method or path (a
    trailing slash, another method on these paths) goes to Klein, whose
    answers (404, 405 with Allow) stay the same.
    """

    isLeaf = True

    def __init__(
        self,
        routes: Mapping[
            tuple[bytes, bytes], Callable[[Request], Coroutine[Any, Any, bytes | None]]
        ],
        fallback: IResource,
    ) -> None:
        self._routes = dict(routes)
        self._fallback = fallback

    def render(self, request: Request) -> Any:
        route = self._routes.get((request.method, request.path))
        if route is None:
            return self._fallback.render(request)
        gone: list[bool] = []
        finished = request.notifyFinish()
        finished.addBoth(lambda _: gone.append(True))
        work: Deferred[bytes | None] = Deferred.fromCoroutine(route(request))
        request.notifyFinish().addErrback(lambda _: work.cancel())

        def answered(body: bytes | None) -> None:
            if gone:
                return
            if body:
                request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            # The routes answer their own errors; this is a bug.
            log.failure("unhandled error in {path}", failure, path=request.path)
            if not gone and not request.finished:
                request.processingFailed(failure)

        work.addCallbacks(answered, failed)
        return NOT_DONE_YET

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the gateway's routes are its own")
