# -*- test-case-name: tests.state.test_store,tests.http.test_item_reference -*-
"""
Rebuilding a conversation from C{previous_response_id}, for upstreams that
keep no state: every earlier turn's input items and output items, oldest
first, then this turn's input.

And resolving C{item_reference} input items (C{{"type": "item_reference",
"id": …}}, or OpenAI's shorthand C{{"id": …}}) to the stored items they
name, so the upstream's translator never sees one: clients that assume
C{store: true} (the Vercel AI SDK) send the ids of earlier output items
instead of the items themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from codexgw.errors import InvalidRequest, NotFound
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


def isReference(item: object) -> bool:
    """
    Whether an input item is an C{item_reference}: typed so, or OpenAI's
    shorthand, an item with an id but neither a type nor a role (a message
    without a type has a role).
    """
    if not isinstance(item, dict):
        return False
    kind = item.get("type")
    return kind == "item_reference" or (kind is None and "role" not in item and "id" in item)


def hasReferences(body: Mapping[str, Any]) -> bool:
    """Whether a create body's input holds an C{item_reference}."""
    raw = body.get("input")
    return isinstance(raw, list) and any(isReference(item) for item in raw)


def responseIdOf(item_id: str) -> str | None:
    """
    The id of the response an output item of the bridge belongs to: its
    items are named C{<prefix>_<base>_<n>} where the response is
    C{resp_<base>} (L{codexgw.dialects.chat.stream_to_hub}); L{None} for an
    id of any other form.
    """
    _, sep, rest = item_id.partition("_")
    base, sep, counter = rest.rpartition("_")
    if not sep or not base or not counter.isdigit():
        return None
    return f"resp_{base}"


def itemNotFound(item_id: str, stored: bool) -> InvalidRequest:
    """OpenAI's answer to a reference to an item it does not have (400)."""
    message = f"Item with id '{item_id}' not found."
    if not stored:
        message += (
            " Items are not persisted when `store` is set to false. Try again with"
            " `store` set to true, or remove this item from your input."
        )
    return InvalidRequest(message, param="input")


async def resolveReferences(
    store: IResponseStore | None,
    items: list[dict[str, Any]],
    owner: str,
    *,
    known: Iterable[dict[str, Any]] = (),
    stored: bool = True,
) -> list[dict[str, Any]]:
    """
    C{items} with each C{item_reference} replaced by the item it names.

    An id is looked for among C{known} (the conversation rebuilt from
    C{previous_response_id}), then in the stored response its form names
    (L{responseIdOf}): that turn's output items, then its input items.

    @param store: the response store, or L{None} without a backend (every
        reference is then unknown).
    @param owner: the key making the request; another key's turn must look
        exactly like an unknown one.
    @param stored: the request's own C{store}, which OpenAI's message for an
        unknown item mentions when false.
    @raise InvalidRequest: a reference without a string id, or to an item
        that is unknown, expired, or another key's (as OpenAI answers it).
    """
    if not any(isReference(item) for item in items):
        return items
    byId = {item["id"]: item for item in known if isinstance(item.get("id"), str)}
    records: dict[str, StoredResponse | None] = {}
    resolved = []
    for i, item in enumerate(items):
        if not isReference(item):
            resolved.append(item)
            continue
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise InvalidRequest(
                f"input[{i}].id must be a non-empty string", param=f"input[{i}].id"
            )
        found = byId.get(item_id)
        rid = responseIdOf(item_id)
        if found is None and store is not None and rid is not None:
            if rid not in records:
                record = await store.get(rid)
                records[rid] = record if record is not None and record.owner == owner else None
            record = records[rid]
            if record is not None:
                found = _find(item_id, record)
        if found is None:
            raise itemNotFound(item_id, stored)
        resolved.append(dict(found))
    return resolved


def _find(item_id: str, record: StoredResponse) -> dict[str, Any] | None:
    for item in [*(record.response.get("output") or []), *record.input_items]:
        if isinstance(item, dict) and item.get("id") == item_id:
            return item
    return None
