# -*- test-case-name: tests.dialects.chat.test_request_from_hub -*-
"""
A Responses API request as a Chat Completions request.

One table of rules, applied by pure functions: the Responses C{input} items
become Chat messages (parallel calls as one assistant message, tool outputs
as C{tool} messages, images a C{tool} message cannot carry as a following
user message, our own sealed reasoning as C{reasoning_content} where the
upstream wants it), tools become flat functions (L{codexgw.dialects.chat.tools}),
and only the settings the upstream's L{ChatDialect} accepts are sent. The
upstream request always streams, whatever the client asked, so one stream
translator serves both streamed and whole answers.

Bad input raises L{InvalidRequest} naming the offending field path: the
field types are L{codexgw.dialects.responses.validate}'s (checked again here, so the
translator never relies on its caller), what cannot be translated is here.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.stream_to_hub import unseal_reasoning
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
from codexgw.dialects.responses.compaction import expand_compaction
from codexgw.dialects.responses.echo import echo as _echo
from codexgw.dialects.responses.validate import check_create
from codexgw.errors import InvalidRequest

_SYSTEM_ROLES = ("system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_IMAGE_DETAILS = ("low", "high", "auto")
_CALL_TYPES = ("function_call", "custom_tool_call", "local_shell_call")
_SUMMARIES = ("auto", "concise", "detailed")
_OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")


@attrs.frozen
class ChatRequest:
    """
    A translated request.

    @ivar body: the Chat Completions request to send upstream (always
        C{stream: true}).
    @ivar tool_map: maps upstream function names back to client tools.
    @ivar dropped_tools: types of client tools the upstream cannot run.
    @ivar dropped_fields: request settings not sent because the dialect does
        not support them (for logs).
    @ivar ignored_fields: the client's fields with no Chat meaning at all,
        not sent (a debug line: clients keep adding them).
    @ivar client_stream: the client asked for a stream.
    @ivar dialect: the upstream's dialect (the stream translator reads its
        reasoning fields).
    @ivar echo: the request's settings as the response object echoes them.
    @ivar include_reasoning_token: the client asked for
        C{reasoning.encrypted_content}, where our sealed reasoning goes.
    @ivar reasoning_summary: the client asked for a reasoning summary
        (C{reasoning.summary} C{auto}, C{concise} or C{detailed}) and the
        dialect has C{summarize_reasoning}: the stream translator then
        delivers the upstream's reasoning as summary text as well.
    """

    body: dict[str, Any]
    tool_map: ToolMap
    dropped_tools: list[str]
    client_stream: bool
    dialect: ChatDialect
    echo: dict[str, Any]
    include_reasoning_token: bool = False
    dropped_fields: list[str] = attrs.field(factory=list)
    ignored_fields: list[str] = attrs.field(factory=list)
    reasoning_summary: bool = False


def responses_to_chat(
    body: object,
    dialect: ChatDialect,
    *,
    upstream_model: str | None = None,
    reasoning_key: bytes | None = None,
) -> ChatRequest:
    """
    Translate a Responses request body for a Chat upstream.

    @param upstream_model: the upstream's name for the model (defaults to
        the request's C{model}).
    @param reasoning_key: the HMAC key sealed reasoning tokens were made with.
    @raise InvalidRequest: the body is not a valid Responses request.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    check_create(body, bridged=True)
    model = upstream_model or body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model")

    mapped = map_tools(body.get("tools"), dialect, revealed=revealed_tools(body.get("input")))
    messages = _messages(body, dialect, mapped.tool_map, reasoning_key)

    chat: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if dialect.supports_stream_options:
        chat["stream_options"] = {"include_usage": True}
    dropped_fields: list[str] = []
    if mapped.tools:
        # Many Chat servers reject an empty tools array (Codex compaction
        # sends one): tools, tool_choice and parallel_tool_calls go together.
        chat["tools"] = mapped.tools
        choice = map_tool_choice(body.get("tool_choice"), mapped.tool_map)
        if choice is not None:
            chat["tool_choice"] = choice
        parallel = body.get("parallel_tool_calls")
        if isinstance(parallel, bool):
            if dialect.supports_parallel_tool_calls:
                chat["parallel_tool_calls"] = parallel
            else:
                dropped_fields.append("parallel_tool_calls")
    _settings(body, dialect, chat, dropped_fields)

    include = body.get("include")
    return ChatRequest(
        body=chat,
        tool_map=mapped.tool_map,
        dropped_tools=mapped.dropped,
        client_stream=body.get("stream") is True,
        dialect=dialect,
        echo=_echo(body),
        include_reasoning_token=isinstance(include, list)
        and "reasoning.encrypted_content" in include,
        dropped_fields=dropped_fields,
        ignored_fields=_ignored(body),
        reasoning_summary=dialect.summarize_reasoning and _wants_summary(body),
    )


def _wants_summary(body: dict[str, Any]) -> bool:
    """Whether the request asks for a reasoning summary (C{generate_summary} is its old name)."""
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        return False
    summary = reasoning.get("summary")
    if summary is None:
        summary = reasoning.get("generate_summary")
    return summary in _SUMMARIES


