# -*- test-case-name: tests.dialects.messages.test_request_to_hub -*-
"""
An Anthropic Messages request as a Responses request, for Messages clients
(Claude Code, the anthropic SDKs) served by a Responses upstream.

C{system} becomes C{instructions} (but for Claude Code's billing line), and
a system message among the turns a C{developer} message in its place; each
message's blocks become input items in order (a C{tool_use} a
C{function_call}, a C{tool_result} a C{function_call_output}, text and
images a message). A thinking block becomes the reasoning item it stood
for when this spoke made it (its signature packs the item's id and
C{encrypted_content}, L{codexgw.dialects.messages.thinking}), so reasoning
survives the client's round trip with no server state. The upstream always streams and never
stores, whatever the client wanted: the gateway needs the stream, and the
client sends the whole conversation every turn.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import orjson

from codexgw.dialects.messages.thinking import unpack_reasoning
from codexgw.errors import InvalidRequest

# Top-level fields with no Responses meaning: not sent, named for a log line.
_DROPPED = (
    "stop_sequences",
    "top_k",
    "context_management",
    "container",
    "mcp_servers",
    "service_tier",
)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "metadata",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        *_DROPPED,
    }
)

SAFETY_IDENTIFIER_MAX = 64


@attrs.frozen
class HubRequest:
    """
    @ivar body: the Responses request for the upstream.
    @ivar model: the model the client asked for (echoed in C{message_start}).
    @ivar client_stream: the client asked for a stream.
    @ivar dropped_fields: what the client sent that the upstream is not
        sent (fields, server tools, blocks), for a log line.
    @ivar thinking: the client turned thinking on, so reasoning comes back
        as thinking blocks (a client that did not gets none, as from
        Anthropic).
    """

    body: dict[str, Any]
    model: str
    client_stream: bool
    dropped_fields: list[str]
    thinking: bool = False


BILLING_HEADER = "x-anthropic-billing-header:"
"""How Claude Code's first system block opens: Anthropic billing metadata
(C{cc_version=2.1.197.<hash>; cc_entrypoint=…}) that changes from session to
session and means nothing to another model."""


def _without_billing(text: str) -> str | None:
    """C{text} without the billing line it opens with, or None if it has none."""
    if not text.lstrip().startswith(BILLING_HEADER):
        return None
    return text.lstrip().partition("\n")[2].lstrip("\n")


def _instructions(system: Any, dropped: list[str]) -> str:
    """
    C{system} as C{instructions}, without Claude Code's billing line: sent,
    it would open every session's prompt differently, and upstreams that
    cache by prefix (OpenAI, DeepSeek, vLLM) would never hit past it.
    """
    if isinstance(system, str):
        rest = _without_billing(system)
        if rest is None:
            return system
        dropped.append("system (x-anthropic-billing-header)")
        return rest
    if isinstance(system, list):
        blocks = list(system)
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                rest = _without_billing(block["text"])
                if rest is not None:
                    dropped.append(f"system[{i}] (x-anthropic-billing-header)")
                    blocks[i] = dict(block, text=rest)  # an empty text is skipped
        return _text(blocks, "system")
    return _text(system, "system")


def _text(content: Any, where: str) -> str:
    """The text of a string or of a list of text blocks (cache_control dropped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of blocks", param=where)
    texts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"{where}[{i}] must be a text block", param=f"{where}[{i}]")
        texts.append(str(block.get("text") or ""))
    return "\n\n".join(t for t in texts if t)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source must be an object", param=f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest(f"{where}.source.type {kind!r} is not supported", param=where)
    if block.get("type") == "document":
        if kind == "url":
            return {"type": "input_file", "file_url": url}
        return {"type": "input_file", "file_data": url, "filename": "document.pdf"}
    return {"type": "input_image", "image_url": url, "detail": "auto"}


