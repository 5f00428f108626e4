# -*- test-case-name: tests.dialects.chat.test_request_from_hub -*-
"""
The request's settings as the hub's response object carries them, for any
spoke's stream translator and for answers the gateway makes itself (a
WebSocket warm-up).
"""

from __future__ import annotations

from typing import Any

# Reasoning summary values a response object may carry.
_SUMMARIES = ("auto", "concise", "detailed")


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """
    The request's settings as a response object carries them: every field
    the Open Responses schema requires, with the API's defaults where the
    request said nothing.
    """
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            tools.append(
                {
                    "type": "function",
                    "name": tool.get("name"),
                    "description": tool.get("description"),
                    "parameters": tool.get("parameters"),
                    "strict": tool.get("strict") if isinstance(tool.get("strict"), bool) else None,
                }
            )
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "name": choice.get("name")}
    elif choice not in ("auto", "none", "required"):
        choice = "auto"
    raw_text = body.get("text")
    text: dict[str, Any] = raw_text if isinstance(raw_text, dict) else {}
    fmt = text.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        fmt = {
            "type": "json_schema",
            "name": fmt.get("name") or "response",
            "description": fmt.get("description"),
            "schema": fmt.get("schema"),
            "strict": fmt.get("strict") is True,
        }
    elif not (isinstance(fmt, dict) and fmt.get("type") == "json_object"):
        fmt = {"type": "text"}
    echoed_text: dict[str, Any] = {"format": fmt}
    if text.get("verbosity") in ("low", "medium", "high"):
        echoed_text["verbosity"] = text["verbosity"]
    reasoning = body.get("reasoning")
    parallel = body.get("parallel_tool_calls")
    metadata = body.get("metadata")

    def number(name: str, default: float) -> float:
        value = body.get(name)
        return float(value) if isinstance(value, int | float) else default

    def optional_int(name: str) -> int | None:
        value = body.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def optional_str(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) else None

    return {
        "previous_response_id": optional_str("previous_response_id"),
        "instructions": optional_str("instructions"),
        "tools": tools,
        "tool_choice": choice,
        "truncation": "auto" if body.get("truncation") == "auto" else "disabled",
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "text": echoed_text,
        "top_p": number("top_p", 1.0),
        "presence_penalty": number("presence_penalty", 0.0),
        "frequency_penalty": number("frequency_penalty", 0.0),
        "top_logprobs": optional_int("top_logprobs") or 0,
        "temperature": number("temperature", 1.0),
        # The Codex CLI's summary "none" is no value of the response object's.
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": summary if (summary := reasoning.get("summary")) in _SUMMARIES else None,
        }
        if isinstance(reasoning, dict)
        else None,
        "max_output_tokens": optional_int("max_output_tokens"),
        "max_tool_calls": optional_int("max_tool_calls"),
        "store": body.get("store") is True,
        "background": False,
        "service_tier": "default",
        "metadata": metadata if isinstance(metadata, dict) else {},
        "safety_identifier": optional_str("safety_identifier"),
        "prompt_cache_key": optional_str("prompt_cache_key"),
    }


__all__ = ["echo"]
