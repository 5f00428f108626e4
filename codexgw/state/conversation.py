# -*- test-case-name: tests.state.test_store -*-
"""
Rebuilding a conversation from C{previous_response_id}, for upstreams that
keep no state: every earlier turn's input items and output items, oldest
first, then this turn's input.
"""

from __future__ import annotations

import os
from typing import Any

from codexgw.errors import NotFound
from codexgw.state.store import IResponseStore, StoredResponse

MAX_TURNS = 1000


def turnInput(body: dict[str, Any]) -> list[dict[str, Any]]:
    """This turn's input as items, each with an id (input_items lists them)."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}
        ]
    if not isinstance(raw, list):
        return []
    items = []
    for item in raw:
        if isinstance(item, dict):
            if "id" not in item:
                prefix = "msg" if item.get("type", "message") == "message" else "item"
                item = {"id": f"{prefix}_{os.urandom(12).hex()}", **item}
            if "type" not in item and "role" in item:
                item = {**item, "type": "message"}
            items.append(item)
    return items


def notFound(rid: str) -> NotFound:
    return NotFound(
        f"Previous response with id '{rid}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


async def history(store: IResponseStore, previous: str, owner: str) -> list[dict[str, Any]]:
    """
    The items of every turn up to and including C{previous}.

    @raise NotFound: an id in the chain is unknown, expired, or another
        key's (which must look exactly like unknown).
    """
    turns: list[StoredResponse] = []
    rid: str | None = previous
    while rid is not None and len(turns) < MAX_TURNS:
        record = await store.get(rid)
        if record is None or record.owner != owner:
            raise notFound(previous)
        turns.append(record)
        rid = record.previous_id
    items: list[dict[str, Any]] = []
    for record in reversed(turns):
        items += record.input_items
        items += record.response.get("output") or []
    return items