def _result_output(block: dict[str, Any], where: str) -> Any:
    content = block.get("content")
    error = block.get("is_error") is True
    if content is None or isinstance(content, str):
        text = content or ""
        return f"Error: {text}" if error else text
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list", param=where)
    parts: list[dict[str, Any]] = []
    for i, inner in enumerate(content):
        inner_where = f"{where}.content[{i}]"
        kind = inner.get("type") if isinstance(inner, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(inner.get("text") or "")})
        elif kind in ("image", "document"):
            parts.append(_image(inner, inner_where))
        else:
            raise InvalidRequest(f"{inner_where}: unsupported block {kind!r}", param=inner_where)
    if all(p["type"] == "input_text" for p in parts):
        text = "\n".join(p["text"] for p in parts)
        return f"Error: {text}" if error else text
    if error:
        parts.insert(0, {"type": "input_text", "text": "Error:"})
    return parts


class _Items:
    """Input items in order; a message's loose blocks wait for the next item."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.parts: list[dict[str, Any]] = []
        self.role = "user"
        self.dropped: list[str] = []

    def flush(self) -> None:
        if self.parts:
            self.items.append({"type": "message", "role": self.role, "content": self.parts})
            self.parts = []

    def add(self, item: dict[str, Any]) -> None:
        self.flush()
        self.items.append(item)


def _messages(messages: Any) -> _Items:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: must be a non-empty list", param="messages")
    out = _Items()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        role = message.get("role")
        if role == "system":
            _system_message(out, message.get("content"), where)
            continue
        if role not in ("user", "assistant"):
            raise InvalidRequest(
                f"{where}.role must be user, assistant or system", param=f"{where}.role"
            )
        out.flush()
        out.role = role
        text_type = "input_text" if role == "user" else "output_text"
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise InvalidRequest(f"{where}.content must be a string or a list", param=where)
        for j, block in enumerate(content):
            block_where = f"{where}.content[{j}]"
            if not isinstance(block, dict):
                raise InvalidRequest(f"{block_where} must be an object", param=block_where)
            kind = block.get("type")
            if kind == "text":
                if block.get("text"):
                    out.parts.append({"type": text_type, "text": str(block["text"])})
            elif kind in ("image", "document") and role == "user":
                out.parts.append(_image(block, block_where))
            elif kind == "tool_use" and role == "assistant":
                call_id = block.get("id")
                name = block.get("name")
                if not isinstance(call_id, str) or not isinstance(name, str):
                    raise InvalidRequest(f"{block_where} needs an id and a name", param=block_where)
                out.add(
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": orjson.dumps(block.get("input") or {}).decode("utf-8"),
                    }
                )
            elif kind == "tool_result" and role == "user":
                call_id = block.get("tool_use_id")
                if not isinstance(call_id, str):
                    raise InvalidRequest(
                        f"{block_where}.tool_use_id is required", param=block_where
                    )
                out.add(
                    {
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": _result_output(block, block_where),
                    }
                )
            elif kind == "thinking" and role == "assistant":
                item = _reasoning(block)
                if item is None:
                    out.dropped.append(f"{block_where} (a thinking block of another server)")
                else:
                    out.add(item)
            elif kind in ("redacted_thinking", "server_tool_use", "web_search_tool_result"):
                out.dropped.append(f"{block_where} ({kind})")
            else:
                raise InvalidRequest(
                    f"{block_where}: a {kind!r} block cannot go to this upstream in this role",
                    param=block_where,
                )
    out.flush()
    return out


def _system_message(out: _Items, content: Any, where: str) -> None:
    """
    A system message among the turns (the 2026 API; Claude Code sends its
    reminders so for a model it does not know) as a C{developer} message in
    its place, the role the Responses API gives instructions in the input
    (the Codex CLI sends its own so). Text blocks only, as Anthropic takes.
    """
    text = _text(content, f"{where}.content")
    if not text:
        out.dropped.append(f"{where} (an empty system message)")
        return
    out.add(
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]}
    )


def _reasoning(block: dict[str, Any]) -> dict[str, Any] | None:
    """The reasoning item a thinking block of ours stands for."""
    unpacked = unpack_reasoning(block.get("signature"))
    if unpacked is None:
        return None
    item_id, encrypted = unpacked
    thinking = block.get("thinking")
    item: dict[str, Any] = {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": thinking}]
        if isinstance(thinking, str) and thinking
        else [],
    }
    if item_id is not None:
        item["id"] = item_id
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def _tools(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            # Server tools (web_search_20250305, code_execution…) and
            # Anthropic-defined client tools run or are shaped on
            # Anthropic's side only.
            dropped.append(f"{where} ({kind})")
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where}.name must be a non-empty string", param=where)
        schema = tool.get("input_schema")
        mapped: dict[str, Any] = {
            "type": "function",
            "name": name,
            "parameters": schema if isinstance(schema, dict) else {"type": "object"},
            "strict": False,
        }
        if isinstance(tool.get("description"), str):
            mapped["description"] = tool["description"]
        out.append(mapped)
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool]:
    """The Responses C{tool_choice} and whether parallel calls are off."""
    if not isinstance(choice, dict):
        raise InvalidRequest("tool_choice: must be an object", param="tool_choice")
    kind = choice.get("type")
    serial = choice.get("disable_parallel_tool_use") is True
    if kind == "auto":
        return "auto", serial
    if kind == "any":
        return "required", serial
    if kind == "none":
        return "none", serial
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "name": choice["name"]}, serial
    raise InvalidRequest(f"tool_choice.type {kind!r} is not supported", param="tool_choice")


_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def _effort(thinking: Any, output: Any = None) -> str | None:
    """
    C{thinking} as C{reasoning.effort}: the budget's size class (under 4096
    low, under 16384 medium, above high); C{adaptive} the effort the client
    picked in C{output_config.effort} (Claude Code's C{--effort}; C{max} is
    the hub's C{high}), else medium.
    """
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "adaptive":
        picked = output.get("effort") if isinstance(output, dict) else None
        return _EFFORTS.get(picked, "medium") if isinstance(picked, str) else "medium"
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


def _safety_identifier(user_id: str) -> str:
    """C{metadata.user_id} within OpenAI's 64 characters, stable per user."""
    if len(user_id) <= SAFETY_IDENTIFIER_MAX:
        return user_id
    return "sha256:" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:48]


