# -*- test-case-name: tests.http.test_messages_routes,tests.http.test_messages_relay -*-
"""
The route's work for Anthropic Messages clients (Claude Code, the anthropic
SDKs): C{POST /v1/messages} and C{POST /v1/messages/count_tokens}.

Onto a C{messages} upstream the request is relayed untouched: its bytes go
as they came (re-serialised only when routing renames the model), the
upstream's key replaces the client's gateway key (the upstream's profile
puts it in C{x-api-key}), C{anthropic-version} and C{anthropic-beta} go on
unchanged, and the answer comes back by the pass-through relay, never
parsed. Onto an upstream of another dialect the request goes through the
hub: a Responses upstream by the reverse bridge, a Chat upstream by the
composed one (L{codexgw.http.bridge.Bridge} with a client spoke).

Every error on these routes is in Anthropic's shape
(L{anthropicError}); the exchange renders it, as it does every error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from codexgw.dialects.messages.errors import (
    estimate_tokens,
    messages_error_body,
    messages_error_status,
    stream_error_event,
)
from codexgw.errors import GatewayError, InvalidRequest
from codexgw.http.bridge import withDefaults
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Proxy
from codexgw.stream.adapters import encodeEvents
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream
from codexgw.upstream.profiles import ANTHROPIC_VERSION

log = Logger()

MESSAGES_PATH = "/messages"
COUNT_TOKENS_PATH = "/messages/count_tokens"

_NO_COUNT = frozenset({404, 405, 501})
"""What an upstream without C{count_tokens} answers it with."""

FORWARDED = (b"anthropic-version", b"anthropic-beta")
"""The client's request headers a Messages upstream gets as they came: the
API version it speaks, and the betas whose fields the body may carry."""


class Runner(Protocol):
    """A bridge: serves one routed call from an upstream of another dialect."""

    def run(self, call: Call) -> Awaitable[None]: ...


def anthropicError(error: GatewayError) -> tuple[int, bytes]:
    """
    C{error} as Anthropic answers one: its status, and
    C{{"type": "error", "error": {"type", "message"}}}, the type by status
    (400 C{invalid_request_error}, 401 C{authentication_error}, 403
    C{permission_error}, 404 C{not_found_error}, 413 C{request_too_large},
    429 C{rate_limit_error}, 500 C{api_error}, 529 C{overloaded_error}); a
    context overflow 400, in Anthropic's words ("prompt is too long").
    """
    return messages_error_status(error), orjson.dumps(messages_error_body(error))


DEFAULTS = {b"anthropic-version": ANTHROPIC_VERSION.encode()}
"""What a Messages upstream is sent when neither the client nor the
upstream's profile or config says it."""


def streamFailure(code: str, message: str) -> bytes:
    """The C{event: error} that ends a relayed Messages stream broken after its start."""
    return encodeEvents([stream_error_event(code, message)])


def upstreamHeaders(proxy: Proxy, call: Call) -> dict[bytes, list[bytes]]:
    """
    What a Messages upstream is sent beside the body: the gateway's usual
    headers, and the client's C{anthropic-version} and C{anthropic-beta}.
    """
    ex = call.ex
    request = ex.request
    headers = proxy.upstreamHeaders(ex, request)
    for name in FORWARDED:
        given = request.requestHeaders.getRawHeaders(name)
        if given:
            headers[name] = list(given)
    return headers


class MessagesRoute:
    """
    Serves the Messages routes once auth, limits and routing are done (see
    L{codexgw.http.routes.GatewayApp._api}).

    @param bridges: what serves a Messages client from an upstream of
        another dialect, by that upstream's C{wire_api}.
    @param estimate: the input tokens of a C{count_tokens} body, for
        upstreams that cannot count them.
    """

    def __init__(
        self,
        *,
        exchanges: Proxy,
        dispatcher: Dispatcher,
        bridges: Mapping[str, Runner],
        estimate: Callable[[object], int] = estimate_tokens,
    ) -> None:
        self.proxy = exchanges
        self.dispatcher = dispatcher
        self.bridges = dict(bridges)
        self.estimate = estimate

    async def create(self, call: Call) -> None:
        """C{POST /v1/messages}."""
        if call.wire_api == "messages":
            await self.relay(call, MESSAGES_PATH)
            return
        bridge = self.bridges.get(call.wire_api)
        if bridge is None:
            raise InvalidRequest(
                f"the model {call.model!r} is served by a {call.wire_api} upstream, "
                "which Messages clients cannot reach",
                param="model",
            )
        await bridge.run(call)

    async def countTokens(self, call: Call) -> None:
        """
        C{POST /v1/messages/count_tokens}: the upstream's count where it
        speaks Messages and can count (Anthropic-compatible endpoints may
        answer 404), else the documented estimate (L{estimate_tokens}).
        """
        ex = call.ex
        if call.wire_api == "messages":
            upstream, response = await self.send(call, COUNT_TOKENS_PATH)
            if response.code not in _NO_COUNT:
                await self.proxy.passThrough(ex, upstream, response, False)
                return
            await readCapped(response)
            log.info(
                "upstream {upstream} cannot count tokens (HTTP {status}); answered with the "
                "estimate request_id={request_id}",
                upstream=upstream.name,
                status=response.code,
                request_id=ex.request_id,
            )
        if not isinstance(call.body.get("messages"), list):
            raise InvalidRequest("messages: Field required", param="messages")
        ex.request.write(ex.json({"input_tokens": self.estimate(call.body)}))

    async def relay(self, call: Call, path: str) -> None:
        """Pass the request through untouched but for the model's name."""
        upstream, response = await self.send(call, path)
        stream = call.body.get("stream") is True
        await self.proxy.passThrough(
            call.ex, upstream, response, stream, streamFailure, usageAtStart=True
        )

    async def send(self, call: Call, path: str) -> tuple[Upstream, IResponse]:
        """The request to the first candidate that answers, as it came."""
        proxy, ex = self.proxy, call.ex
        raw = call.raw
        if call.upstreamModel != call.model:
            call.body["model"] = call.upstreamModel
            raw = orjson.dumps(call.body)
        query = ex.request.uri.partition(b"?")[2]
        if query:
            # Claude Code's ?beta=true goes where it would have gone.
            path += "?" + query.decode("ascii", "replace")
        onRetry = proxy.onRetry(ex)
        given = upstreamHeaders(proxy, call)

        def send(upstream: Upstream) -> Any:
            headers = withDefaults(given, upstream, DEFAULTS)
            return upstream.send(b"POST", path, raw, headers, onRetry, model=call.upstreamModel)

        return await self.dispatcher.firstAnswer(call, send)


__all__ = [
    "COUNT_TOKENS_PATH",
    "DEFAULTS",
    "FORWARDED",
    "MESSAGES_PATH",
    "MessagesRoute",
    "anthropicError",
    "streamFailure",
    "upstreamHeaders",
]
