# -*- test-case-name: tests.ops.test_probe -*-
"""
C{codexgw probe}: find out, with a few small real requests, which parts of
the Chat Completions (or Responses) dialect a provider speaks.

A provider's documentation rarely says whether it refuses C{strict} on
tools, streams tool-call arguments in pieces, reports usage inside a
stream or where its reasoning text arrives; the bridge needs all of that
(L{codexgw.dialects.chat.dialect.ChatDialect}). Asking is cheaper than guessing:
each probe is one tiny request, and the results become a provider profile
the gateway loads.

The driver (L{probeChat}, L{probeResponses}) talks through a C{send}
callable, so it is tested against fake dialects without a gateway; the
classification of what came back is plain functions over bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import orjson
import yaml

from codexgw.stream.sse import SSEDecoder, SSEError

Send = Callable[[bytes, str, "dict[str, Any] | None"], Awaitable[tuple[int, bytes]]]
"""C{send(method, path, body)} fires with (HTTP status, whole body)."""

Progress = Callable[[str], None]

REASONING_FIELDS = ("reasoning_content", "reasoning")

_PROMPT = "Reply with the single word: ok"
_TOOLS_PROMPT = (
    "Call get_weather with city Paris and get_time with city Tokyo. "
    "Call both tools now, in parallel, and write no text."
)


def _tool(name: str, description: str, strict: bool = False) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


TOOLS = [
    _tool("get_weather", "The current weather in a city."),
    _tool("get_time", "The local time in a city."),
]


@attrs.frozen
class Finding:
    """
    One thing learnt about the provider.

    @ivar key: a stable identifier (C{usage_in_stream}), for C{--json}.
    @ivar label: what an operator reads in the table.
    @ivar supported: L{None} when the probe could not tell (an upstream
        error, or a model that did not do what it was asked).
    @ivar detail: the evidence, short.
    """

    key: str
    label: str
    supported: bool | None
    detail: str = ""

    def asDict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Report:
    """
    What a probe found.

    @ivar error: set when even a plain request failed: nothing else was
        tried, and the command exits non-zero.
    @ivar profile: the dialect fields the findings settle (Chat only).
    """

    base_url: str
    wire_api: str
    model: str | None = None
    findings: list[Finding] = attrs.Factory(list)
    profile: dict[str, Any] = attrs.Factory(dict)
    error: str | None = None

    def finding(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    def asDict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "wire_api": self.wire_api,
            "model": self.model,
            "ok": self.error is None,
            "error": self.error,
            "findings": [f.asDict() for f in self.findings],
            "profile": self.profile,
        }

    def table(self) -> str:
        """The human form: one row a finding."""
        lines = [f"codexgw probe: {self.base_url} ({self.wire_api}), model {self.model or '?'}"]
        if self.error:
            lines.append(f"error: {self.error}")
        if self.findings:
            width = max(len(f.label) for f in self.findings)
            lines.append(f"{'feature'.ljust(width)}  supported  detail")
            for f in self.findings:
                mark = {True: "yes", False: "no", None: "unknown"}[f.supported]
                lines.append(f"{f.label.ljust(width)}  {mark.ljust(9)}  {f.detail}".rstrip())
        return "\n".join(lines) + "\n"


def errorMessage(status: int, body: bytes) -> str:
    """The upstream's own error message, short, for the detail column."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
    else:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            text = str(error.get("message") or error)
        elif error:
            text = str(error)
        else:
            text = (
                str(data.get("message") or data.get("detail") or data)
                if isinstance(data, dict)
                else str(data)
            )
    text = " ".join(text.split())
    return f"HTTP {status}: {text[:120]}" if text else f"HTTP {status}"


def accepted(status: int, body: bytes) -> tuple[bool | None, str]:
    """
    Whether a request with one extra field was taken: a 400 or 422 means
    the field was refused; another failure says nothing about the field.
    """
    if 200 <= status < 300:
        return True, f"HTTP {status}"
    if status in (400, 422):
        return False, errorMessage(status, body)
    return None, errorMessage(status, body)


