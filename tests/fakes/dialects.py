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
    @ivar refusal: how a refused field is reported, one of L{REFUSALS}: the
        words and shapes real servers use.
    """

    name: str
    model: str
    refuses: frozenset[str] = frozenset()
    reasoning_field: str | None = None
    usage_in_stream: bool = True
    streamed_arguments: bool = True
    parallel: bool = True
    refusal: str = "openai"


def refusal(style: str, field: str) -> tuple[int, bytes]:
    """The status and body a server of C{style} answers a refused C{field} with."""
    if style == "openai":
        # OpenAI (and Azure) for an argument it does not know at all.
        return 400, orjson.dumps(
            {
                "error": {
                    "message": f"Unrecognized request argument supplied: {field}",
                    "type": "invalid_request_error",
                    "param": field,
                    "code": None,
                }
            }
        )
    if style == "openai-unsupported":
        # OpenAI for an argument a model does not take.
        return 400, orjson.dumps(
            {
                "error": {
                    "message": f"Unsupported parameter: '{field}' is not supported with "
                    "this model.",
                    "type": "invalid_request_error",
                    "param": field,
                    "code": "unsupported_parameter",
                }
            }
        )
    if style == "vllm":
        # vLLM with extra fields forbidden: pydantic's errors as a Python repr.
        detail = (
            f"[{{'type': 'extra_forbidden', 'loc': ('body', '{field}'), "
            f"'msg': 'Extra inputs are not permitted', 'input': True}}]"
        )
        return 400, orjson.dumps(
            {
                "object": "error",
                "message": detail,
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        )
    if style == "pydantic":
        # A FastAPI server's own validation answer.
        return 422, orjson.dumps(
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", field],
                        "msg": "Extra inputs are not permitted",
                        "input": True,
                    }
                ]
            }
        )
    if style == "llama.cpp":
        return 400, orjson.dumps(
            {
                "error": {
                    "code": 400,
                    "message": f"Unsupported param: {field}",
                    "type": "invalid_request_error",
                }
            }
        )
    if style == "ollama":
        # Go's encoding/json with DisallowUnknownFields.
        return 400, orjson.dumps(
            {
                "error": {
                    "message": f'json: unknown field "{field}"',
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        )
    if style == "serde":
        # A Rust (axum + serde) server: plain text.
        return 422, (
            f"Failed to deserialize the JSON body into the target type: unknown field "
            f"`{field}`, expected one of `model`, `messages` at line 1 column 80"
        ).encode()
    raise ValueError(style)


REFUSALS = ("openai", "openai-unsupported", "vllm", "pydantic", "llama.cpp", "ollama", "serde")
"""Every L{Dialect.refusal} style."""


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
            status, answer = refusal(self.dialect.refusal, refused)
            request.setResponseCode(status)
            if not answer.startswith(b"{"):
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return answer
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