# -- settings ----------------------------------------------------------------


def _settings(
    body: dict[str, Any], dialect: ChatDialect, chat: dict[str, Any], dropped: list[str]
) -> None:
    """
    Sampling, limits and formats, where the dialect accepts them; their
    types and ranges were checked by L{check_create}.
    """
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None:
            chat[name] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        # 64.0 is a count too; Chat servers want the integer.
        chat[dialect.max_tokens_field] = int(limit)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        if dialect.supports_reasoning_effort:
            chat["reasoning_effort"] = reasoning["effort"]
        else:
            dropped.append("reasoning.effort")
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        if not dialect.supports_response_format:
            dropped.append("text.format")
        elif fmt["type"] == "json_object":
            chat["response_format"] = {"type": "json_object"}
        else:
            spec: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
            if isinstance(fmt.get("description"), str):
                spec["description"] = fmt["description"]
            if dialect.supports_strict and isinstance(fmt.get("strict"), bool):
                spec["strict"] = fmt["strict"]
            chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user and dialect.supports_user:
        chat["user"] = user
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata:
        if dialect.supports_metadata:
            chat["metadata"] = metadata
        else:
            dropped.append("metadata")
    for name, allowed in (
        ("prompt_cache_key", dialect.supports_prompt_cache_key),
        ("service_tier", dialect.supports_service_tier),
    ):
        value = body.get(name)
        if isinstance(value, str) and value:
            if allowed:
                chat[name] = value
            else:
                dropped.append(name)


# Top-level Responses fields this translation uses, or that the gateway
# itself acts on (storing, streaming, history); any other field a client
# sends (Codex keeps adding some) has no Chat meaning and is not sent.
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
        "presence_penalty",
        "frequency_penalty",
        "max_output_tokens",
        "reasoning",
        "text",
        "user",
        "safety_identifier",
        "metadata",
        "prompt_cache_key",
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
    """The client's fields that have no Chat meaning (for a debug line)."""
    return sorted(k for k in body if k not in _UNDERSTOOD)


# -- input -------------------------------------------------------------------


class _Builder:
    """
    Accumulates Chat messages while walking the input items in order.

    An assistant message stays open after text or a call so that the
    following calls of the same turn join it (strict upstreams reject
    parallel calls split over several messages); anything else closes it.
    Images from tool outputs wait until the run of C{tool} messages ends,
    because a user message between them would break the call/result pairing.
    """

    def __init__(self, dialect: ChatDialect, tool_map: ToolMap, key: bytes | None) -> None:
        self.dialect = dialect
        self.tool_map = tool_map
        self.key = key
        self.messages: list[dict[str, Any]] = []
        self.system: list[str] = []
        self.assistant: dict[str, Any] | None = None
        self.reasoning: list[str] = []
        self.images: list[dict[str, Any]] = []

    def flush_images(self) -> None:
        if self.images:
            self.messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Images returned by the tool calls above:"}
                    ]
                    + self.images,
                }
            )
            self.images = []

    def new_assistant(self, content: str | None) -> dict[str, Any]:
        self.flush_images()
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
            self.reasoning = []
        self.messages.append(message)
        self.assistant = message
        return message

    def add(self, message: dict[str, Any]) -> None:
        self.flush_images()
        self.assistant = None
        self.messages.append(message)

    def system_text(self, text: str) -> None:
        self.assistant = None
        if self.dialect.single_system_message:
            self.system.append(text)
        else:
            self.add({"role": "system", "content": text})

    def call(self, call: dict[str, Any]) -> None:
        message = self.assistant
        if message is None or self.images:
            message = self.new_assistant(None)
        message.setdefault("tool_calls", []).append(call)

    def finish(self) -> list[dict[str, Any]]:
        self.flush_images()
        if self.system:
            return [{"role": "system", "content": "\n\n".join(self.system)}, *self.messages]
        return self.messages


def _messages(
    body: dict[str, Any], dialect: ChatDialect, tool_map: ToolMap, key: bytes | None
) -> list[dict[str, Any]]:
    b = _Builder(dialect, tool_map, key)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        b.system_text(instructions)
    items = body.get("input")
    if isinstance(items, str):
        b.add({"role": "user", "content": items})
        return b.finish()
    if not isinstance(items, list):
        raise InvalidRequest("input must be a string or an array of items", param="input")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        kind = item.get("type", "message")
        rule = _RULES.get(kind) if isinstance(kind, str) else None
        if rule is None:
            raise InvalidRequest(
                f"{where}.type {kind!r} is not supported by this gateway", param=f"{where}.type"
            )
        rule(b, item, where)
    messages = b.finish()
    if not messages:
        raise InvalidRequest("input must not be empty", param="input")
    return messages


