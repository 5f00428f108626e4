# -*- test-case-name: tests.http.test_reverse -*-
"""
The route's work for a Chat Completions client on a Responses-only
upstream: the client spoke is L{codexgw.dialects.chat} (its request to the
hub, the hub's stream back to Chat chunks), the upstream is the hub itself.

The mirror of L{codexgw.http.bridge}, with the same adapters and the same
narrow collaborators.
"""

from __future__ import annotations

import orjson
from twisted.logger import Logger

from codexgw.dialects import responses as hub
from codexgw.dialects.spoke import Spoke
from codexgw.http.bridge import upstreamFailure
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Proxy
from codexgw.stream.adapters import Framing, StreamingAdapter, WholeAnswerAdapter

log = Logger()


class ReverseBridge:
    """
    Serves a client of a spoke's dialect (C{POST /v1/chat/completions} for
    Chat) from a Responses-only upstream.

    @param framing: how the spoke's stream looks on the wire.
    """

    def __init__(
        self, *, spoke: Spoke, framing: Framing, exchanges: Proxy, dispatcher: Dispatcher
    ) -> None:
        self.spoke = spoke
        self.framing = framing
        self.proxy = exchanges
        self.dispatcher = dispatcher

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
        upstream, response = await self.dispatcher.firstAnswer(
            call,
            lambda u: u.send(b"POST", hub.PATH, body, headers, onRetry, model=call.upstreamModel),
        )
        self.proxy.answered(ex)
        if response.code >= 400:
            raise await upstreamFailure(upstream, response, hub.errorToGateway)
        ex.respond(200, b"text/event-stream" if stream else None)
        await self.proxy.translate(ex, upstream, response, adapter, stream)
