# -*- test-case-name: tests.dialects.chat.test_stream_from_hub -*-
"""
Chat Completions request → Responses request, for Chat clients served by a
Responses-only upstream. Pure functions, one rule each, no I/O.

System and developer messages become C{instructions} (the Responses API's
own place for them, so they are not replayed as conversation items); the
rest become input items. The upstream is always streamed and never asked to
store, whatever the client wanted: the gateway needs the stream to relay or
aggregate, and Chat clients expect nothing stored.
"""

from __future__ import annotations

from typing import Any

import attrs

from codexgw.errors import InvalidRequest

# Chat fields with no Responses equivalent: not sent, and listed for a log line.
_DROPPED = (
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "logit_bias",
    "modalities",
    "audio",
    "prediction",
    "functions",
    "function_call",
    "web_search_options",
)


@attrs.frozen
class ResponsesRequest:
    """
    @ivar body: the Responses request for the upstream.
    @ivar model: the model the client asked for (echoed in every chunk).
    @ivar include_usage: the client asked for a usage chunk at the end.
    @ivar dropped_fields: client fields with no Responses equivalent.
    """

    body: dict[str, Any]
    model: str
    client_stream: bool
    include_usage: bool
    dropped_fields: list[str]


def _text(content: Any, where: str) -> str:
    """Text of a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of parts", param=where)
    out = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(
                f"{where}[{i}]: only text parts are allowed here", param=f"{where}[{i}]"
            )
        out.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(out)


def _userContent(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of parts", param=where)
    parts = []
    for i, part in enumerate(content):
        path = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"{path}.image_url.url must be a string", param=path)
            mapped: dict[str, Any] = {"type": "input_image", "image_url": url}
            if isinstance(image, dict) and image.get("detail"):
                mapped["detail"] = image["detail"]
            parts.append(mapped)
        else:
            raise InvalidRequest(f"{path}: unsupported part type {kind!r}", param=path)
    return parts


def _items(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            instructions.append(_text(content, f"{where}.content"))
        elif role == "user":
            items.append(
                {
                    "type": "message",
                    "role": "user",
                    "content": _userContent(content, f"{where}.content"),
                }
            )
        elif role == "assistant":
            # reasoning_content is the upstream's own business in the
            # Responses API (it keeps reasoning itself); not sent back.
            text = _text(content, f"{where}.content")
            if text:
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            for j, call in enumerate(message.get("tool_calls") or []):
                path = f"{where}.tool_calls[{j}]"
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
                    raise InvalidRequest(f"{path} needs an id and a function", param=path)
                arguments = fn.get("arguments", "")
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": str(fn.get("name", "")),
                        "arguments": arguments if isinstance(arguments, str) else str(arguments),
                    }
                )
        elif role == "tool":
            callId = message.get("tool_call_id")
            if not isinstance(callId, str):
                raise InvalidRequest(
                    f"{where}.tool_call_id is required", param=f"{where}.tool_call_id"
                )
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": callId,
                    "output": _text(content, f"{where}.content"),
                }
            )
        else:
            raise InvalidRequest(f"{where}.role {role!r} is not supported", param=f"{where}.role")
    return instructions, items


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(f"tools[{i}] must be a function tool", param=f"tools[{i}]")
        mapped: dict[str, Any] = {"type": "function", "name": fn.get("name")}
        for key in ("description", "parameters", "strict"):
            if key in fn:
                mapped[key] = fn[key]
        out.append(mapped)
    return out


def _toolChoice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    raise InvalidRequest("'tool_choice' is not a valid choice", param="tool_choice")


def _format(fmt: Any) -> dict[str, Any]:
    if not isinstance(fmt, dict):
        raise InvalidRequest("'response_format' must be an object", param="response_format")
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = fmt.get("json_schema") or {}
        out = {
            "type": "json_schema",
            "name": schema.get("name", "response"),
            "schema": schema.get("schema", {}),
        }
        if "strict" in schema:
            out["strict"] = schema["strict"]
        return out
    if kind in ("json_object", "text"):
        return {"type": kind}
    raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format")


def chat_to_responses(body: Any, *, upstream_model: str | None = None) -> ResponsesRequest:
    """
    @raise InvalidRequest: naming the offending field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required", param="model")
    n = body.get("n")
    if n not in (None, 1):
        raise InvalidRequest("only n=1 can be served by a Responses upstream", param="n")
    instructions, items = _items(body.get("messages"))
    out: dict[str, Any] = {
        "model": upstream_model or model,
        "input": items,
        "stream": True,
        "store": False,
    }
    if instructions:
        out["instructions"] = "\n\n".join(instructions)
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _toolChoice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        out["max_output_tokens"] = cap
    for key in ("temperature", "top_p", "user", "metadata"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("response_format") is not None:
        out["text"] = {"format": _format(body["response_format"])}
    if body.get("reasoning_effort") is not None:
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    options = body.get("stream_options")
    return ResponsesRequest(
        body=out,
        model=model,
        client_stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        dropped_fields=[k for k in _DROPPED if body.get(k) is not None],
    )
