"""
Scripted answers of an Anthropic Messages upstream, as bytes, for the tests
that drive a gateway through L{tests.harness.Harness} and answer its
upstream requests themselves (L{tests.fakes.agent.SentRequest.respond}).

The shapes are Anthropic's wire: a stream is C{event: TYPE} + C{data: JSON}
events, C{message_start} (usage with C{input_tokens} and the cache counts),
a C{ping}, per block C{content_block_start} / C{_delta} / C{_stop},
C{message_delta} (C{stop_reason}, cumulative C{output_tokens}) and
C{message_stop}, no C{[DONE]}; a whole answer is one C{message} object; an
error is C{{"type": "error", "error": {"type", "message"}}}. For a strict
server that checks what it is sent, see L{tests.fakes.anthropic_upstream}.
"""

from __future__ import annotations

from typing import Any

import orjson

SSE = {b"content-type": b"text/event-stream"}
JSON = {b"content-type": b"application/json"}

USAGE = {
    "input_tokens": 11,
    "cache_creation_input_tokens": 2,
    "cache_read_input_tokens": 5,
    "output_tokens": 1,
}


def event(payload: dict[str, Any]) -> bytes:
    """One Messages SSE event."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _message(model: str, content: list[dict[str, Any]], stop: str | None, usage: Any) -> Any:
    return {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def textEvents(words: list[str], model: str = "claude-up", output: int = 7) -> list[bytes]:
    """A streamed text answer saying C{words}."""
    out = [
        event({"type": "message_start", "message": _message(model, [], None, USAGE)}),
        event({"type": "ping"}),
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
    ]
    for word in words:
        out.append(
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word},
                }
            )
        )
    out += [
        event({"type": "content_block_stop", "index": 0}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output},
            }
        ),
        event({"type": "message_stop"}),
    ]
    return out


def toolEvents(
    name: str, arguments: dict[str, Any], id: str = "toolu_01A", model: str = "claude-up"
) -> list[bytes]:
    """A streamed answer that calls tool C{name}, its input in two pieces."""
    raw = orjson.dumps(arguments).decode()
    half = len(raw) // 2
    return [
        event({"type": "message_start", "message": _message(model, [], None, USAGE)}),
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
            }
        ),
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": raw[:half]},
            }
        ),
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": raw[half:]},
            }
        ),
        event({"type": "content_block_stop", "index": 0}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            }
        ),
        event({"type": "message_stop"}),
    ]


def stream(events: list[bytes]) -> bytes:
    return b"".join(events)


def wholeText(text: str, model: str = "claude-up") -> bytes:
    """A whole (non-streamed) text answer."""
    return orjson.dumps(
        _message(model, [{"type": "text", "text": text}], "end_turn", {**USAGE, "output_tokens": 3})
    )


def error(kind: str, message: str) -> bytes:
    """An error answer in Anthropic's shape."""
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    )


def request(text: str = "hi", **extra: Any) -> dict[str, Any]:
    """A Messages request, as Claude Code and the SDKs send one."""
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(extra)
    return body


__all__ = [
    "JSON",
    "SSE",
    "USAGE",
    "error",
    "event",
    "request",
    "stream",
    "textEvents",
    "toolEvents",
    "wholeText",
]
