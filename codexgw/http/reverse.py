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

from codexgw.dialects.chat.request_to_hub import chat_to_responses
from codexgw.dialects.chat.stream_from_hub import ResponsesToChat
from codexgw.http.bridge import upstreamFailure
from codexgw.http.dispatch import Call, Dispatcher
from codexgw.http.exchange import Proxy
from codexgw.stream.adapters import CHAT_SSE, StreamingAdapter, WholeAnswerAdapter

log = Logger()


class ReverseBridge:
    """Serves C{POST /v1/chat/completions} from a Responses-only upstream."""

    def __init__(self, *, exchanges: Proxy, dispatcher: Dispatcher) -> None:
        self.proxy = exchanges
        self.dispatcher = dispatcher

    async def run(self, call: Call) -> None:
        ex = call.ex
        request = ex.request
        translated = chat_to_responses(call.body, upstream_model=call.upstreamModel)
        if translated.dropped_fields:
            log.info(
                "not sent to a Responses upstream (no equivalent): {fields} request_id={request_id}",
                fields=", ".join(translated.dropped_fields),
                request_id=ex.request_id,
            )
        translator = ResponsesToChat(translated)
        stream = translated.client_stream
        adapter: StreamingAdapter | WholeAnswerAdapter = (
            StreamingAdapter(translator, CHAT_SSE) if stream else WholeAnswerAdapter(translator, ex)
        )
        headers = self.proxy.upstreamHeaders(ex, request)
        headers[b"accept"] = [b"text/event-stream"]
        body = orjson.dumps(translated.body)
        onRetry = self.proxy.onRetry(ex)
        upstream, response = await self.dispatcher.firstAnswer(
            call,
            lambda u: u.send(
                b"POST", "/responses", body, headers, onRetry, model=call.upstreamModel
            ),
        )
        self.proxy.answered(ex)
        if response.code >= 400:
            raise await upstreamFailure(upstream, response)
        ex.respond(200, b"text/event-stream" if stream else None)
        await self.proxy.translate(ex, upstream, response, adapter, stream)
