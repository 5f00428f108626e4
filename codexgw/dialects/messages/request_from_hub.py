# -*- test-case-name: tests.dialects.messages.test_request_from_hub -*-
"""
A Responses API request as an Anthropic Messages request.

The Messages API is strict where the Responses API is loose: C{system} is a
top-level field, roles alternate between user and assistant, text blocks
are never empty, every C{tool_use} is answered by a C{tool_result} first in
the very next user message, C{max_tokens} is required, and any field it
does not know is refused ("Extra inputs are not permitted"). So the body is
built from an allow-list, and what has no Messages meaning is only named
(C{ignored_fields}, C{dropped_fields}) for the bridge's log lines.

Tools are the Chat spoke's flat functions (L{codexgw.dialects.chat.tools}:
namespaces flattened, custom tools as functions of one string) in
Anthropic's C{{name, description, input_schema}} shape; the same
L{ToolMap} maps the calls back in the stream. The upstream request always
streams, whatever the client asked, so one stream translator serves both
streamed and whole answers.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import orjson

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import ChatRequest
from codexgw.dialects.chat.tools import (
    TOOL_SEARCH,
    ToolMap,
    call_id_of,
    map_tool_choice,
    map_tools,
    revealed_tools,
    tool_search_result,
    upstream_call,
)
from codexgw.dialects.messages.stream_from_hub import tool_use_id
from codexgw.dialects.messages.thinking import unseal_block
from codexgw.dialects.responses.compaction import expand_compaction
from codexgw.dialects.responses.echo import echo as _echo
from codexgw.dialects.responses.validate import check_create
from codexgw.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 32000
"""
C{max_tokens} when the client set no C{max_output_tokens} (the Codex CLI
never does): the Messages API requires one. 32000 is what Claude Code
itself sends, and every current Claude model accepts it; an upstream whose
models cap lower is served by passing C{default_max_tokens}.
"""

MIN_THINKING_BUDGET = 1024

THINKING_BUDGETS = {
    "minimal": 1024,
    "low": 4096,
    "medium": 12288,
    "high": 24576,
    "xhigh": 32768,
}
"""
C{reasoning.effort} as C{thinking.budget_tokens}. The API wants at least
1024 and less than C{max_tokens}; the budget is also capped at
C{max_tokens - 1024}, so some room is left for the answer, and with less
than 2048 tokens in all there is no thinking. C{none} means no thinking.
"""

_SYSTEM_ROLES = ("system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_SUMMARIES = ("auto", "concise", "detailed")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", re.DOTALL)
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

_RETIRED = "A tool called earlier in this conversation; not offered now."

# The Chat dialect the tool mapping runs with: Anthropic has no C{strict}.
_TOOLS_DIALECT = ChatDialect(supports_strict=False)


@attrs.frozen
class MessagesRequest(ChatRequest):
    """
    A translated request: the same attributes as the Chat spoke's
    L{ChatRequest} (C{body}, C{tool_map}, C{dropped_tools}, C{client_stream},
    C{dialect}, C{echo}, C{include_reasoning_token}, C{dropped_fields},
    C{ignored_fields}, C{reasoning_summary}), so the bridge and the stream
    translator treat both alike. C{body} is the Messages request (always
    C{stream: true}).
    """


def responses_to_messages(
    body: object,
    dialect: ChatDialect | None = None,
    *,
    upstream_model: str | None = None,
    reasoning_key: bytes | None = None,
    default_max_tokens: int | None = None,
    prompt_cache: bool = True,
) -> MessagesRequest:
    """
    Translate a Responses request body for a Messages upstream.

    @param dialect: the upstream's provider quirks; only
        C{summarize_reasoning} matters here (whether thinking is delivered
        as summary text too).
    @param upstream_model: the upstream's name for the model (defaults to
        the request's C{model}).
    @param reasoning_key: the HMAC key of sealed compactions.
    @param default_max_tokens: C{max_tokens} when the request sets no
        C{max_output_tokens}; L{None} is L{DEFAULT_MAX_TOKENS}.
    @param prompt_cache: mark cache breakpoints (L{_cache_breakpoints}).
    @raise InvalidRequest: the body is not a valid Responses request, or a
        tool output answers no call.
    """
    dialect = dialect or ChatDialect()
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    check_create(body, bridged=True)
    model = upstream_model or body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model")

    mapped = map_tools(
        body.get("tools"), _TOOLS_DIALECT, revealed=revealed_tools(body.get("input"))
    )
    builder = _Builder(mapped.tool_map, reasoning_key)
    system, messages = builder.build(body)

    limit = body.get("max_output_tokens")
    if limit is not None:
        max_tokens = int(limit)
    else:
        max_tokens = default_max_tokens or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        out["system"] = [{"type": "text", "text": text} for text in system]
    out["stream"] = True
    dropped: list[str] = []

    thinking = _thinking(body.get("reasoning"), max_tokens)
    choice: dict[str, Any] | None = None
    if mapped.tools:
        out["tools"] = [_tool(t["function"]) for t in mapped.tools]
        choice = _tool_choice(body.get("tool_choice"), mapped.tool_map)
    elif builder.names:
        # Anthropic refuses tool_use blocks in a request without tools (a
        # Codex compaction sends its history with none): the tools the
        # history called are declared again, and none may be called.
        out["tools"] = [
            {"name": name, "description": _RETIRED, "input_schema": {"type": "object"}}
            for name in builder.names
        ]
        out["tool_choice"] = {"type": "none"}
    if mapped.tools:
        if body.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None and choice["type"] in ("any", "tool") and thinking is not None:
            # Thinking refuses a forced tool; the client's explicit choice wins.
            thinking = None
            dropped.append("reasoning.effort")
        if choice is not None:
            out["tool_choice"] = choice
    if thinking is not None and not _loop_keeps_thinking(messages):
        thinking = None
        dropped.append("reasoning.effort")
    if thinking is not None:
        out["thinking"] = thinking
    if prompt_cache:
        _cache_breakpoints(out)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if thinking is None:
                out[name] = value
            else:
                dropped.append(name)  # refused with thinking on
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    for name in ("metadata", "text.format", "service_tier"):
        if _given(body, name):
            dropped.append(name)
    include = body.get("include")
    return MessagesRequest(
        body=out,
        tool_map=mapped.tool_map,
        dropped_tools=mapped.dropped,
        client_stream=body.get("stream") is True,
        dialect=dialect,
        echo=_echo(body),
        include_reasoning_token=isinstance(include, list)
        and "reasoning.encrypted_content" in include,
        dropped_fields=dropped,
        ignored_fields=_ignored(body),
        reasoning_summary=dialect.summarize_reasoning and _wants_summary(body),
    )


_CACHEABLE = frozenset({"text", "image", "document", "tool_result"})


def _cache_breakpoints(out: dict[str, Any]) -> None:
    """
    Mark the end of the tools, of the system prompt and of the last user
    message as prompt-cache breakpoints (three of the four allowed).
    Anthropic caches nothing unasked, and an agent's every turn resends the
    whole conversation: with the breakpoints, each turn reads the previous
    one's prefix from the cache at a tenth of the price. The first turns of
    a short prompt are below the cacheable minimum, which Anthropic simply
    ignores.
    """
    ephemeral = {"type": "ephemeral"}
    tools = out.get("tools")
    if tools:
        tools[-1]["cache_control"] = ephemeral
    system = out.get("system")
    if system:
        system[-1]["cache_control"] = ephemeral
    last = out["messages"][-1]
    if last["role"] == "user" and last["content"][-1]["type"] in _CACHEABLE:
        last["content"][-1] = {**last["content"][-1], "cache_control": ephemeral}


def _given(body: dict[str, Any], name: str) -> bool:
    if name == "text.format":
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")
    value = body.get(name)
    return bool(value) and value != "auto"


def _wants_summary(body: dict[str, Any]) -> bool:
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        return False
    summary = reasoning.get("summary")
    if summary is None:
        summary = reasoning.get("generate_summary")
    return summary in _SUMMARIES


def _loop_keeps_thinking(messages: list[dict[str, Any]]) -> bool:
    """
    Whether thinking can be on for this history. Mid tool loop (the last
    message answers calls), Anthropic refuses thinking unless the assistant
    message holding the calls starts with its thinking block; a history
    from another model, or whose reasoning was not kept, has none, and the
    turn is better answered without thinking than refused.
    """
    last = messages[-1]
    if last["role"] != "user" or last["content"][0]["type"] != "tool_result":
        return True
    assistant = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if assistant is None:
        return True
    return assistant["content"][0]["type"] in ("thinking", "redacted_thinking")


def _thinking(reasoning: object, max_tokens: int) -> dict[str, Any] | None:
    if not isinstance(reasoning, dict):
        return None
    effort = reasoning.get("effort")
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return None
    budget = min(budget, max_tokens - MIN_THINKING_BUDGET)
    if budget < MIN_THINKING_BUDGET:
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    schema = function.get("parameters")
    if not isinstance(schema, dict) or not schema:
        schema = {"type": "object", "properties": {}}
    elif "type" not in schema:
        # Anthropic wants C{type: object} at the top, which JSON Schema lets
        # a client leave out.
        schema = {"type": "object", **schema}
    tool["input_schema"] = schema
    return tool


def _tool_choice(choice: object, tool_map: ToolMap) -> dict[str, Any] | None:
    mapped = map_tool_choice(choice, tool_map)
    if mapped == "auto":
        return {"type": "auto"}
    if mapped == "required":
        return {"type": "any"}
    if mapped == "none":
        return {"type": "none"}
    if isinstance(mapped, dict):
        function = mapped.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    return None


# Top-level Responses fields this translation uses, or that the gateway
# itself acts on (storing, streaming, history); any other field has no
# Messages meaning and is not sent (the API refuses unknown fields).
_UNDERSTOOD = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_output_tokens",
        "reasoning",
        "text",
        "user",
        "safety_identifier",
        "metadata",
        "service_tier",
        "stream",
        "store",
        "previous_response_id",
        "include",
        "background",
        "truncation",
    }
)


def _ignored(body: dict[str, Any]) -> list[str]:
    return sorted(k for k in body if k not in _UNDERSTOOD)


# -- input -------------------------------------------------------------------


class _Builder:
    """
    Accumulates Messages while walking the input items in order.

    Consecutive items of one role join one message (roles must
    alternate); tool results go before anything else of their user
    message; reasoning waits for the assistant message it belongs to and
    opens it.
    """

    def __init__(self, tool_map: ToolMap, key: bytes | None) -> None:
        self.tool_map = tool_map
        self.key = key
        self.system: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.thinking: list[dict[str, Any]] = []
        self.calls: set[str] = set()
        self.names: list[str] = []  # tools the history calls, in order, once

    def build(self, body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            self.system.append(instructions)
        items = body.get("input")
        if isinstance(items, str):
            self.user([{"type": "text", "text": items}])
        elif isinstance(items, list):
            for i, item in enumerate(items):
                where = f"input[{i}]"
                if not isinstance(item, dict):
                    raise InvalidRequest(f"{where} must be an object", param=where)
                kind = item.get("type", "message")
                rule = _RULES.get(kind) if isinstance(kind, str) else None
                if rule is None:
                    raise InvalidRequest(
                        f"{where}.type {kind!r} is not supported by this gateway",
                        param=f"{where}.type",
                    )
                rule(self, item, where)
        else:
            raise InvalidRequest("input must be a string or an array of items", param="input")
        messages = [m for m in self.messages if m["content"]]
        if not messages:
            raise InvalidRequest("input must not be empty", param="input")
        return self.system, messages

    def _last(self, role: str) -> dict[str, Any]:
        if self.messages and self.messages[-1]["role"] == role:
            return self.messages[-1]
        message: dict[str, Any] = {"role": role, "content": []}
        self.messages.append(message)
        return message

    def user(self, blocks: list[dict[str, Any]]) -> None:
        self.thinking = []  # reasoning not followed by its answer cannot be sent
        blocks = [b for b in blocks if _visible(b)]
        if blocks:
            self._last("user")["content"].extend(blocks)

    def tool_result(self, block: dict[str, Any]) -> None:
        self.thinking = []
        content = self._last("user")["content"]
        at = 0
        while at < len(content) and content[at]["type"] == "tool_result":
            at += 1
        content.insert(at, block)

    def assistant(self, blocks: list[dict[str, Any]]) -> None:
        blocks = [b for b in blocks if _visible(b)]
        if not blocks:
            return
        # Thinking goes where the model wrote it: first in its assistant
        # message, or between blocks of it (interleaved thinking).
        self._last("assistant")["content"].extend(self.thinking + blocks)
        self.thinking = []


def _visible(block: dict[str, Any]) -> bool:
    """Anthropic refuses text blocks that are empty or only whitespace."""
    return block.get("type") != "text" or bool(str(block.get("text") or "").strip())


def _text_of(part: dict[str, Any]) -> str | None:
    kind = part.get("type")
    if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
        return str(part["text"])
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return str(part["refusal"])
    return None


def _blocks(content: list[Any], where: str) -> list[dict[str, Any]]:
    """Messages blocks, in order, for the parts of a user message or tool output."""
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{part_where} must be an object", param=part_where)
        text = _text_of(part)
        if text is not None:
            blocks.append({"type": "text", "text": text})
        elif part.get("type") == "input_image" and isinstance(part.get("image_url"), str):
            blocks.append({"type": "image", "source": _source(part["image_url"], part_where)})
        elif part.get("type") == "input_file" and isinstance(part.get("file_data"), str):
            blocks.append({"type": "document", "source": _source(part["file_data"], part_where)})
        elif part.get("type") == "input_file" and isinstance(part.get("file_url"), str):
            blocks.append({"type": "document", "source": _source(part["file_url"], part_where)})
        else:
            raise InvalidRequest(
                f"{part_where}: a part of type {part.get('type')!r} cannot be sent to this upstream",
                param=part_where,
            )
    return blocks


def _source(url: str, where: str) -> dict[str, Any]:
    """An image or document source: data URLs as base64, web URLs as url sources."""
    match = _DATA_URL.match(url)
    if match is not None:
        return {"type": "base64", "media_type": match.group(1), "data": match.group(2)}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequest(
        f"{where}: only data: and http(s) URLs can be sent to this upstream", param=where
    )


def _message(b: _Builder, item: dict[str, Any], where: str) -> None:
    role = item.get("role")
    content = item.get("content")
    if not isinstance(content, str | list):
        raise InvalidRequest(
            f"{where}.content must be a string or an array", param=f"{where}.content"
        )
    if isinstance(content, str):
        blocks = [{"type": "text", "text": content}]
    elif role in _SYSTEM_ROLES or role == "assistant":
        blocks = []
        for j, part in enumerate(content):
            text = _text_of(part) if isinstance(part, dict) else None
            if text is None:
                raise InvalidRequest(
                    f"{where}.content[{j}]: only text can go to this upstream in this role",
                    param=f"{where}.content[{j}]",
                )
            blocks.append({"type": "text", "text": text})
    else:
        blocks = _blocks(content, f"{where}.content")
    if role in _SYSTEM_ROLES:
        b.system.extend(str(x["text"]) for x in blocks if _visible(x))
    elif role == "assistant":
        b.assistant(blocks)
    elif role == "user":
        b.user(blocks)
    else:
        raise InvalidRequest(
            f"{where}.role must be one of user, assistant, system, developer", param=f"{where}.role"
        )


def _input_object(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the C{input} object Anthropic wants."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}


def _call(b: _Builder, item: dict[str, Any], where: str) -> None:
    call_id = call_id_of(item, where)
    if item["type"] == "tool_search_call":
        name = b.tool_map.upstream_name(TOOL_SEARCH, TOOL_SEARCH)
        args = item.get("arguments")
        arguments = args if isinstance(args, str) else orjson.dumps(args or {}).decode("utf-8")
    else:
        name, arguments = upstream_call(b.tool_map, item, where)
    b.calls.add(call_id)
    if name not in b.names:
        b.names.append(name)
    b.assistant(
        [
            {
                "type": "tool_use",
                "id": tool_use_id(call_id),
                "name": name,
                "input": _input_object(arguments),
            }
        ]
    )


def _output(b: _Builder, item: dict[str, Any], where: str) -> None:
    call_id = call_id_of(item, where)
    if call_id not in b.calls:
        raise InvalidRequest(
            f"No tool call found for function call output with call_id {call_id}.",
            param="input",
        )
    output = item.get("output")
    content: Any
    if item.get("type") == "tool_search_output":
        tools = item.get("tools")
        content = tool_search_result(tools if isinstance(tools, list) else [], b.tool_map)
    elif isinstance(output, str):
        content = output
    elif isinstance(output, list):
        content = _blocks(output, f"{where}.output")
        content = [c for c in content if _visible(c)]
    elif output is None:
        content = ""
    else:
        content = orjson.dumps(output).decode("utf-8")
    # The same id as its call's: Anthropic's pattern is narrower than the
    # ids other upstreams made (Kimi's "functions.name:0").
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(call_id)}
    if content:
        block["content"] = content
    b.tool_result(block)


def _reasoning(b: _Builder, item: dict[str, Any], where: str) -> None:
    """
    A thinking block this spoke sealed goes back as it came, at the start of
    its assistant message; any other reasoning (OpenAI's blobs, summaries)
    means nothing to Anthropic, which would refuse an unsigned block.
    """
    block = unseal_block(item.get("encrypted_content"))
    if block is not None:
        b.thinking.append(block)


def _compaction(b: _Builder, item: dict[str, Any], where: str) -> None:
    b.user([{"type": "text", "text": expand_compaction(item, b.key, where)}])


_RULES = {
    "message": _message,
    "compaction": _compaction,
    "function_call": _call,
    "custom_tool_call": _call,
    "local_shell_call": _call,
    "tool_search_call": _call,
    "function_call_output": _output,
    "custom_tool_call_output": _output,
    "local_shell_call_output": _output,
    "tool_search_output": _output,
    "reasoning": _reasoning,
}
