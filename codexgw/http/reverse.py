# -*- test-case-name: tests.http.test_reverse -*-
"""
The edge of the Chat → Responses bridge: a Chat Completions client served
by an upstream that speaks only the Responses API.

Mirror of L{codexgw.http.bridge}: the pure translators live in
L{codexgw.dialects.chat.request_to_hub} and L{codexgw.dialects.chat.stream_from_hub};
here each upstream event is parsed once and each chunk serialised once.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.logger import Logger
from twisted.web.server import Request

from codexgw.http.bridge import FAILURE_CODES, Adapter, parseEvent, upstreamFailure
from codexgw.stream.relay import COMPLETE
from codexgw.stream.sse import DONE, HEARTBEAT, SSEEvent

log = Logger()


def _chunks(chunks: list[dict[str, Any]]) -> bytes:
    dumps = orjson.dumps
    return b"".join([b"data: " + dumps(c) + b"\n\n" for c in chunks])


class _Adapter(Adapter):
    @property
    def usage(self) -> Any:
        return self.t.completion().get("usage")


class ChunkAdapter(_Adapter):
    """Responses events in, C{chat.completion.chunk} SSE out."""

    def __init__(self, translator: Any) -> None:
        self.t = translator

    def event(self, event: SSEEvent) -> bytes:
        parsed = parseEvent(event)
        if parsed is None:
            return _chunks(self.t.finish()) + DONE
        out = _chunks(self.t.feed(parsed))
        return out + DONE if self.t.done else out

    def keepalive(self) -> bytes:
        return HEARTBEAT  # between whole events, so a comment line is safe

    def end(self, outcome: str, message: str) -> bytes:
        if self.t.done:
            return b""
        if outcome == COMPLETE:
            return _chunks(self.t.finish()) + DONE
        return _chunks(self.t.fail(FAILURE_CODES.get(outcome, "upstream_error"), message))


class CompletionAdapter(_Adapter):
    """For a client that did not stream: one C{chat.completion} at the end."""

    def __init__(self, translator: Any, request: Request) -> None:
        self.t = translator
        self.request = request

    def event(self, event: SSEEvent) -> bytes:
        parsed = parseEvent(event)
        if parsed is None:
            self.t.finish()
        else:
            self.t.feed(parsed)
        return b""

    def keepalive(self) -> bytes:
        return b""

    def end(self, outcome: str, message: str) -> bytes:
        request = self.request
        request.setHeader(b"content-type", b"application/json")
        failed = outcome != COMPLETE
        if not self.t.done:
            if failed:
                self.t.fail(FAILURE_CODES.get(outcome, "upstream_error"), message)
            else:
                self.t.finish()
        error = getattr(self.t, "error", None)
        if failed or error:
            request.setResponseCode(502)
            return orjson.dumps(
                {
                    "error": {
                        "message": (error or {}).get("message", message),
                        "type": "upstream_error",
                        "param": None,
                        "code": (error or {}).get("code", FAILURE_CODES.get(outcome)),
                    }
                }
            )
        return orjson.dumps(self.t.completion())


class ReverseBridge:
    """Serves C{POST /v1/chat/completions} from a Responses-only upstream."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.proxy = gateway.proxy

    async def run(self, call: Any) -> None:
        from codexgw.dialects.chat.request_to_hub import chat_to_responses
        from codexgw.dialects.chat.stream_from_hub import ResponsesToChat

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
        adapter: Any = (
            ChunkAdapter(translator) if stream else CompletionAdapter(translator, request)
        )
        headers = self.proxy.upstreamHeaders(ex, request)
        headers[b"accept"] = [b"text/event-stream"]
        body = orjson.dumps(translated.body)
        onRetry = self.proxy.onRetry(ex)
        upstream, response = await self.gateway.firstAnswer(
            call,
            lambda u: u.send(
                b"POST", "/responses", body, headers, onRetry, model=call.upstreamModel
            ),
        )
        self.proxy.answered(ex)
        if response.code >= 400:
            raise await upstreamFailure(upstream, response)
        ex.status = 200
        request.setResponseCode(200)
        if stream:
            request.setHeader(b"content-type", b"text/event-stream")
        await self.proxy.translate(ex, upstream, response, adapter, stream)
