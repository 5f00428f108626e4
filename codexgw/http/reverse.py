# -*- test-case-name: tests.http.test_reverse -*-
"""
The route's work for a Chat Completions client on a Responses-only
upstream: the client spoke is L{codexgw.dialects.chat} (its request to the
hub, the hub's stream back to Chat chunks), the upstream is the hub itself.

The mirror of L{codexgw.http.bridge}, with the same adapters and the same
narrow collaborators.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from codexgw.dialects import responses as hub
from codexgw.dialects.spoke import Spoke
from codexgw.errors import GatewayError
from codexgw.http.bridge import EarlyStart, failStarted, upstreamFailure
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Proxy
from codexgw.stream.adapters import Framing, StreamingAdapter, WholeAnswerAdapter

log = Logger()


class ReverseBridge:
    """
    Serves a client of a spoke's dialect (C{POST /v1/chat/completions} for
    Chat) from a Responses-only upstream.

    @param framing: how the spoke's stream looks on the wire.
    @param clock: with C{heartbeat}, a streamed request whose upstream has
        not answered within C{heartbeat} seconds is answered 200 at once and
        kept alive with the framing's keep-alive (Anthropic's C{ping}) until
        it does; an error after that ends the stream in the dialect's error
        event. Without them the client waits for the upstream's headers.
    """

    def __init__(
        self,
        *,
        spoke: Spoke,
        framing: Framing,
        exchanges: Proxy,
        dispatcher: Dispatcher,
        clock: IReactorTime | None = None,
        heartbeat: float = 0.0,
    ) -> None:
        self.spoke = spoke
        self.framing = framing
        self.proxy = exchanges
        self.dispatcher = dispatcher
        self.clock = clock
        self.heartbeat = heartbeat

    async def run(self, call: Call) -> None:
        ex = call.ex
        request = ex.request
        translated = self.spoke.requestToHub(call.body, upstream_model=call.upstreamModel)
        if translated.dropped_fields:
            log.info(
                "not sent to a Responses upstream (no equivalent): {fields} request_id={request_id}",
                fields=", ".join(translated.dropped_fields),
                request_id=ex.request_id,
            )
        translator = self.spoke.streamFromHub(translated)
        stream = translated.client_stream
        adapter: StreamingAdapter | WholeAnswerAdapter = (
            StreamingAdapter(translator, self.framing)
            if stream
            else WholeAnswerAdapter(translator, ex)
        )
        headers = self.proxy.upstreamHeaders(ex, request)
        headers[b"accept"] = [b"text/event-stream"]
        body = orjson.dumps(translated.body)
        onRetry = self.proxy.onRetry(ex)
        pending: Deferred[Any] = Deferred.fromCoroutine(
            self.dispatcher.firstAnswer(
                call,
                lambda u: u.send(
                    b"POST", hub.PATH, body, headers, onRetry, model=call.upstreamModel
                ),
            )
        )
        early = (
            EarlyStart(self.clock, ex, adapter, self.heartbeat)
            if isinstance(adapter, StreamingAdapter) and self.clock is not None and self.heartbeat
            else None
        )
        try:
            upstream, response = await pending
        except GatewayError as e:
            if early is None or not early.started:
                raise
            failStarted(ex, early.adapter, e)
            return
        finally:
            if early is not None:
                early.stop()
        self.proxy.answered(ex)
        if response.code >= 400:
            error = await upstreamFailure(upstream, response, hub.errorToGateway)
            if early is None or not early.started:
                raise error
            failStarted(ex, early.adapter, error)
            return
        if early is None or not early.started:
            ex.respond(200, b"text/event-stream" if stream else None)
        await self.proxy.translate(ex, upstream, response, adapter, stream)
