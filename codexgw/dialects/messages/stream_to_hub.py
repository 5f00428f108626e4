# -*- test-case-name: tests.dialects.messages.test_stream_to_hub -*-
"""
Anthropic Messages stream events in, Responses streaming events out.

L{MessagesToResponses} is fed one parsed Messages event at a time
(C{message_start}, C{content_block_*}, C{message_delta}, C{message_stop},
C{ping}, C{error}). The hub side, the event sequence every Responses client
relies on (sequence numbers, item and part lifecycles, abandoned items on
failure), is the Chat spoke's translator's, which this one extends: one
implementation of those rules, checked by the same oracle. What is
Anthropic's is only how its blocks open, grow and close:

  - C{text} blocks are the assistant message's text;
  - C{thinking} blocks are reasoning items (summary and/or raw text, as the
    client asked), and the whole block, signature included, goes into the
    item's C{encrypted_content} (L{codexgw.dialects.messages.thinking}) so
    a later turn can send it back unchanged, which a tool loop with
    thinking on requires; C{redacted_thinking} is kept there opaque;
  - C{tool_use} blocks are calls, their C{input_json_delta}s the argument
    deltas, their names mapped back to the client's tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from zope.interface import implementer

from codexgw.dialects.chat.stream_to_hub import INCOMPLETE_STREAM, ChatToResponses, _Call
from codexgw.dialects.chat.tools import FUNCTION
from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.dialects.messages.errors import anthropic_error_fields, hub_code
from codexgw.dialects.messages.request_from_hub import MessagesRequest
from codexgw.dialects.messages.thinking import seal_block

Event = dict[str, Any]

WHOLE = "message_whole"
"""The synthetic event L{message_as_event} makes of a whole message."""

# How a stop_reason ends the response: (status, incomplete reason).
_STOPS: dict[str, tuple[str, str | None]] = {
    "end_turn": ("completed", None),
    "tool_use": ("completed", None),
    "stop_sequence": ("completed", None),
    "pause_turn": ("completed", None),
    "max_tokens": ("incomplete", "max_output_tokens"),
    "model_context_window_exceeded": ("incomplete", "max_output_tokens"),
    "refusal": ("incomplete", "content_filter"),
}


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if 0 <= value < 2**53 else 0


def map_usage(usage: object) -> dict[str, Any]:
    """
    Messages usage as Responses usage. Anthropic's C{input_tokens} leaves
    out cache reads and writes, OpenAI's counts them: the hub's input is
    all three, and its C{cached_tokens} the reads.
    """
    u = usage if isinstance(usage, dict) else {}
    fresh = _int(u.get("input_tokens"))
    read = _int(u.get("cache_read_input_tokens"))
    written = _int(u.get("cache_creation_input_tokens"))
    output = _int(u.get("output_tokens"))
    details = u.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    input_tokens = fresh + read + written
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": thinking},
        "total_tokens": input_tokens + output,
    }


def message_as_event(message: object) -> dict[str, Any]:
    """
    A whole Messages answer (an upstream that answered C{stream: true} with
    plain JSON anyway) as one synthetic event, C{{"type": "message_whole",
    "message": …}}, which L{MessagesToResponses.feed} plays as the stream
    it stands for: one event suffices, and there is no second code path.

    @raise ValueError: C{message} is not a Messages message.
    """
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ValueError("a Messages answer is an object with a content array")
    return {"type": WHOLE, "message": message}


def whole_events(message: dict[str, Any]) -> list[Event]:
    """The stream events a whole message stands for, in order."""
    events: list[Event] = [
        {"type": "message_start", "message": {**message, "content": []}},
    ]
    for index, block in enumerate(message.get("content") or []):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        start = dict(block)
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            start["text"] = ""
            deltas.append({"type": "text_delta", "text": str(block.get("text") or "")})
        elif kind == "thinking":
            start["thinking"] = ""
            start["signature"] = ""
            deltas.append({"type": "thinking_delta", "thinking": str(block.get("thinking") or "")})
            deltas.append(
                {"type": "signature_delta", "signature": str(block.get("signature") or "")}
            )
        elif kind == "tool_use":
            start["input"] = {}
            deltas.append(
                {
                    "type": "input_json_delta",
                    "partial_json": orjson.dumps(block.get("input") or {}).decode("utf-8"),
                }
            )
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        for delta in deltas:
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": message.get("usage") or {},
        }
    )
    events.append({"type": "message_stop"})
    return events


class _Thinking:
    """One thinking or redacted_thinking block while it streams."""

    __slots__ = ("block",)

    def __init__(self, block: dict[str, Any]) -> None:
        self.block = block


@implementer(IStreamTranslator)
class MessagesToResponses(ChatToResponses):
    """
    Turns one Messages stream into one Responses stream.

    @param request: the translated request (L{MessagesRequest}); its tool
        map turns function names back into client tools, its echo fills the
        response object.
    @param response_id: the response id (C{resp_…} generated if L{None}).
    @param model: the model name the client asked for.
    @param reasoning_as: as L{ChatToResponses}: C{"text"}, C{"summary"} or
        C{"both"}; L{None} picks by what the request asked for.
    @param reasoning_key: unused (thinking blocks carry Anthropic's own
        signature), taken so the bridge calls every spoke alike.
    @param stored: whether the gateway keeps this response.
    """

    def __init__(
        self,
        request: MessagesRequest,
        *,
        response_id: str | None = None,
        created_at: int | None = None,
        model: str,
        reasoning_as: str | None = None,
        reasoning_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
        stored: bool | None = None,
    ) -> None:
        super().__init__(
            request,
            response_id=response_id,
            created_at=created_at,
            model=model,
            reasoning_as=reasoning_as,
            reasoning_key=reasoning_key,
            clock=clock,
            stored=stored,
        )
        # Thinking blocks must come back whole: never sealed as Chat text.
        # Their token goes into encrypted_content whether or not the client
        # included it: a stored turn replayed by previous_response_id needs
        # it as much as a client that replays its own history.
        self._seal = False
        self._blocks: dict[int, _Call | _Thinking | str] = {}
        self._message_usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stopped = False

    # -- public API ---------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """
        Translate one parsed Messages event (or a L{message_as_event}).

        An event of the wrong shape raises and the caller then calls
        L{fail}, which returns first what this event had already made.
        """
        if self.done:
            return []
        events = self._out
        if not self._started:
            events += self.start()
        kind = chunk.get("type")
        if kind == WHOLE:
            for event in whole_events(chunk["message"]):
                self._event(event, events)
                if self.done:
                    break
            if not self.done:
                events += self._finish()
        else:
            self._event(chunk, events)
        self._out = []
        return events

    def finish(self) -> list[Event]:
        """The upstream closed the stream (Messages streams have no C{[DONE]})."""
        if self.done:
            return []
        return self._take() + self._finish()

    @property
    def usage(self) -> Any:
        return self.response.get("usage")

    # -- events ---------------------------------------------------------------

    def _event(self, event: dict[str, Any], events: list[Event]) -> None:
        kind = event.get("type")
        if kind == "content_block_delta":
            self._delta(event["index"], event["delta"], events)
        elif kind == "content_block_start":
            self._block_start(event["index"], event["content_block"], events)
        elif kind == "content_block_stop":
            self._block_stop(event["index"], events)
        elif kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._message_usage.update(usage)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            usage = event.get("usage")
            if isinstance(usage, dict):
                # Cumulative counts: a later value replaces an earlier one.
                self._message_usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self._stopped = True
            events += self._finish()
        elif kind == "error":
            message, error_type = anthropic_error_fields(event)
            events += self._fail(
                hub_code(message, error_type), message or error_type or "upstream error"
            )
        # ping, and event types added later, carry nothing for the hub.

    def _block_start(self, index: int, block: dict[str, Any], events: list[Event]) -> None:
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = "text"
            if block.get("text"):
                self._on_text(block["text"], events)
        elif kind in ("thinking", "redacted_thinking"):
            self._close_open(events)
            self._blocks[index] = _Thinking(dict(block))
            if kind == "thinking" and block.get("thinking"):
                self._on_reasoning(block["thinking"], events)
        elif kind == "tool_use":
            self._close_open(events)
            call = _Call()
            call.upstream_id = block.get("id") or None
            call.flat = str(block.get("name") or "")
            given = block.get("input")
            if isinstance(given, dict) and given:
                call.parts.append(orjson.dumps(given).decode("utf-8"))
            self._blocks[index] = call
            self._calls[index] = call
            if call.flat:
                self._open_call(call, events)
        # Server tools' blocks (server_tool_use, web_search_tool_result, …)
        # ran on Anthropic's side: the client has nothing to do with them.

    def _delta(self, index: int, delta: dict[str, Any], events: list[Event]) -> None:
        kind = delta.get("type")
        block = self._blocks.get(index)
        if kind == "text_delta":
            text = delta.get("text")
            if text:
                self._on_text(text, events)
        elif kind == "thinking_delta" and isinstance(block, _Thinking):
            text = delta.get("thinking")
            if text:
                block.block["thinking"] = str(block.block.get("thinking") or "") + text
                self._on_reasoning(text, events)
        elif kind == "signature_delta" and isinstance(block, _Thinking):
            block.block["signature"] = str(delta.get("signature") or "")
        elif kind == "input_json_delta" and isinstance(block, _Call):
            partial = delta.get("partial_json")
            if partial:
                block.parts.append(partial)
                if block.item is not None and block.kind == FUNCTION:
                    events.append(
                        {
                            "type": "response.function_call_arguments.delta",
                            "sequence_number": self._next(),
                            "item_id": block.item["id"],
                            "output_index": block.output_index,
                            "delta": partial,
                        }
                    )

    def _block_stop(self, index: int, events: list[Event]) -> None:
        block = self._blocks.pop(index, None)
        if isinstance(block, _Thinking):
            self._close_thinking(block.block, events)
        elif isinstance(block, _Call):
            self._calls.pop(index, None)
            self._close_call(block, events, "completed")

    def _close_open(self, events: list[Event]) -> None:
        if self._message is not None:
            self._close_message(events, "completed")
        if self._reasoning is not None:
            self._close_reasoning(events, "completed")

    def _close_thinking(self, block: dict[str, Any], events: list[Event]) -> None:
        """One thinking block is one reasoning item, sealed whole."""
        if self._message is not None:
            self._close_message(events, "completed")
        if self._reasoning is None:
            # A block with no text (redacted, or thought in silence) is an
            # item still: its signature must come back.
            if block.get("type") == "redacted_thinking":
                index = self._add(
                    {"id": self._id("rs"), "type": "reasoning", "summary": []}, events
                )
                item = dict(events[-1]["item"])
                item["encrypted_content"] = seal_block(block)
                item["status"] = "completed"
                self._done(index, item, events)
                return
            self._on_reasoning_open(events)
        assert self._reasoning is not None
        self._reasoning["encrypted_content"] = seal_block(block)
        self._close_reasoning(events, "completed")

    def _on_reasoning_open(self, events: list[Event]) -> None:
        """Open a reasoning item with its parts, no text yet."""
        self._on_reasoning("", events)
        # _on_reasoning always writes a delta; an empty one says nothing.
        while events and events[-1]["type"] in (
            "response.reasoning_summary_text.delta",
            "response.reasoning_text.delta",
        ):
            events.pop()
            self._seq -= 1

    # -- the end --------------------------------------------------------------

    def _finish(self) -> list[Event]:
        events = self.start() if not self._started else []
        stop = self._stop_reason
        if stop is None and not self._stopped:
            # A Messages stream always ends in message_delta and
            # message_stop; a body that closed before them was cut.
            return events + self._fail(
                INCOMPLETE_STREAM, "upstream closed the stream before message_stop"
            )
        status, reason = _STOPS.get(stop or "end_turn", ("completed", None))
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if isinstance(block, _Thinking):
                self._close_thinking(block.block, events)
        self._blocks = {}
        self._close_all(events, status)
        if self._broken is not None:
            return events + self._terminal(
                "failed", error=("upstream_protocol_error", self._broken)
            )
        return events + self._terminal(status, reason=reason)

    def _abandon(self) -> None:
        super()._abandon()
        self._blocks = {}

    def _terminal(
        self,
        status: str,
        *,
        reason: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> list[Event]:
        events = super()._terminal(status, reason=reason, error=error)
        self.response["usage"] = map_usage(self._message_usage)
        return events


__all__ = ["MessagesToResponses", "map_usage", "message_as_event"]
