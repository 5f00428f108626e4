# -*- test-case-name: tests.dialects.messages.test_stream_from_hub -*-
"""
Responses stream events in, Anthropic Messages stream events out (and,
aggregated, one whole Messages message), for Messages clients of a
Responses upstream.

A state machine fed one parsed hub event at a time. It emits what
Anthropic's own streams carry and the anthropic SDKs' accumulators expect:
C{message_start} first, then each content block as C{content_block_start},
deltas and C{content_block_stop} under one C{index}, one block at a time,
then C{message_delta} (stop reason, usage) and C{message_stop}; a failure
is an C{error} event, and nothing follows it.

The hub's usage arrives only at the end, so C{message_start} carries zeros
and C{message_delta} the real counts (the SDKs take input counts from
there as well). A reasoning item becomes a thinking block whose one
C{signature_delta} packs the item's id and C{encrypted_content}: the client
sends the block back unchanged on the next turn, and
L{codexgw.dialects.messages.request_to_hub} restores the item from it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson
from zope.interface import implementer

from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.dialects.messages.errors import stream_error_event
from codexgw.dialects.messages.request_to_hub import HubRequest
from codexgw.dialects.messages.thinking import pack_reasoning

Event = dict[str, Any]

INCOMPLETE = "upstream_stream_incomplete"

_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,200}$")
_SUMMARY = "response.reasoning_summary_text.delta"
_RAW = "response.reasoning_text.delta"


def tool_use_id(call_id: object) -> str:
    """
    A C{tool_use} id for a hub C{call_id}: the call id itself when Anthropic
    would take it (so the client's C{tool_result} names the upstream's call
    as it is), else a stable C{toolu_} id derived from it.
    """
    if isinstance(call_id, str) and _TOOL_ID.match(call_id):
        return call_id
    digest = hashlib.sha256(str(call_id).encode("utf-8")).hexdigest()[:24]
    return f"toolu_{digest}"


def messages_usage(usage: object) -> dict[str, int]:
    """
    Responses usage in Anthropic's names: Anthropic's C{input_tokens}
    leaves out the cache reads and writes that OpenAI's includes.
    """
    u = usage if isinstance(usage, dict) else {}
    details = u.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}

    def count(value: object) -> int:
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    read = count(details.get("cached_tokens"))
    written = count(details.get("cache_write_tokens"))
    return {
        "input_tokens": max(0, count(u.get("input_tokens")) - read - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": count(u.get("output_tokens")),
    }


class _Block:
    """The content block being streamed: its index, kind and what it holds so far."""

    __slots__ = ("index", "block", "item_id", "parts", "streamed", "source")

    def __init__(self, index: int, block: dict[str, Any], item_id: str | None) -> None:
        self.index = index
        self.block = block
        self.item_id = item_id
        self.parts: list[str] = []
        self.streamed = False
        self.source: str | None = None  # which reasoning deltas this block takes


@implementer(IStreamTranslator)
class ResponsesToMessages:
    """
    @param request: what L{messages_to_responses} made of the client's
        request (its model, whether thinking is on).
    @param message_id: the message id (C{msg_…} generated if L{None}).
    @ivar done: a terminal event (or L{finish}/L{fail}) was seen.
    """

    def __init__(self, request: HubRequest, *, message_id: str | None = None) -> None:
        self.request = request
        self.done = False
        self.error: dict[str, Any] | None = None
        self._id = message_id or f"msg_{uuid.uuid4().hex[:24]}"
        self._started = False
        self._content: list[dict[str, Any]] = []
        self._open: _Block | None = None
        self._stop_reason: str | None = None
        self._usage = messages_usage(None)
        self._tools = False
        self._texted: set[str] = set()  # message items whose text streamed

    # -- public API ---------------------------------------------------------

    def start(self) -> list[Event]:
        """C{message_start}; once."""
        if self._started:
            return []
        self._started = True
        message = {**self._message(), "content": [], "stop_reason": None}
        message["usage"] = {**self._usage}
        return [{"type": "message_start", "message": message}]

    def keepalive(self) -> list[Event]:
        """A C{ping}, as Anthropic sends while a model thinks."""
        if self.done:
            return []
        return self.start() + [{"type": "ping"}]

    def feed(self, event: dict[str, Any]) -> list[Event]:
        if self.done:
            return []
        out = self.start()
        kind = event.get("type")
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            self._texted.add(str(event.get("item_id")))
            self._text(str(event.get("delta") or ""), out)
        elif kind in (_SUMMARY, _RAW):
            self._thinking_delta(event, kind, out)
        elif kind == "response.reasoning_summary_part.added":
            block = self._open
            if block is not None and block.item_id == event.get("item_id") and block.parts:
                if event.get("summary_index", 0) and block.source == _SUMMARY:
                    self._thinking_text("\n\n", block, out)
        elif kind == "response.function_call_arguments.delta":
            block = self._open
            if block is not None and block.item_id == event.get("item_id"):
                self._json(str(event.get("delta") or ""), block, out)
        elif kind == "response.output_item.added":
            self._item_added(event.get("item") or {}, out)
        elif kind == "response.output_item.done":
            self._item_done(event.get("item") or {}, out)
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            self._usage = messages_usage(response.get("usage"))
            if kind == "response.incomplete":
                reason = (response.get("incomplete_details") or {}).get("reason")
                self._stop_reason = "refusal" if reason == "content_filter" else "max_tokens"
            out += self._end()
        elif kind == "response.failed":
            response = event.get("response") or {}
            error = response.get("error") or {}
            if isinstance(response.get("usage"), dict):
                self._usage = messages_usage(response["usage"])
            out += self.fail(
                str(error.get("code") or "upstream_error"),
                str(error.get("message") or "the upstream failed"),
            )
        elif kind == "error":
            out += self.fail(
                str(event.get("code") or "upstream_error"),
                str(event.get("message") or "the upstream failed"),
            )
        return out

    def finish(self) -> list[Event]:
        """
        The upstream's body ended. Before the hub's terminal event that is
        a cut stream, not an answer: ended as a failure, so a half tool
        call never reaches the client as one to run.
        """
        if self.done:
            return []
        return self.fail(INCOMPLETE, "upstream closed the stream before response.completed")

    def _end(self) -> list[Event]:
        """The hub's answer is complete: close the open block, then the message."""
        out = self.start()
        self._close(out)
        self.done = True
        if self._stop_reason is None:
            self._stop_reason = "tool_use" if self._tools else "end_turn"
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": dict(self._usage),
            }
        )
        out.append({"type": "message_stop"})
        return out

    def fail(self, code: str, message: str) -> list[Event]:
        """
        An C{error} event, as Anthropic ends a stream that broke; the open
        block is abandoned, not closed as if whole.
        """
        if self.done:
            return []
        out = self.start()
        self.done = True
        self._open = None
        self.error = {"code": code, "message": message}
        out.append(stream_error_event(code, message))
        return out

    @property
    def failure(self) -> dict[str, Any] | None:
        return self.error

    @property
    def usage(self) -> dict[str, Any]:
        return dict(self._usage)

    def answer(self) -> dict[str, Any]:
        """Everything so far as one Messages message (what a client that did not stream gets)."""
        message = self._message()
        message["content"] = [dict(b) for b in self._content]
        return message

    # -- blocks ---------------------------------------------------------------

    def _message(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": [],
            "stop_reason": self._stop_reason if self.done else None,
            "stop_sequence": None,
            "usage": dict(self._usage),
        }

    def _begin(self, block: dict[str, Any], item_id: str | None, out: list[Event]) -> _Block:
        self._close(out)
        opened = _Block(len(self._content), block, item_id)
        self._content.append(block)
        self._open = opened
        start = dict(block)
        if block["type"] == "tool_use":
            start["input"] = {}
        out.append({"type": "content_block_start", "index": opened.index, "content_block": start})
        return opened

    def _close(self, out: list[Event]) -> None:
        block = self._open
        if block is None:
            return
        self._open = None
        kind = block.block["type"]
        if kind == "tool_use":
            raw = "".join(block.parts)
            try:
                value = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                value = {}
            block.block["input"] = value if isinstance(value, dict) else {"input": value}
        out.append({"type": "content_block_stop", "index": block.index})

    def _delta(self, block: _Block, delta: dict[str, Any], out: list[Event]) -> None:
        out.append({"type": "content_block_delta", "index": block.index, "delta": delta})

    def _text(self, text: str, out: list[Event]) -> None:
        if not text:
            return
        block = self._open
        if block is None or block.block["type"] != "text":
            block = self._begin({"type": "text", "text": ""}, None, out)
        block.block["text"] += text
        self._delta(block, {"type": "text_delta", "text": text}, out)

    def _thinking_text(self, text: str, block: _Block, out: list[Event]) -> None:
        block.parts.append(text)
        block.block["thinking"] += text
        self._delta(block, {"type": "thinking_delta", "thinking": text}, out)

    def _thinking_delta(self, event: dict[str, Any], kind: str, out: list[Event]) -> None:
        if not self.request.thinking:
            return
        block = self._open
        item_id = event.get("item_id")
        if block is None or block.item_id != item_id or block.block["type"] != "thinking":
            block = self._begin({"type": "thinking", "thinking": "", "signature": ""}, None, out)
            block.item_id = item_id if isinstance(item_id, str) else None
        # An upstream may send one text both as summary and as raw text:
        # the block takes whichever kind came first.
        if block.source is None:
            block.source = kind
        if block.source != kind:
            return
        text = str(event.get("delta") or "")
        if text:
            block.streamed = True
            self._thinking_text(text, block, out)

    def _json(self, partial: str, block: _Block, out: list[Event]) -> None:
        if not partial:
            return
        block.parts.append(partial)
        block.streamed = True
        self._delta(block, {"type": "input_json_delta", "partial_json": partial}, out)

    def _item_added(self, item: dict[str, Any], out: list[Event]) -> None:
        kind = item.get("type")
        item_id = item.get("id") if isinstance(item.get("id"), str) else None
        if kind in ("function_call", "custom_tool_call"):
            self._tools = True
            self._begin(
                {
                    "type": "tool_use",
                    "id": tool_use_id(item.get("call_id") or item_id),
                    "name": str(item.get("name") or ""),
                    "input": {},
                },
                item_id,
                out,
            )
        elif kind == "message":
            self._close(out)

    def _item_done(self, item: dict[str, Any], out: list[Event]) -> None:
        kind = item.get("type")
        block = self._open
        mine = block is not None and block.item_id is not None and block.item_id == item.get("id")
        if kind == "function_call" and mine and block is not None:
            if not block.streamed and item.get("arguments"):
                self._json(str(item["arguments"]), block, out)
            self._close(out)
        elif kind == "custom_tool_call" and mine and block is not None:
            # A freeform call's raw input, as the one-string object the
            # Messages client's tool definition (a function) takes.
            text = item.get("input")
            self._json(
                orjson.dumps({"input": text if isinstance(text, str) else ""}).decode(), block, out
            )
            self._close(out)
        elif kind == "reasoning" and self.request.thinking:
            if not mine:
                text = _reasoning_text(item)
                if not text and not item.get("encrypted_content"):
                    return  # nothing to show and nothing to send back
                block = self._begin(
                    {"type": "thinking", "thinking": "", "signature": ""}, None, out
                )
                if text:
                    self._thinking_text(text, block, out)
            assert block is not None
            signature = pack_reasoning(item.get("id"), item.get("encrypted_content"))
            block.block["signature"] = signature
            self._delta(block, {"type": "signature_delta", "signature": signature}, out)
            self._close(out)
        elif kind == "message":
            if str(item.get("id")) not in self._texted:
                # An upstream that sent the message whole, without deltas.
                for part in item.get("content") or []:
                    if isinstance(part, dict):
                        self._text(str(part.get("text") or part.get("refusal") or ""), out)
            self._close(out)


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its summary, else its raw text."""
    for field in ("summary", "content"):
        parts = item.get(field)
        if isinstance(parts, list):
            texts = [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
            if any(texts):
                return "\n\n".join(t for t in texts if t)
    return ""


__all__ = ["ResponsesToMessages", "messages_usage", "tool_use_id"]
