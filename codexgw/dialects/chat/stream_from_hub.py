# -*- test-case-name: tests.dialects.chat.test_stream_from_hub -*-
"""
Responses stream events → C{chat.completion.chunk}s (and, aggregated, one
C{chat.completion}), for Chat clients of a Responses-only upstream.

A state machine fed one parsed event at a time. Function calls get Chat's
C{index} in the order they appear and carry C{id}, C{type} and the name on
their first chunk only, as OpenAI's own Chat streams do. Reasoning becomes
C{reasoning_content} deltas, the de facto Chat field for it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from zope.interface import implementer

from codexgw.dialects.chat.request_to_hub import ResponsesRequest
from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.errors import errorObject

Chunk = dict[str, Any]

_REASONING = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage in Chat's names (integers, details included)."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


@implementer(IStreamTranslator)
class ResponsesToChat:
    """
    @ivar done: a terminal event (or L{finish}/L{fail}) was seen.
    @ivar error: C{{message, code}} when the upstream failed, else L{None}.
    """

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.request = request
        self._base = {
            "id": completion_id or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": request.model,
        }
        self.done = False
        self.error: dict[str, Any] | None = None
        self._started = False
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[str, dict[str, Any]] = {}  # item id -> call
        self._streamedArgs: set[str] = set()
        self._finish = "stop"
        self._usage: dict[str, Any] | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _open(self, out: list[Chunk]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        if self.done:
            return []
        kind = event.get("type")
        out: list[Chunk] = []
        if kind == "response.output_text.delta":
            delta = str(event.get("delta", ""))
            self._open(out)
            self._text.append(delta)
            out.append(self._chunk({"content": delta}))
        elif kind in _REASONING:
            delta = str(event.get("delta", ""))
            self._open(out)
            self._reasoning.append(delta)
            out.append(self._chunk({"reasoning_content": delta}))
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self._open(out)
                call = {
                    "index": len(self._calls),
                    "id": item.get("call_id") or item.get("id"),
                    "name": item.get("name", ""),
                    "arguments": [],
                }
                self._calls[str(item.get("id"))] = call
                out.append(
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": call["index"],
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                )
        elif kind == "response.function_call_arguments.delta":
            streaming = self._calls.get(str(event.get("item_id")))
            if streaming is not None:
                delta = str(event.get("delta", ""))
                streaming["arguments"].append(delta)
                self._streamedArgs.add(str(event.get("item_id")))
                out.append(
                    self._chunk(
                        {
                            "tool_calls": [
                                {"index": streaming["index"], "function": {"arguments": delta}}
                            ]
                        }
                    )
                )
        elif kind == "response.output_item.done":
            item = event.get("item") or {}
            itemId = str(item.get("id"))
            finished = self._calls.get(itemId)
            if finished is not None and itemId not in self._streamedArgs and item.get("arguments"):
                finished["arguments"].append(item["arguments"])
                out.append(
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": finished["index"],
                                    "function": {"arguments": item["arguments"]},
                                }
                            ]
                        }
                    )
                )
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            self._usage = chat_usage(response.get("usage"))
            if kind == "response.incomplete":
                reason = (response.get("incomplete_details") or {}).get("reason")
                self._finish = "content_filter" if reason == "content_filter" else "length"
            out += self.finish()
        elif kind == "response.failed":
            error = (event.get("response") or {}).get("error") or {}
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

    def finish(self) -> list[Chunk]:
        """The upstream ended: the finish chunk, and usage if asked."""
        if self.done:
            return []
        self.done = True
        out: list[Chunk] = []
        self._open(out)
        if self._calls and self._finish == "stop":
            self._finish = "tool_calls"
        out.append(self._chunk({}, self._finish))
        if self.request.include_usage:
            out.append({**self._base, "choices": [], "usage": self._usage})
        return out

    def fail(self, code: str, message: str) -> list[Chunk]:
        """An error object, as Chat streams carry one, then nothing more."""
        if self.done:
            return []
        self.done = True
        self.error = {"message": message, "code": code}
        return [errorObject(message, "upstream_error", code)]

    def start(self) -> list[Chunk]:
        """Chat streams have no preamble: the role comes with the first delta."""
        return []

    def keepalive(self) -> list[Chunk]:
        """Chat has no keep-alive event (an SSE comment does that job)."""
        return []

    @property
    def failure(self) -> dict[str, Any] | None:
        return self.error

    @property
    def usage(self) -> Any:
        return self.completion().get("usage")

    def answer(self) -> dict[str, Any]:
        return self.completion()

    def completion(self) -> dict[str, Any]:
        """Everything so far as one C{chat.completion}."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text) or None}
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for c in sorted(self._calls.values(), key=lambda c: c["index"])
            ]
        finish = self._finish
        if self._calls and finish == "stop":
            finish = "tool_calls"
        return {
            "id": self._base["id"],
            "object": "chat.completion",
            "created": self._base["created"],
            "model": self._base["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage,
        }