def _message(b: _Builder, item: dict[str, Any], where: str) -> None:
    role = item.get("role")
    content = item.get("content")
    if not isinstance(content, str | list):
        raise InvalidRequest(
            f"{where}.content must be a string or an array", param=f"{where}.content"
        )
    if role in _SYSTEM_ROLES:
        b.system_text(_text_only(content, where, b.dialect, "\n\n"))
    elif role == "assistant":
        b.new_assistant(_text_only(content, where, b.dialect, ""))
    elif role == "user":
        b.add({"role": "user", "content": _user_content(content, where, b.dialect)})
    else:
        raise InvalidRequest(
            f"{where}.role must be one of user, assistant, system, developer", param=f"{where}.role"
        )


def _text_only(content: str | list[Any], where: str, dialect: ChatDialect, sep: str) -> str:
    """Text of a system or assistant message, which Chat takes as a string."""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        part_where = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{part_where} must be an object", param=part_where)
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif not dialect.drop_unsupported_parts:
            raise InvalidRequest(
                f"{part_where}: a part of type {kind!r} cannot go to this upstream in this role",
                param=part_where,
            )
    return sep.join(texts)


def _parts(content: list[Any], where: str, dialect: ChatDialect) -> list[dict[str, Any]]:
    """Chat parts, in order, for the parts of a user message or tool output."""
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{part_where} must be an object", param=part_where)
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            detail = part.get("detail")
            if detail == "original":
                detail = dialect.image_detail_original
            if detail in _IMAGE_DETAILS:
                image["detail"] = detail
            parts.append({"type": "image_url", "image_url": image})
        elif not dialect.drop_unsupported_parts:
            what = "input_image without image_url" if kind == "input_image" else repr(kind)
            raise InvalidRequest(
                f"{part_where}: a part of type {what} cannot be sent to this upstream",
                param=part_where,
            )
    return parts


def _user_content(content: str | list[Any], where: str, dialect: ChatDialect) -> Any:
    if isinstance(content, str):
        return content
    parts = _parts(content, f"{where}.content", dialect)
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _call(b: _Builder, item: dict[str, Any], where: str) -> None:
    call_id = call_id_of(item, where)
    name, arguments = upstream_call(b.tool_map, item, where)
    b.call({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})


def _output(b: _Builder, item: dict[str, Any], where: str) -> None:
    call_id = call_id_of(item, where)
    output = item.get("output")
    content: Any
    images: list[dict[str, Any]] = []
    if isinstance(output, str):
        content = output
    elif isinstance(output, list):
        parts = _parts(output, f"{where}.output", b.dialect)
        texts = [p for p in parts if p["type"] == "text"]
        images = [p for p in parts if p["type"] != "text"]
        content = "\n".join(t["text"] for t in texts)
        if images and b.dialect.images_in_tool_messages:
            content = parts
            images = []
        elif images and not content:
            content = "(the tool returned images; they follow in the next message)"
    elif output is None:
        content = ""
    else:
        content = orjson.dumps(output).decode("utf-8")
    # A tool message never flushes pending images: they wait for the run to end.
    b.assistant = None
    b.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
    b.images += images


def _tool_search_call(b: _Builder, item: dict[str, Any], where: str) -> None:
    """A C{tool_search_call} as a call of the C{tool_search} function."""
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            f"{where}.call_id must be a non-empty string", param=f"{where}.call_id"
        )
    args = item.get("arguments")
    arguments = args if isinstance(args, str) else orjson.dumps(args or {}).decode("utf-8")
    name = b.tool_map.upstream_name(TOOL_SEARCH, TOOL_SEARCH)
    b.call({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})


def _tool_search_output(b: _Builder, item: dict[str, Any], where: str) -> None:
    """
    A C{tool_search_output} as the C{tool_search} call's result: the names
    of the tools it revealed, which the request's C{tools} now carries.
    """
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            f"{where}.call_id must be a non-empty string", param=f"{where}.call_id"
        )
    tools = item.get("tools")
    content = tool_search_result(tools if isinstance(tools, list) else [], b.tool_map)
    b.assistant = None
    b.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})


def _reasoning(b: _Builder, item: dict[str, Any], where: str) -> None:
    """
    Our own sealed reasoning goes back where the dialect asks for it;
    anything else (OpenAI's encrypted blobs, summaries) cannot help a Chat
    upstream and is dropped.
    """
    b.assistant = None
    if not b.dialect.send_back_reasoning:
        return
    text = unseal_reasoning(item.get("encrypted_content"), b.key)
    if text:
        b.reasoning.append(text)


def _compaction(b: _Builder, item: dict[str, Any], where: str) -> None:
    """A compaction this gateway sealed is the summary it holds, as a user message."""
    b.add({"role": "user", "content": expand_compaction(item, b.key, where)})


_RULES = {
    "message": _message,
    "compaction": _compaction,
    "function_call": _call,
    "custom_tool_call": _call,
    "local_shell_call": _call,
    "function_call_output": _output,
    "custom_tool_call_output": _output,
    "local_shell_call_output": _output,
    "tool_search_call": _tool_search_call,
    "tool_search_output": _tool_search_output,
    "reasoning": _reasoning,
}