def sseData(body: bytes) -> tuple[list[Any], bool]:
    """
    The JSON payloads of an SSE body and whether it ended with C{[DONE]};
    payloads that are not JSON are skipped (the probe reports what it can).
    """
    decoder = SSEDecoder()
    try:
        events = decoder.feed(body) + decoder.close()
    except SSEError:
        return [], False
    out: list[Any] = []
    done = False
    for event in events:
        if event.data.strip() == "[DONE]":
            done = True
            continue
        try:
            out.append(orjson.loads(event.data))
        except orjson.JSONDecodeError:
            continue
    return out, done


@attrs.define
class ChatStream:
    """What a streamed Chat answer held, reduced to what the probe asks."""

    chunks: int = 0
    done: bool = False
    usage: bool = False
    reasoning: list[str] = attrs.Factory(list)
    # index -> number of deltas that carried argument text, and its name
    calls: dict[int, int] = attrs.Factory(dict)
    names: dict[int, str] = attrs.Factory(dict)

    @classmethod
    def parse(cls, body: bytes) -> ChatStream:
        payloads, done = sseData(body)
        stream = cls(done=done)
        for chunk in payloads:
            if not isinstance(chunk, dict):
                continue
            if chunk.get("usage"):
                stream.usage = True
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                stream.chunks += 1
                for field in REASONING_FIELDS:
                    if delta.get(field) and field not in stream.reasoning:
                        stream.reasoning.append(field)
                for call in delta.get("tool_calls") or ():
                    if not isinstance(call, dict):
                        continue
                    index = int(call.get("index", 0))
                    function = call.get("function") or {}
                    stream.calls.setdefault(index, 0)
                    if function.get("name"):
                        stream.names[index] = function["name"]
                    if function.get("arguments"):
                        stream.calls[index] += 1
        return stream


