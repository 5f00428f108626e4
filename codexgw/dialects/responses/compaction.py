# -*- test-case-name: tests.http.test_compact -*-
"""
Compaction, the hub's side of it: the C{compaction} item a gateway hands
out holds the summary of a conversation in a sealed token, and comes back
later as input, where it is expanded to that summary for an upstream that
never saw the conversation.

Pure: the summary request is a hub request body, the answers are hub
objects and events; sending and reading are the edge's
(L{codexgw.http.compact}).

The token is C{cgwc1:} + base64url(JSON C{{"s": summary}}) + C{.} + an
HMAC-SHA256 of it with the gateway's seal key (C{server.seal_key}, one
secret shared by replicas, so any replica expands any replica's token). A
token that fails verification is refused with a 400: a client can hand back
no summary the gateway did not write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import orjson

from codexgw.errors import InvalidRequest

COMPACTION_TOKEN_PREFIX = "cgwc1:"

DEFAULT_PROMPT = (
    "You are performing a CONTEXT CHECKPOINT COMPACTION. Write a handoff summary of the "
    "conversation above for another LLM that will resume the task. Include the current "
    "progress and the key decisions made, important context, constraints and user "
    "preferences, what remains to be done (clear next steps), and any data, examples or "
    "references needed to continue. Be concise and structured. Answer with the summary only."
)
"""The gateway's own summary prompt (C{server.compaction_prompt} overrides it)."""

SUMMARY_PREFIX = (
    "Another language model started to solve this problem and produced a summary of its "
    "work so far (the earlier conversation was compacted into it):\n\n"
)
"""What precedes an expanded summary in the message an upstream is sent."""

_DOMAIN = b"codexgw compaction v1\x00"

# What a summary request keeps of the client's body: the rest (tools, text
# format, service tier, include, ...) is about the turn, not the summary.
_KEPT_FIELDS = ("model", "instructions", "reasoning", "prompt_cache_key", "user")


def _sign(payload: bytes, key: bytes) -> str:
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).hexdigest()


def seal_compaction(summary: str, key: bytes) -> str:
    """The C{encrypted_content} of a C{compaction} item holding C{summary}."""
    payload = base64.urlsafe_b64encode(orjson.dumps({"s": summary})).rstrip(b"=")
    return f"{COMPACTION_TOKEN_PREFIX}{payload.decode('ascii')}.{_sign(payload, key)}"


def unseal_compaction(token: object, key: bytes) -> str | None:
    """The summary in a token this gateway (or a replica) sealed, else L{None}."""
    if not isinstance(token, str) or not token.startswith(COMPACTION_TOKEN_PREFIX):
        return None
    payload, dot, sig = token[len(COMPACTION_TOKEN_PREFIX) :].partition(".")
    if not dot:
        return None
    raw = payload.encode("ascii", "replace")
    if not hmac.compare_digest(_sign(raw, key), sig):
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    summary = value.get("s") if isinstance(value, dict) else None
    return summary if isinstance(summary, str) else None


def expand_compaction(item: dict[str, Any], key: bytes | None, where: str) -> str:
    """
    The text a C{compaction} input item stands for, for an upstream that
    takes messages.

    @param where: the item's path in the request, for the error's C{param}.
    @raise InvalidRequest: the token is not one this gateway sealed with
        C{key} (tampered, another gateway's, or OpenAI's own).
    """
    param = f"{where}.encrypted_content"
    summary = unseal_compaction(item.get("encrypted_content"), key) if key else None
    if summary is None:
        raise InvalidRequest(
            f"{param} failed verification: it is not a compaction this gateway produced",
            param=param,
        )
    return SUMMARY_PREFIX + summary


def is_trigger(body: dict[str, Any]) -> bool:
    """Whether a create body asks for a compaction (the Codex CLI's C{compaction_trigger})."""
    items = body.get("input")
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") == "compaction_trigger" for i in items
    )


def summary_request(body: dict[str, Any], prompt: str) -> dict[str, Any]:
    """
    The hub request that asks a model to summarise C{body}'s input: the
    conversation (triggers left out, earlier compactions kept, to be
    expanded), then C{prompt} as the last user message; no tools.
    """
    items = body.get("input")
    if isinstance(items, str):
        conversation: list[Any] = [{"type": "message", "role": "user", "content": items}]
    elif isinstance(items, list):
        conversation = [
            i for i in items if not (isinstance(i, dict) and i.get("type") == "compaction_trigger")
        ]
    else:
        conversation = []
    request = {k: body[k] for k in _KEPT_FIELDS if body.get(k) is not None}
    request["input"] = [
        *conversation,
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
    ]
    request["stream"] = False
    request["store"] = False
    return request


def _user_content(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    return []


def kept_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The user messages of C{body}'s input, as output items, in order."""
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list):
        return []
    return [
        {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex}",
            "status": "completed",
            "role": "user",
            "content": _user_content(i.get("content")),
        }
        for i in items
        if isinstance(i, dict) and i.get("type", "message") == "message" and i.get("role") == "user"
    ]


def compaction_item(summary: str, key: bytes) -> dict[str, Any]:
    """The one C{compaction} output item holding C{summary}, sealed."""
    return {
        "type": "compaction",
        "id": f"cmp_{uuid.uuid4().hex}",
        "encrypted_content": seal_compaction(summary, key),
    }


def compaction_resource(
    output: list[dict[str, Any]], usage: dict[str, Any], created_at: int
) -> dict[str, Any]:
    """The answer of C{POST /v1/responses/compact}."""
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response.compaction",
        "created_at": created_at,
        "output": output,
        "usage": usage,
    }


def compaction_done(
    response: dict[str, Any],
    item: dict[str, Any],
    usage: dict[str, Any],
    completed_at: int,
    sequence: int,
) -> list[dict[str, Any]]:
    """
    The end of a Responses stream begun with C{response.created} and
    C{response.in_progress}: C{item} added and done, then
    C{response.completed} with C{item} as its one output item.

    @param response: the response object so far (C{status} C{in_progress},
        no output).
    @param sequence: the first event's C{sequence_number} (how many events
        the stream has had).
    """
    final = {
        **response,
        "status": "completed",
        "completed_at": completed_at,
        "output": [item],
        "usage": usage,
    }
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    for n, event in enumerate(events, sequence):
        event["sequence_number"] = n
    return events


def compaction_turn(
    response: dict[str, Any], item: dict[str, Any], usage: dict[str, Any], completed_at: int
) -> list[dict[str, Any]]:
    """
    A whole Responses stream whose one output item is C{item}: what the
    Codex CLI's remote compaction (a C{compaction_trigger} turn) reads.
    """
    snapshot = {**response, "status": "in_progress", "output": []}
    return [
        {"type": "response.created", "sequence_number": 0, "response": snapshot},
        {"type": "response.in_progress", "sequence_number": 1, "response": snapshot},
        *compaction_done(response, item, usage, completed_at, 2),
    ]


__all__ = [
    "COMPACTION_TOKEN_PREFIX",
    "DEFAULT_PROMPT",
    "SUMMARY_PREFIX",
    "compaction_done",
    "compaction_item",
    "compaction_resource",
    "compaction_turn",
    "expand_compaction",
    "is_trigger",
    "kept_messages",
    "seal_compaction",
    "summary_request",
    "unseal_compaction",
]
