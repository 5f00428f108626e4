"""
Shared inputs of the Messages spoke's tests: the recorded-shape Anthropic
streams, a driver that runs their bytes through the real SSE decoder and
the translator, and an oracle for the Messages streams this spoke emits,
built on the anthropic SDK's own event models and stream accumulator.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.messages.request_from_hub import MessagesRequest, responses_to_messages
from codexgw.dialects.messages.stream_to_hub import MessagesToResponses
from codexgw.stream.sse import SSEDecoder
from tests.dialects.helpers import CREATED_AT, FIXTURES, RESPONSE_ID, codex_body

STREAMS = os.path.join(FIXTURES, "messages_streams")
CLAUDE_CODE = os.path.join(FIXTURES, "messages_streams", "claude-code-2.1-request.json")

_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
_MESSAGE: TypeAdapter[Any] = TypeAdapter(Message)


def stream_bytes(name: str) -> bytes:
    with open(os.path.join(STREAMS, name + ".sse"), "rb") as f:
        return f.read()


def claude_code_body() -> dict[str, Any]:
    """The body of a real Claude Code 2.1 request (second of a tool turn)."""
    with open(CLAUDE_CODE) as f:
        return copy.deepcopy(json.load(f)["body"])  # type: ignore[no-any-return]


def request(body: dict[str, Any] | None = None, **kw: Any) -> MessagesRequest:
    return responses_to_messages(body or codex_body(), kw.pop("dialect", ChatDialect()), **kw)


def translator(req: MessagesRequest | None = None, **kw: Any) -> MessagesToResponses:
    kw.setdefault("model", "m1")
    return MessagesToResponses(
        req or request(),
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        clock=lambda: CREATED_AT + 1,
        **kw,
    )


def run_pieces(pieces: list[bytes], t: MessagesToResponses | None = None) -> list[dict[str, Any]]:
    """Feed byte pieces through SSEDecoder and the translator, then close."""
    t = t or translator()
    decoder = SSEDecoder()
    events = t.start()
    for piece in pieces:
        for sse in decoder.feed(piece):
            events.extend(t.feed(orjson.loads(sse.data)))
    for sse in decoder.close():
        events.extend(t.feed(orjson.loads(sse.data)))
    events.extend(t.finish())  # the upstream closed
    return events


def run_fixture(name: str, t: MessagesToResponses | None = None) -> list[dict[str, Any]]:
    return run_pieces([stream_bytes(name)], t)


def feed_all(t: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = t.start()
    for event in events:
        out += t.feed(event)
    out += t.finish()
    return out  # type: ignore[no-any-return]


class MessagesOracleError(AssertionError):
    """A Messages stream this spoke emitted breaks the protocol."""


def check_messages_stream(events: list[dict[str, Any]]) -> Any:
    """
    Validate a Messages stream as the anthropic SDK reads it: every event
    parses as the SDK's own models; C{message_start} first; blocks one at
    a time with consecutive indices, each started, then its deltas (of its
    kind), then stopped; C{message_delta} and C{message_stop} last, or an
    C{error} event last with nothing after it. Returns the SDK's
    accumulated message (or L{None} for a stream that ended in an error).
    """
    if not events or events[0]["type"] != "message_start":
        raise MessagesOracleError("a Messages stream opens with message_start")
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    open_index: int | None = None
    next_index = 0
    kinds: dict[int, str] = {}
    allowed = {
        "text": {"text_delta", "citations_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
        "redacted_thinking": set(),
    }
    for n, event in enumerate(events):
        kind = event["type"]
        if kind == "error":
            if n != len(events) - 1:
                raise MessagesOracleError("nothing follows an error event")
            error = event.get("error") or {}
            if not isinstance(error.get("type"), str) or not isinstance(error.get("message"), str):
                raise MessagesOracleError(f"an error event needs type and message: {event}")
            return None
        if kind == "ping":
            continue
        parsed = _EVENT.validate_python(event)
        if kind == "content_block_start":
            if open_index is not None:
                raise MessagesOracleError("a block started while another is open")
            if event["index"] != next_index:
                raise MessagesOracleError(f"block index {event['index']}, expected {next_index}")
            open_index = next_index
            kinds[open_index] = event["content_block"]["type"]
            next_index += 1
        elif kind == "content_block_delta":
            if event["index"] != open_index:
                raise MessagesOracleError(f"a delta for block {event['index']}, which is not open")
            if event["delta"]["type"] not in allowed[kinds[open_index]]:
                raise MessagesOracleError(
                    f"{event['delta']['type']} in a {kinds[open_index]} block"
                )
        elif kind == "content_block_stop":
            if event["index"] != open_index:
                raise MessagesOracleError(f"stop for block {event['index']}, which is not open")
            open_index = None
        elif kind == "message_delta":
            if open_index is not None:
                raise MessagesOracleError("message_delta with a block open")
        elif kind == "message_stop":
            if n != len(events) - 1 or events[n - 1]["type"] != "message_delta":
                raise MessagesOracleError("message_stop comes last, after message_delta")
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=bufs)
    if events[-1]["type"] != "message_stop":
        raise MessagesOracleError("a stream ends in message_stop or an error event")
    return snapshot


def check_message(message: dict[str, Any]) -> Any:
    """Validate a whole Messages message with the SDK's model."""
    return _MESSAGE.validate_python(message)
