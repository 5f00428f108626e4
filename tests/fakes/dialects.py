"""
Fake Chat Completions servers that differ the way real providers do: which
request fields they refuse (with a 400, as OpenAI, vLLM and most others do
for an argument they do not know), where their reasoning text arrives,
whether a stream reports usage, whether tool-call arguments arrive in
pieces and whether several calls come in one turn.

C{codexgw probe} is tested against three of them (L{OPENAI_LIKE},
L{DEEPSEEK_LIKE}, L{LOCAL_LIKE}); the gateway is then configured with the
profile the probe wrote and must bridge to the strict one without a 400.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from twisted.web.resource import Resource
from twisted.web.server import Request


@attrs.frozen
class Dialect:
    """
    @ivar refuses: top-level request fields answered with a 400; C{strict}
        means a function tool carrying C{strict}.
    @ivar reasoning_field: the delta field reasoning text arrives in, or
        L{None} for a model that does not reason.
    @ivar usage_in_stream: a usage chunk ends the stream when
        C{stream_options.include_usage} asks for it.
    @ivar streamed_arguments: tool-call arguments arrive in several deltas.
    @ivar parallel: both requested tool calls come in one turn.
    """

    name: str
    model: str
    refuses: frozenset[str] = frozenset()
    reasoning_field: str | None = None
    usage_in_stream: bool = True
    streamed_arguments: bool = True
    parallel: bool = True


OPENAI_LIKE = Dialect("openai-like", "gpt-fake")
DEEPSEEK_LIKE = Dialect(
    "deepseek-like",
    "deepseek-fake",
    refuses=frozenset({"max_completion_tokens", "strict", "reasoning_effort", "metadata"}),
    reasoning_field="reasoning_content",
    parallel=False,
)
LOCAL_LIKE = Dialect(
    "local-like",
    "local-fake",
    refuses=frozenset(
        {
            "max_completion_tokens",
            "strict",
            "parallel_tool_calls",
            "reasoning_effort",
            "metadata",
            "user",
            "stream_options",
            "response_format",
        }
    ),
    reasoning_field="reasoning",
    usage_in_stream=False,
    streamed_arguments=False,
)

_CALLS = [
    ("call_1", "get_weather", '{"city": "Paris"}'),
    ("call_2", "get_time", '{"city": "Tokyo"}'),
]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-dialect",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class DialectUpstream(Resource):
    """
    A Chat Completions server speaking one L{Dialect}; C{received} keeps
    every request body it was sent, refused or not.
    """

    isLeaf = True

    def __init__(self, dialect: Dialect) -> None:
        super().__init__()
        self.dialect = dialect
        self.received: list[dict[str, Any]] = []
        self.authorizations: list[bytes | None] = []
        self.listed = 0

    def render_GET(self, request: Request) -> bytes:
        self.listed += 1
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps({"object": "list", "data": [{"id": self.dialect.model}]})

    def render_POST(self, request: Request) -> bytes:
        body = orjson.loads(request.content.read())
        self.received.append(body)
        self.authorizations.append(request.getHeader(b"authorization"))
        request.setHeader(b"content-type", b"application/json")
        refused = self._refused(body)
        if refused:
            request.setResponseCode(400)
            return orjson.dumps(
                {
                    "error": {
                        "message": f"Unrecognized request argument supplied: {refused}",
                        "type": "invalid_request_error",
                        "param": refused,
                        "code": None,
                    }
                }
            )
        chunks = self._answer(body)
        if not body.get("stream"):
            return orjson.dumps(self._collapse(chunks))
        request.setHeader(b"content-type", b"text/event-stream")
        wantsUsage = (body.get("stream_options") or {}).get("include_usage")
        if wantsUsage and self.dialect.usage_in_stream:
            chunks.append({**_chunk({}), "choices": [], "usage": _USAGE})
        out = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
        return out + b"data: [DONE]\n\n"

    def _refused(self, body: dict[str, Any]) -> str | None:
        for field in sorted(self.dialect.refuses):
            if field in body:
                return field
        if "strict" in self.dialect.refuses:
            for tool in body.get("tools") or ():
                if "strict" in (tool.get("function") or {}):
                    return "tools[].function.strict"
        return None

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        d = self.dialect
        chunks = [_chunk({"role": "assistant", "content": ""})]
        if d.reasoning_field:
            chunks += [_chunk({d.reasoning_field: piece}) for piece in ("Thinking", " briefly.")]
        if body.get("tools"):
            calls = _CALLS if d.parallel else _CALLS[:1]
            for index, (cid, name, arguments) in enumerate(calls):
                pieces = (
                    [arguments[:5], arguments[5:12], arguments[12:]]
                    if d.streamed_arguments
                    else [arguments]
                )
                first = {"index": index, "id": cid, "type": "function"}
                chunks.append(
                    _chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
                )
                chunks += [
                    _chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
                    for p in pieces
                ]
            chunks.append(_chunk({}, "tool_calls"))
        else:
            chunks += [_chunk({"content": "ok"}), _chunk({}, "stop")]
        return chunks

    def _collapse(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        calls: dict[int, dict[str, Any]] = {}
        finish = "stop"
        for chunk in chunks:
            choice = chunk["choices"][0]
            finish = choice["finish_reason"] or finish
            for key, value in choice["delta"].items():
                if key == "tool_calls":
                    for call in value:
                        into = calls.setdefault(
                            call["index"],
                            {"id": call.get("id"), "type": "function", "function": {}},
                        )
                        fn = into["function"]
                        fn["name"] = call["function"].get("name") or fn.get("name")
                        fn["arguments"] = fn.get("arguments", "") + call["function"]["arguments"]
                elif key != "role":
                    message[key] = message.get(key, "") + value
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        return {
            "id": "chatcmpl-dialect",
            "object": "chat.completion",
            "created": 1700000000,
            "model": self.dialect.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _USAGE,
        }


_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
