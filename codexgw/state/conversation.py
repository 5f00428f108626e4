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


def turnInput(body: dict[str, Any], response_id: str | None = None) -> list[dict[str, Any]]:
    """
    This turn's input as items, each with an id (input_items lists them).

    @param response_id: the id this turn's response will have; an item the
        client sent without an id is then named after it
        (C{msg_<base>_in<n>}), so that an C{item_reference} to it finds its
        turn (L{responseIdOf}). Without it the id is random.
    """
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}
        ]
    if not isinstance(raw, list):
        return []
    base = None
    if response_id is not None:
        base = response_id[5:] if response_id.startswith("resp_") else response_id
    items = []
    for n, item in enumerate(raw):
        if isinstance(item, dict):
            if "id" not in item:
                prefix = "msg" if item.get("type", "message") == "message" else "item"
                name = os.urandom(12).hex() if base is None else f"{base}_in{n}"
                item = {"id": f"{prefix}_{name}", **item}
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
    The id of the response an item of a bridged turn belongs to: its output
    items are named C{<prefix>_<base>_<n>} where the response is
    C{resp_<base>} (L{codexgw.dialects.chat.stream_to_hub}), the input
    items it named C{<prefix>_<base>_in<n>} (L{turnInput}); L{None} for an
    id of any other form.
    """
    _, sep, rest = item_id.partition("_")
    base, sep, counter = rest.rpartition("_")
    counter = counter[2:] if counter.startswith("in") else counter
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


def duplicateItem(item_id: str) -> InvalidRequest:
    """OpenAI's answer to an input holding an item twice (400)."""
    return InvalidRequest(
        f"Duplicate item found with id {item_id}. Remove duplicate items from your input"
        " and try again.",
        param="input",
    )


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

    An id is looked for in the stored response its form names
    (L{responseIdOf}): that turn's output items, then its input items. A
    reference to an item the input already holds (in C{known}, the
    conversation rebuilt from C{previous_response_id}, or in C{items}) is
    refused as OpenAI refuses it: sent on, the upstream would read it twice.

    @param store: the response store, or L{None} without a backend (every
        reference is then unknown).
    @param owner: the key making the request; another key's turn must look
        exactly like an unknown one.
    @param stored: the request's own C{store}, which OpenAI's message for an
        unknown item mentions when false.
    @raise InvalidRequest: a reference without a string id, to an item the
        input already holds, or to one that is unknown, expired, or another
        key's (as OpenAI answers each).
    """
    if not any(isReference(item) for item in items):
        return items
    held = {
        item.get("id")
        for item in [*known, *(item for item in items if not isReference(item))]
        if isinstance(item, dict)
    }
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
        if item_id in held:
            raise duplicateItem(item_id)
        found = None
        rid = responseIdOf(item_id)
        if store is not None and rid is not None:
            if rid not in records:
                record = await store.get(rid)
                records[rid] = record if record is not None and record.owner == owner else None
            record = records[rid]
            if record is not None:
                found = _find(item_id, record)
        if found is None:
            raise itemNotFound(item_id, stored)
        held.add(item_id)
        resolved.append(dict(found))
    return resolved


def _find(item_id: str, record: StoredResponse) -> dict[str, Any] | None:
    for item in [*(record.response.get("output") or []), *record.input_items]:
        if isinstance(item, dict) and item.get("id") == item_id:
            return item
    return None
