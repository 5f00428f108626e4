"""
Shared test inputs: the real Codex CLI requests (copied into
C{tests/fixtures/codex/}), the recorded-shape upstream streams, and a driver
that runs stream bytes through the real SSE decoder and the translator.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import orjson

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import ChatRequest, responses_to_chat
from codexgw.dialects.chat.stream_to_hub import ChatToResponses
from codexgw.stream.sse import SSEDecoder

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
STREAMS = os.path.join(FIXTURES, "chat_streams")
RESPONSE_ID = "resp_fixture"
CREATED_AT = 1700000000


def codex_request(name: str) -> dict[str, Any]:
    """The body of C{codex-0.169-request-NAME.json}, a real Codex CLI request."""
    with open(os.path.join(FIXTURES, "codex", f"codex-0.169-request-{name}.json")) as f:
        return json.load(f)["body"]  # type: ignore[no-any-return]


def codex_body() -> dict[str, Any]:
    """A Codex request whose tools hold functions, a namespace and a custom tool."""
    body = codex_request("after-tool-call")
    custom = [t for t in codex_request("custom-tool-followup")["tools"] if t["type"] == "custom"]
    body["tools"] = body["tools"] + custom
    return copy.deepcopy(body)


def stream_bytes(name: str) -> bytes:
    with open(os.path.join(STREAMS, name + ".sse"), "rb") as f:
        return f.read()


def translator(request: ChatRequest | None = None, **kw: Any) -> ChatToResponses:
    if request is None:
        request = responses_to_chat(codex_body(), kw.pop("dialect", ChatDialect()))
    kw.setdefault("model", "m1")
    return ChatToResponses(
        request, response_id=RESPONSE_ID, created_at=CREATED_AT, clock=lambda: CREATED_AT + 1, **kw
    )


def run_pieces(pieces: list[bytes], t: ChatToResponses | None = None) -> list[dict[str, Any]]:
    """Feed byte pieces through SSEDecoder and the translator, then close."""
    t = t or translator()
    decoder = SSEDecoder()
    events = t.start()

    def handle(sse: Any) -> None:
        if sse.data == "[DONE]":
            events.extend(t.finish())
        else:
            events.extend(t.feed(orjson.loads(sse.data)))

    for piece in pieces:
        for sse in decoder.feed(piece):
            handle(sse)
    for sse in decoder.close():
        handle(sse)
    events.extend(t.finish())  # the upstream closed
    return events


def run_fixture(name: str, t: ChatToResponses | None = None) -> list[dict[str, Any]]:
    return run_pieces([stream_bytes(name)], t)
