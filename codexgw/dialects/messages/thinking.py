# -*- test-case-name: tests.dialects.messages.test_round_trip -*-
"""
Thinking blocks carried through the hub as reasoning items, and back.

With thinking on, Anthropic refuses a tool loop unless the assistant
message holding the C{tool_use} starts with its thinking block unchanged,
signature included. The hub's reasoning item has one opaque field that
clients hand back as they got it, C{encrypted_content}; the block goes
there whole (L{seal_block}), so a later turn can send it back byte for
byte with no server state (L{unseal_block}). Anthropic's own signature is
what makes a changed block fail, so the token needs no HMAC of ours.

The other way, a Messages client's thinking block stands for a hub
reasoning item (from a Responses upstream): its C{signature} is that
item's id and C{encrypted_content}, packed by L{pack_reasoning} so that
L{unpack_reasoning} can restore the item when the client sends the block
back.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

BLOCK_PREFIX = "cgwa1:"
"""An Anthropic thinking block, whole, in a hub C{encrypted_content}."""

REASONING_PREFIX = "cgwr1:"
"""A hub reasoning item's id and C{encrypted_content}, in a Messages C{signature}."""


def _pack(prefix: str, value: dict[str, Any]) -> str:
    return prefix + base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode("ascii")


def _unpack(prefix: str, token: object) -> dict[str, Any] | None:
    if not isinstance(token, str) or not token.startswith(prefix):
        return None
    payload = token[len(prefix) :]
    try:
        value = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def seal_block(block: dict[str, Any]) -> str:
    """The C{encrypted_content} that carries a C{thinking} or C{redacted_thinking} block."""
    if block.get("type") == "redacted_thinking":
        return _pack(BLOCK_PREFIX, {"r": str(block.get("data") or "")})
    return _pack(
        BLOCK_PREFIX,
        {"t": str(block.get("thinking") or ""), "s": str(block.get("signature") or "")},
    )


def unseal_block(token: object) -> dict[str, Any] | None:
    """
    The thinking block in one of our tokens, as Anthropic takes it back;
    L{None} for anything else (OpenAI's blobs, the Chat spoke's sealed
    reasoning), which means nothing to a Messages upstream.
    """
    value = _unpack(BLOCK_PREFIX, token)
    if value is None:
        return None
    if isinstance(value.get("r"), str):
        return {"type": "redacted_thinking", "data": value["r"]}
    thinking, signature = value.get("t"), value.get("s")
    if not isinstance(thinking, str) or not isinstance(signature, str):
        return None
    return {"type": "thinking", "thinking": thinking, "signature": signature}


def pack_reasoning(item_id: object, encrypted: object) -> str:
    """The C{signature} of a thinking block standing for a hub reasoning item."""
    value: dict[str, Any] = {}
    if isinstance(item_id, str) and item_id:
        value["i"] = item_id
    if isinstance(encrypted, str) and encrypted:
        value["e"] = encrypted
    return _pack(REASONING_PREFIX, value)


def unpack_reasoning(signature: object) -> tuple[str | None, str | None] | None:
    """
    (item id, C{encrypted_content}) from a signature L{pack_reasoning}
    made; L{None} for any other signature (Anthropic's own).
    """
    value = _unpack(REASONING_PREFIX, signature)
    if value is None:
        return None
    item_id, encrypted = value.get("i"), value.get("e")
    return (
        item_id if isinstance(item_id, str) else None,
        encrypted if isinstance(encrypted, str) else None,
    )
