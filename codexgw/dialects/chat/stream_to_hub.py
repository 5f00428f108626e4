# -*- test-case-name: tests.dialects.chat.test_stream_to_hub -*-
"""
Chat Completions stream chunks in, Responses streaming events out.

L{ChatToResponses} is a state machine fed one parsed C{chat.completion.chunk}
at a time. It emits the event sequence the Codex CLI and the openai SDK
expect (created, in_progress, per-item added/delta/done, one terminal event)
with consistent C{sequence_number}, C{output_index}, C{content_index} and
item ids, and keeps the C{response} object those events describe.

It does no I/O: the relay parses upstream SSE lines, calls L{feed}, and
serialises whatever comes back. Everything here runs once per upstream
chunk, so events are built as plain dicts, nothing is copied per chunk, and
work is only done for the fields a chunk actually carries.

Reasoning survives a round trip with no server state: its text goes out in
the reasoning item's C{encrypted_content} as a sealed token
(L{seal_reasoning}); the client hands that back on the next turn and
L{codexgw.dialects.chat.request_from_hub} can send it upstream again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from zope.interface import implementer

from codexgw.dialects.chat.errors import error_code, error_fields
from codexgw.dialects.chat.tools import (
    CUSTOM,
    FUNCTION,
    TOOL_SEARCH,
    custom_input,
    local_shell_action,
    tool_search_arguments,
)
from codexgw.dialects.interfaces import IStreamTranslator

if TYPE_CHECKING:
    from codexgw.dialects.chat.request_from_hub import ChatRequest

Event = dict[str, Any]

REASONING_TOKEN_PREFIX = "cgw1:"

# Why a stream that ended without any finish_reason failed.
INCOMPLETE_STREAM = "upstream_stream_incomplete"
PROTOCOL_ERROR = "upstream_protocol_error"

# -- sealed reasoning --------------------------------------------------------


def seal_reasoning(text: str, key: bytes | None = None) -> str:
    """
    The C{encrypted_content} carrying C{text} back to us on the next turn:
    C{cgw1:} + base64url(JSON), plus C{.} + an HMAC-SHA256 when C{key} is
    given (so a client cannot inject reasoning the model never produced).
    """
    payload = base64.urlsafe_b64encode(orjson.dumps({"t": text})).rstrip(b"=")
    if key is None:
        return REASONING_TOKEN_PREFIX + payload.decode("ascii")
    sig = hmac.new(key, payload, hashlib.sha256).hexdigest()[:32]
    return f"{REASONING_TOKEN_PREFIX}{payload.decode('ascii')}.{sig}"


def unseal_reasoning(token: object, key: bytes | None = None) -> str | None:
    """
    The reasoning text in one of our tokens, or L{None} for anything else
    (OpenAI's own encrypted blobs, tampered or malformed tokens).
    """
    if not isinstance(token, str) or not token.startswith(REASONING_TOKEN_PREFIX):
        return None
    body = token[len(REASONING_TOKEN_PREFIX) :]
    payload, _, sig = body.partition(".")
    if key is not None:
        expected = hmac.new(key, payload.encode("ascii", "replace"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected[:32], sig):
            return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    text = value.get("t") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


# -- usage and errors --------------------------------------------------------


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    # Counts only: anything a JSON encoder could not write back is no count.
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else 0
    if isinstance(value, float):
        return int(value) if 0 <= value < 2**53 else 0
    return 0


def map_usage(usage: object) -> dict[str, Any]:
    """
    Chat usage as Responses usage: integers only, both detail objects always
    present (the Codex CLI and the Open Responses schema need them), zeros
    where the upstream reported nothing.
    """
    u = usage if isinstance(usage, dict) else {}
    input_tokens = _int(u.get("prompt_tokens"))
    output_tokens = _int(u.get("completion_tokens"))
    total = _int(u.get("total_tokens")) or input_tokens + output_tokens
    prompt_details = u.get("prompt_tokens_details")
    cached = _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0
    if not cached:
        cached = _int(u.get("prompt_cache_hit_tokens"))  # DeepSeek
    completion_details = u.get("completion_tokens_details")
    reasoning = (
        _int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0
    )
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    }


def completion_as_chunk(completion: object) -> dict[str, Any]:
    """
    A whole C{chat.completion} as one stream chunk, for upstreams that answer
    C{stream: true} with plain JSON anyway: the translator then needs no
    second code path.

    @raise ValueError: C{completion} is not a JSON object.
    """
    if not isinstance(completion, dict):
        raise ValueError("a chat completion is a JSON object")
    choices = []
    for choice in completion.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("message") or {})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [
                dict(call, index=i) for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        choices.append(
            {
                "index": choice.get("index", 0),
                "delta": delta,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    chunk: dict[str, Any] = {"choices": choices}
    if completion.get("usage") is not None:
        chunk["usage"] = completion["usage"]
    return chunk


# -- the state machine -------------------------------------------------------


class _Call:
    """One upstream tool call (by its C{index}) while it streams."""

    __slots__ = ("call_id", "flat", "parts", "item", "output_index", "kind", "upstream_id")

    def __init__(self) -> None:
        self.call_id = ""
        self.upstream_id: str | None = None
        self.flat = ""
        self.parts: list[str] = []
        self.item: dict[str, Any] | None = None
        self.output_index = -1
        self.kind = FUNCTION


@implementer(IStreamTranslator)
class ChatToResponses:
    """
    Turns one Chat Completions stream into one Responses stream.

    @param request: the translated request; its tool map turns flat function
        names back into client tools, and its echo fills the response object.
    @param response_id: the response id (C{resp_…} generated if L{None}).
    @param created_at: Unix seconds (now if L{None}).
    @param model: the model name the client asked for.
    @param reasoning_as: C{"text"} streams reasoning as
        C{response.reasoning_text.*} with C{content}; C{"summary"} as
        C{response.reasoning_summary_*} with C{summary} (Codex shows those
        by default; raw reasoning text only when asked to); C{"both"} as
        both, each delta twice (summary first). L{None}, the default, is
        C{"both"} when the request asked for a summary
        (L{ChatRequest.reasoning_summary}), else C{"text"}.
    @param reasoning_key: HMAC key for sealed reasoning tokens, or L{None}.
    @param clock: returns Unix seconds, for C{completed_at}.
    @param stored: whether the gateway keeps this response, which is what
        its C{store} field says; L{None} echoes the request's C{store}.
    """

    def __init__(
        self,
        request: ChatRequest,
        *,
        response_id: str | None = None,
        created_at: int | None = None,
        model: str,
        reasoning_as: str | None = None,
        reasoning_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
        stored: bool | None = None,
    ) -> None:
        self._request = request
        self._tool_map = request.tool_map
        self._reasoning_fields = request.dialect.reasoning_fields
        if reasoning_as is None:
            reasoning_as = "both" if request.reasoning_summary else "text"
        self._summary = reasoning_as in ("summary", "both")
        self._raw = reasoning_as != "summary"
        self._seal = request.include_reasoning_token
        self._key = reasoning_key
        self._clock = clock
        rid = response_id or f"resp_{uuid.uuid4().hex}"
        self._base = rid[5:] if rid.startswith("resp_") else rid
        self._counter = 0
        self.response: dict[str, Any] = {
            "id": rid,
            "object": "response",
            "created_at": int(clock()) if created_at is None else created_at,
            "status": "in_progress",
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "model": model,
            "output": [],
            "usage": None,
            **request.echo,
        }
        if stored is not None:
            self.response["store"] = stored
        self.done = False
        self._started = False
        self._seq = 0
        self._items: list[dict[str, Any] | None] = []  # by output_index, set when done
        self._reasoning: dict[str, Any] | None = None
        self._reasoning_parts: list[str] = []
        self._reasoning_index = -1
        self._message: dict[str, Any] | None = None
        self._text_parts: list[str] = []
        self._message_index = -1
        self._calls: dict[int, _Call] = {}
        self._call_ids: set[str] = set()
        self._usage: object = None
        self._finish_reason: str | None = None
        self._produced = False
        self._broken: str | None = None
        self._out: list[Event] = []

    # -- public API ---------------------------------------------------------

    def start(self) -> list[Event]:
        """C{response.created} and C{response.in_progress}; once."""
        if self._started:
            return []
        self._started = True
        snapshot = {**self.response, "output": []}
        return [
            {"type": "response.created", "sequence_number": self._next(), "response": snapshot},
            {"type": "response.in_progress", "sequence_number": self._next(), "response": snapshot},
        ]

    def keepalive(self) -> list[Event]:
        """A real event (not an SSE comment) that resets the client's idle timer."""
        if self.done:
            return []
        if not self._started:
            return self.start()
        snapshot = {**self.response, "output": [i for i in self._items if i is not None]}
        return [
            {"type": "response.in_progress", "sequence_number": self._next(), "response": snapshot}
        ]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """
        Translate one parsed upstream chunk.

        A chunk of the wrong shape raises (C{TypeError}, C{AttributeError},
        …) and the caller then calls L{fail}: the events this chunk had
        already produced are not lost but come first in what L{fail}
        returns, so sequence numbers have no gap and no content event
        arrives before its item.
        """
        if self.done:
            return []
        # Events are made into self._out and handed out at the end: if the
        # chunk raises halfway, what it made stays there for fail().
        events = self._out
        if not self._started:
            events += self.start()
        if "error" in chunk or chunk.get("object") == "error":
            message, code, type_, _ = error_fields(chunk)
            events += self._fail(error_code(message, code, type_), message or "upstream error")
            self._out = []
            return events
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        choices = chunk.get("choices")
        if not choices:
            if events:
                self._out = []
            return events
        choice = choices[0]
        if len(choices) > 1:
            for c in choices:
                if c.get("index", 0) == 0:
                    choice = c
                    break
        delta = choice.get("delta")
        if delta:
            for field in self._reasoning_fields:
                text = delta.get(field)
                if text:
                    self._on_reasoning(text, events)
                    break
            text = delta.get("content") or delta.get("refusal")
            if text:
                self._on_text(text, events)
            calls = delta.get("tool_calls")
            if calls:
                self._on_tool_calls(calls, events)
        finish = choice.get("finish_reason")
        if finish:
            self._finish_reason = finish
            self._close_all(events, "incomplete" if finish == "length" else "completed")
        if events:
            self._out = []
        return events

    def _take(self) -> list[Event]:
        """Events made but not yet handed out (after a chunk that raised)."""
        events, self._out = self._out, []
        return events

    def finish(self) -> list[Event]:
        """The upstream sent C{[DONE]} or closed cleanly: end the response."""
        if self.done:
            return []
        return self._take() + self._finish()

    def _finish(self) -> list[Event]:
        events = self.start() if not self._started else []
        finish = self._finish_reason
        if finish is None:
            # No finish_reason at all. The body ended cleanly (a broken
            # connection goes to fail()), so text we have is presumably
            # whole; but a call whose arguments are not complete JSON would
            # run with garbage, and an empty answer would end the client's
            # turn with nothing: both fail, so the client retries.
            for call in self._calls.values():
                args = "".join(call.parts)
                if args:
                    try:
                        orjson.loads(args)
                    except orjson.JSONDecodeError:
                        return events + self._fail(
                            INCOMPLETE_STREAM, "upstream closed the stream inside a tool call"
                        )
            self._close_all(events, "completed")
            if not self._produced:
                return events + self._terminal(
                    "failed", error=(INCOMPLETE_STREAM, "upstream closed the stream with no output")
                )
        else:
            self._close_all(events, "incomplete" if finish == "length" else "completed")
        if self._broken is not None:
            return events + self._terminal("failed", error=(PROTOCOL_ERROR, self._broken))
        if finish == "length":
            return events + self._terminal("incomplete", reason="max_output_tokens")
        if finish == "content_filter":
            return events + self._terminal("incomplete", reason="content_filter")
        return events + self._terminal("completed")

    def fail(self, code: str, message: str) -> list[Event]:
        """
        The upstream broke, timed out or sent an error: C{response.failed}.

        Items still streaming are abandoned, not closed: no
        C{output_item.done} for them, and the failed response's C{output}
        holds only items that were finished. A client records every item
        it is given as done (the Codex CLI shows a half answer as the
        answer and replays it, or a tool call with torn JSON arguments, on
        its retry), so half an item must never look like a whole one.
        """
        if self.done:
            return []
        return self._take() + self._fail(code, message)

    def _fail(self, code: str, message: str) -> list[Event]:
        events = self.start() if not self._started else []
        self._abandon()
        return events + self._terminal("failed", error=(code, message))

    def _abandon(self) -> None:
        self._reasoning = None
        self._reasoning_parts = []
        self._message = None
        self._text_parts = []
        self._calls = {}

    @property
    def usage(self) -> Any:
        return self.response.get("usage")

    @property
    def failure(self) -> dict[str, Any] | None:
        response = self.response
        if self.done and response.get("status") == "failed":
            return response.get("error") or {"code": "upstream_error", "message": "upstream failed"}
        return None

    def answer(self) -> dict[str, Any]:
        """The response object (what a client that did not stream gets)."""
        return self.response

    # -- internals ------------------------------------------------------------

    def _next(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._base}_{self._counter}"

    def _add(self, item: dict[str, Any], events: list[Event]) -> int:
        index = len(self._items)
        self._items.append(None)
        self._produced = True
        events.append(
            {
                "type": "response.output_item.added",
                "sequence_number": self._next(),
                "output_index": index,
                "item": item,
            }
        )
        return index

    def _done(self, index: int, item: dict[str, Any], events: list[Event]) -> None:
        self._items[index] = item
        events.append(
            {
                "type": "response.output_item.done",
                "sequence_number": self._next(),
                "output_index": index,
                "item": item,
            }
        )

    def _on_reasoning(self, text: str, events: list[Event]) -> None:
        if self._message is not None:
            self._close_message(events, "completed")
        reasoning = self._reasoning
        if reasoning is None:
            rid = self._id("rs")
            reasoning = self._reasoning = {"id": rid, "type": "reasoning", "summary": []}
            self._reasoning_index = index = self._add(dict(reasoning), events)
            if self._summary:
                events.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        "sequence_number": self._next(),
                        "item_id": rid,
                        "output_index": index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    }
                )
            if self._raw:
                # The openai SDKs accumulate reasoning_text deltas into a
                # content part, which must be added first (as OpenAI does).
                events.append(
                    {
                        "type": "response.content_part.added",
                        "sequence_number": self._next(),
                        "item_id": rid,
                        "output_index": index,
                        "content_index": 0,
                        "part": {"type": "reasoning_text", "text": ""},
                    }
                )
        self._reasoning_parts.append(text)
        if self._summary:
            events.append(
                {
                    "type": "response.reasoning_summary_text.delta",
                    "sequence_number": self._next(),
                    "item_id": reasoning["id"],
                    "output_index": self._reasoning_index,
                    "summary_index": 0,
                    "delta": text,
                }
            )
        if self._raw:
            events.append(
                {
                    "type": "response.reasoning_text.delta",
                    "sequence_number": self._next(),
                    "item_id": reasoning["id"],
                    "output_index": self._reasoning_index,
                    "content_index": 0,
                    "delta": text,
                }
            )

    def _close_reasoning(self, events: list[Event], status: str) -> None:
        item = self._reasoning
        if item is None:
            return
        self._reasoning = None
        text = "".join(self._reasoning_parts)
        self._reasoning_parts = []
        rid = item["id"]
        index = self._reasoning_index
        if self._summary:
            summary = {"type": "summary_text", "text": text}
            events.append(
                {
                    "type": "response.reasoning_summary_text.done",
                    "sequence_number": self._next(),
                    "item_id": rid,
                    "output_index": index,
                    "summary_index": 0,
                    "text": text,
                }
            )
            events.append(
                {
                    "type": "response.reasoning_summary_part.done",
                    "sequence_number": self._next(),
                    "item_id": rid,
                    "output_index": index,
                    "summary_index": 0,
                    "part": summary,
                }
            )
            item["summary"] = [summary]
        if self._raw:
            part = {"type": "reasoning_text", "text": text}
            events.append(
                {
                    "type": "response.reasoning_text.done",
                    "sequence_number": self._next(),
                    "item_id": rid,
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                }
            )
            events.append(
                {
                    "type": "response.content_part.done",
                    "sequence_number": self._next(),
                    "item_id": rid,
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
            item["content"] = [dict(part)]
        if self._seal:
            item["encrypted_content"] = seal_reasoning(text, self._key)
        item["status"] = status
        self._done(index, item, events)

    def _on_text(self, text: str, events: list[Event]) -> None:
        if self._reasoning is not None:
            self._close_reasoning(events, "completed")
        message = self._message
        if message is None:
            mid = self._id("msg")
            message = self._message = {
                "id": mid,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self._message_index = index = self._add(dict(message, content=[]), events)
            events.append(
                {
                    "type": "response.content_part.added",
                    "sequence_number": self._next(),
                    "item_id": mid,
                    "output_index": index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                }
            )
        self._text_parts.append(text)
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": self._next(),
                "item_id": message["id"],
                "output_index": self._message_index,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            }
        )

    def _close_message(self, events: list[Event], status: str) -> None:
        message = self._message
        if message is None:
            return
        self._message = None
        text = "".join(self._text_parts)
        self._text_parts = []
        mid = message["id"]
        index = self._message_index
        part = {"type": "output_text", "text": text, "annotations": []}
        events.append(
            {
                "type": "response.output_text.done",
                "sequence_number": self._next(),
                "item_id": mid,
                "output_index": index,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            }
        )
        events.append(
            {
                "type": "response.content_part.done",
                "sequence_number": self._next(),
                "item_id": mid,
                "output_index": index,
                "content_index": 0,
                "part": part,
            }
        )
        message["content"] = [part]
        message["status"] = status
        self._done(index, message, events)

    def _on_tool_calls(self, deltas: list[Any], events: list[Event]) -> None:
        if self._reasoning is not None:
            self._close_reasoning(events, "completed")
        if self._message is not None:
            self._close_message(events, "completed")
        calls = self._calls
        for tc in deltas:
            if not isinstance(tc, dict):
                continue
            upstream_id = tc.get("id")
            function = tc.get("function") or {}
            name = function.get("name")
            args = function.get("arguments")
            index = tc.get("index")
            if not isinstance(index, int):
                # Ollama and some llama.cpp builds omit the index.
                index = self._guess_index(upstream_id, name)
            call = calls.get(index)
            if call is None:
                call = calls[index] = _Call()
            elif name and call.item is not None and upstream_id and upstream_id != call.upstream_id:
                # A second whole call reusing an index: close the first.
                self._close_call(call, events, "completed")
                call = calls[index] = _Call()
            if upstream_id and call.upstream_id is None:
                call.upstream_id = upstream_id
            if name and not call.flat:
                call.flat = name
            if isinstance(args, dict):
                args = orjson.dumps(args).decode("utf-8")
            if args:
                call.parts.append(args)
            if call.item is None:
                if call.flat:
                    self._open_call(call, events)
            elif args and call.kind == FUNCTION:
                events.append(
                    {
                        "type": "response.function_call_arguments.delta",
                        "sequence_number": self._next(),
                        "item_id": call.item["id"],
                        "output_index": call.output_index,
                        "delta": args,
                    }
                )

    def _guess_index(self, upstream_id: object, name: object) -> int:
        calls = self._calls
        if upstream_id:
            for i, c in calls.items():
                if c.upstream_id == upstream_id:
                    return i
        if name or not calls:
            return max(calls, default=-1) + 1
        return max(calls)

    def _call_id(self, upstream_id: str | None) -> str:
        """The upstream's id, unless missing or already used in this response."""
        call_id = upstream_id
        if not call_id or call_id in self._call_ids:
            call_id = self._id("call")
        self._call_ids.add(call_id)
        return call_id

    def _open_call(self, call: _Call, events: list[Event]) -> None:
        target = self._tool_map.target(call.flat)
        call.kind = target.kind
        call.call_id = self._call_id(call.upstream_id)
        if target.kind == FUNCTION:
            item: dict[str, Any] = {
                "id": self._id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call.call_id,
                "name": target.name,
                "arguments": "",
            }
            if target.namespace is not None:
                item["namespace"] = target.namespace
            call.item = item
            call.output_index = self._add(dict(item), events)
            if call.parts:
                events.append(
                    {
                        "type": "response.function_call_arguments.delta",
                        "sequence_number": self._next(),
                        "item_id": item["id"],
                        "output_index": call.output_index,
                        "delta": "".join(call.parts),
                    }
                )
        elif target.kind == CUSTOM:
            # Input streams as one delta at the end: the upstream writes it
            # JSON-wrapped, and only the whole wrapper can be unwrapped.
            item = {
                "id": self._id("ctc"),
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": call.call_id,
                "name": target.name,
                "input": "",
            }
            if target.namespace is not None:
                item["namespace"] = target.namespace
            call.item = item
            call.output_index = self._add(dict(item), events)
        elif target.kind == TOOL_SEARCH:
            # A tool_search_call has no delta events and its arguments are
            # a JSON value: it is added and done together at close.
            call.item = {"id": self._id("tsc"), "type": "tool_search_call"}
        else:
            # local_shell_call has no delta events and needs its action in
            # the added item: it is added and done together at close.
            call.item = {"id": self._id("lsh"), "type": "local_shell_call"}

    def _close_call(self, call: _Call, events: list[Event], status: str) -> None:
        item = call.item
        if item is None:
            if call.parts or call.upstream_id:
                self._broken = "upstream sent a tool call without a function name"
            return
        call.item = None
        arguments = "".join(call.parts) or "{}"
        if call.kind == FUNCTION:
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    "sequence_number": self._next(),
                    "item_id": item["id"],
                    "output_index": call.output_index,
                    "arguments": arguments,
                }
            )
            item["arguments"] = arguments
        elif call.kind == CUSTOM:
            text = custom_input(arguments)
            for kind in ("delta", "done"):
                event: Event = {
                    "type": f"response.custom_tool_call_input.{kind}",
                    "sequence_number": self._next(),
                    "item_id": item["id"],
                    "output_index": call.output_index,
                }
                event["delta" if kind == "delta" else "input"] = text
                events.append(event)
            item["input"] = text
        elif call.kind == TOOL_SEARCH:
            item["call_id"] = call.call_id
            item["execution"] = "client"
            item["arguments"] = tool_search_arguments(arguments)
            item["status"] = status
            call.output_index = self._add(dict(item), events)
        else:
            item["call_id"] = call.call_id
            item["action"] = local_shell_action(arguments)
            item["status"] = status
            call.output_index = self._add(dict(item), events)
        item["status"] = status
        self._done(call.output_index, item, events)

    def _close_all(self, events: list[Event], status: str) -> None:
        self._close_reasoning(events, status)
        self._close_message(events, status)
        if self._calls:
            for index in sorted(self._calls):
                self._close_call(self._calls[index], events, status)
            self._calls = {}

    def _terminal(
        self,
        status: str,
        *,
        reason: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> list[Event]:
        self.done = True
        response = self.response
        response["status"] = status
        response["output"] = [i for i in self._items if i is not None]
        response["usage"] = map_usage(self._usage)
        if status == "completed":
            response["completed_at"] = int(self._clock())
        if reason is not None:
            response["incomplete_details"] = {"reason": reason}
        if error is not None:
            response["error"] = {"code": error[0], "message": error[1]}
        return [
            {"type": f"response.{status}", "sequence_number": self._next(), "response": response}
        ]