def _base(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": _PROMPT}], **extra}


async def pickModel(send: Send) -> str | None:
    """The first model the provider lists, for when none was named."""
    try:
        status, body = await send(b"GET", "/models", None)
        data = orjson.loads(body) if status == 200 else None
    except Exception:
        return None
    models = data.get("data") if isinstance(data, dict) else None
    for model in models or ():
        if isinstance(model, dict) and isinstance(model.get("id"), str):
            return str(model["id"])
    return None


async def probe(
    send: Send,
    baseUrl: str,
    wireApi: str,
    model: str | None,
    progress: Progress = lambda _: None,
) -> Report:
    """
    Probe a provider in the protocol it speaks (C{chat} or C{responses}):
    a plain request first (without it nothing else means anything), then
    one request per feature.

    @param model: the model to ask; the first one C{GET /models} lists
        when L{None}.
    """
    report = Report(baseUrl, wireApi, model)
    if model is None:
        progress("listing models (GET /models)")
        model = report.model = await pickModel(send)
        if model is None:
            report.error = "no --model given and GET /models listed none"
            return report
    run = _probeChat if wireApi == "chat" else _probeResponses
    await run(send, report, model, progress)
    return report


def _toolFindings(add: Callable[[Finding], None], pieces: int, calls: int) -> None:
    add(
        Finding(
            "streamed_arguments",
            "tool arguments streamed in pieces",
            pieces > 1,
            f"up to {pieces} argument deltas per call",
        )
    )
    add(
        Finding(
            "parallel_tool_calls", "parallel tool calls", calls > 1, f"{calls} calls in one turn"
        )
    )


async def _probeChat(send: Send, report: Report, model: str, progress: Progress) -> None:
    add = report.findings.append
    path = "/chat/completions"

    progress("plain request")
    status, body = await send(b"POST", path, _base(model))
    if status != 200:
        report.error = f"a plain chat request failed: {errorMessage(status, body)}"
        return
    try:
        message = orjson.loads(body)["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        report.error = "a plain chat request did not return a chat.completion"
        return
    add(Finding("chat", "chat completion", True, f"HTTP 200, {len(body)} bytes"))
    reasoning = [f for f in REASONING_FIELDS if isinstance(message, dict) and message.get(f)]

    progress("streaming")
    status, body = await send(b"POST", path, _base(model, stream=True))
    plain = ChatStream.parse(body) if status == 200 else None
    if plain is None or not plain.chunks:
        detail = errorMessage(status, body) if status != 200 else "no chunks in the answer"
        add(Finding("streaming", "streaming (SSE)", False, detail))
    else:
        end = ", ends with [DONE]" if plain.done else ", no [DONE]"
        add(Finding("streaming", "streaming (SSE)", True, f"{plain.chunks} chunks{end}"))
        reasoning += [f for f in plain.reasoning if f not in reasoning]

    progress("usage in stream (stream_options.include_usage)")
    status, body = await send(
        b"POST", path, _base(model, stream=True, stream_options={"include_usage": True})
    )
    optionsTaken, detail = accepted(status, body)
    add(Finding("stream_options", "field stream_options", optionsTaken, detail))
    withUsage = ChatStream.parse(body) if optionsTaken else None
    if withUsage is not None and withUsage.usage:
        add(Finding("usage_in_stream", "usage in stream", True, "a usage chunk when asked"))
    elif plain is not None and plain.usage:
        add(Finding("usage_in_stream", "usage in stream", True, "without being asked"))
    elif optionsTaken is None:
        add(Finding("usage_in_stream", "usage in stream", None, detail))
    else:
        add(Finding("usage_in_stream", "usage in stream", False, "no usage in any chunk"))

    progress("tool calls (streamed)")
    status, body = await send(
        b"POST",
        path,
        {
            "model": model,
            "messages": [{"role": "user", "content": _TOOLS_PROMPT}],
            "tools": TOOLS,
            "stream": True,
        },
    )
    toolsTaken, detail = accepted(status, body)
    tools = ChatStream.parse(body) if toolsTaken else None
    if tools is None:
        add(Finding("tool_calls", "tool calls", toolsTaken, detail))
    elif not tools.calls:
        add(Finding("tool_calls", "tool calls", None, "the model answered without a tool call"))
    else:
        names = ", ".join(tools.names.get(i, "?") for i in sorted(tools.calls))
        add(Finding("tool_calls", "tool calls", True, names))
        _toolFindings(add, max(tools.calls.values()), len(tools.calls))
        reasoning += [f for f in tools.reasoning if f not in reasoning]

    fields: list[tuple[str, dict[str, Any]]] = [
        ("max_completion_tokens", {"max_completion_tokens": 64}),
        ("max_tokens", {"max_tokens": 64}),
        ("parallel_tool_calls", {"tools": TOOLS, "parallel_tool_calls": True}),
        ("strict", {"tools": [_tool("get_weather", "The weather.", strict=True)]}),
        ("reasoning_effort", {"reasoning_effort": "low"}),
        ("response_format", {"response_format": {"type": "json_object"}}),
        ("user", {"user": "codexgw-probe"}),
        ("metadata", {"metadata": {"source": "codexgw-probe"}}),
    ]
    taken: dict[str, bool | None] = {"stream_options": optionsTaken}
    for name, extra in fields:
        progress(f"field {name}")
        body_ = _base(model, **extra)
        if name == "response_format":
            body_["messages"][0]["content"] = 'Reply with the JSON object {"ok": true}'
        status, body = await send(b"POST", path, body_)
        taken[name], detail = accepted(status, body)
        add(Finding(f"field_{name}", f"field {name}", taken[name], detail))

    add(
        Finding(
            "reasoning_field",
            "reasoning field",
            bool(reasoning) or None,
            ", ".join(reasoning) if reasoning else "no reasoning seen (the model may not reason)",
        )
    )
    report.profile = chatProfile(taken, reasoning)


def chatProfile(taken: dict[str, bool | None], reasoning: list[str]) -> dict[str, Any]:
    """
    The dialect fields the findings settle; what the probe could not tell
    is left out, so the profile inherits it from the one it extends.
    """
    profile: dict[str, Any] = {}
    if taken.get("max_completion_tokens") is True:
        profile["max_tokens_field"] = "max_completion_tokens"
    elif taken.get("max_tokens") is True:
        profile["max_tokens_field"] = "max_tokens"
    for field, key in (
        ("strict", "supports_strict"),
        ("parallel_tool_calls", "supports_parallel_tool_calls"),
        ("stream_options", "supports_stream_options"),
        ("reasoning_effort", "supports_reasoning_effort"),
        ("response_format", "supports_response_format"),
        ("user", "supports_user"),
        ("metadata", "supports_metadata"),
    ):
        if taken.get(field) is not None:
            profile[key] = taken[field]
    if reasoning:
        profile["reasoning_fields"] = reasoning + [
            f for f in REASONING_FIELDS if f not in reasoning
        ]
    return profile


def _responsesEvents(body: bytes) -> list[dict[str, Any]]:
    payloads, _ = sseData(body)
    return [p for p in payloads if isinstance(p, dict)]


async def _probeResponses(send: Send, report: Report, model: str, progress: Progress) -> None:
    add = report.findings.append
    progress("plain request")
    status, body = await send(b"POST", "/responses", {"model": model, "input": _PROMPT})
    if status != 200:
        report.error = f"a plain responses request failed: {errorMessage(status, body)}"
        return
    add(Finding("responses", "response", True, f"HTTP 200, {len(body)} bytes"))

    progress("streaming")
    status, body = await send(
        b"POST", "/responses", {"model": model, "input": _PROMPT, "stream": True}
    )
    events = _responsesEvents(body) if status == 200 else []
    types = [e.get("type") for e in events]
    terminal = next((t for t in types if t in _TERMINAL), None)
    add(
        Finding(
            "streaming",
            "streaming (SSE)",
            bool(events),
            f"{len(events)} events, ends with {terminal}" if events else errorMessage(status, body),
        )
    )
    usage = any(
        isinstance(e.get("response"), dict) and e["response"].get("usage")
        for e in events
        if e.get("type") in _TERMINAL
    )
    add(
        Finding(
            "usage_in_stream", "usage in stream", usage, "on the terminal event" if usage else ""
        )
    )
    reasoning = any(str(t).startswith("response.reasoning") for t in types)

    progress("tool calls (streamed)")
    responsesTools = [
        {"type": "function", **{k: v for k, v in t["function"].items() if k != "strict"}}
        for t in TOOLS
    ]
    status, body = await send(
        b"POST",
        "/responses",
        {"model": model, "input": _TOOLS_PROMPT, "tools": responsesTools, "stream": True},
    )
    taken, detail = accepted(status, body)
    if not taken:
        add(Finding("tool_calls", "tool calls", taken, detail))
    else:
        events = _responsesEvents(body)
        calls = [
            e["item"]
            for e in events
            if e.get("type") == "response.output_item.done"
            and isinstance(e.get("item"), dict)
            and e["item"].get("type") == "function_call"
        ]
        deltas: dict[Any, int] = {}
        for e in events:
            if e.get("type") == "response.function_call_arguments.delta":
                deltas[e.get("item_id")] = deltas.get(e.get("item_id"), 0) + 1
        if not calls:
            add(Finding("tool_calls", "tool calls", None, "the model answered without a tool call"))
        else:
            add(
                Finding(
                    "tool_calls", "tool calls", True, ", ".join(c.get("name", "?") for c in calls)
                )
            )
            _toolFindings(add, max(deltas.values(), default=0), len(calls))
        reasoning = reasoning or any(
            str(e.get("type")).startswith("response.reasoning") for e in events
        )

    for name, extra in (
        ("max_output_tokens", {"max_output_tokens": 64}),
        ("reasoning", {"reasoning": {"effort": "low"}}),
        ("store", {"store": False}),
        ("parallel_tool_calls", {"tools": responsesTools, "parallel_tool_calls": True}),
    ):
        progress(f"field {name}")
        status, body = await send(
            b"POST", "/responses", {"model": model, "input": _PROMPT, **extra}
        )
        ok, detail = accepted(status, body)
        add(Finding(f"field_{name}", f"field {name}", ok, detail))
    add(
        Finding(
            "reasoning_field",
            "reasoning events",
            reasoning or None,
            "response.reasoning_* events" if reasoning else "no reasoning seen",
        )
    )


_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def profileYAML(name: str, extends: str, report: Report) -> str:
    """
    A C{profiles:} block the gateway loads: paste it into the config (or
    merge the file) and set C{provider: NAME} on the upstream.
    """
    fields = {"extends": extends, **report.profile}
    header = (
        f"# Written by `codexgw probe` for {report.base_url} (model {report.model}).\n"
        f"# Merge into the gateway config and set `provider: {name}` on the upstream.\n"
    )
    return header + yaml.safe_dump({"profiles": {name: fields}}, sort_keys=False)