def messages_to_responses(body: Any, *, upstream_model: str | None = None) -> HubRequest:
    """
    @param upstream_model: the upstream's name for the model.
    @raise InvalidRequest: naming the offending field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    converted = _messages(body.get("messages"))
    dropped = converted.dropped
    out: dict[str, Any] = {
        "model": upstream_model or model,
        "input": converted.items,
        "stream": True,
        "store": False,
        "max_output_tokens": max_tokens,
    }
    system = body.get("system")
    if system:
        instructions = _instructions(system, dropped)
        if instructions:
            out["instructions"] = instructions
    if body.get("tools"):
        out["tools"] = _tools(body["tools"], dropped)
        if not out["tools"]:
            del out["tools"]
    choice = body.get("tool_choice")
    if choice is not None:
        mapped, serial = _tool_choice(choice)
        if "tools" in out:
            out["tool_choice"] = mapped
            if serial:
                out["parallel_tool_calls"] = False
    effort = _effort(body.get("thinking"), body.get("output_config"))
    if effort is not None:
        out["reasoning"] = {"effort": effort, "summary": "auto"}
        out["include"] = ["reasoning.encrypted_content"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        if metadata["user_id"]:
            out["safety_identifier"] = _safety_identifier(metadata["user_id"])
    output = body.get("output_config")
    if isinstance(output, dict):
        dropped += [f"output_config.{k}" for k in output if k != "effort"]
    dropped += [k for k in _DROPPED if body.get(k) is not None]
    dropped += sorted(k for k in body if k not in _KNOWN)
    return HubRequest(
        body=out,
        model=model,
        client_stream=body.get("stream") is True,
        dropped_fields=dropped,
        thinking=effort is not None,
    )


__all__ = ["HubRequest", "messages_to_responses"]
