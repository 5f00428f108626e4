# -*- test-case-name: tests.dialects.responses.test_continuation -*-
"""
What a WebSocket connection remembers of its own turns, so that a turn can
continue the previous one with C{previous_response_id} and only its new
input, even with C{store: false} (Open Responses 2026-04, WebSocket mode).

Pure: the transport (L{codexgw.http.websocket}) decides when a turn starts
and ends; this module says what a continued turn's input is, what is kept
and what is forgotten.

A kept turn holds its whole history (the input it was sent, earlier turns
included, and its output), so a continuation needs one lookup, never a walk
of a chain. The items are shared with the turn before (the same objects),
so keeping several turns costs little more than keeping the last; the
bytes bound counts each turn's own request and output as they were sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from codexgw.dialects.responses.echo import echo
from codexgw.errors import InvalidRequest

# Fields the specification forbids in a response.create frame and that
# clients (the Codex CLI) send all the same: a socket always streams.
IGNORED_FRAME_FIELDS = ("type", "stream", "stream_options", "background", "stream_id")

# Terminal statuses whose output a later turn may continue from.
_CONTINUABLE = frozenset({"completed", "incomplete"})


def createBody(frame: Mapping[str, Any]) -> dict[str, Any]:
    """A C{response.create} frame as the create body an HTTP client would POST."""
    body = {k: v for k, v in frame.items() if k not in IGNORED_FRAME_FIELDS}
    body["stream"] = True
    return body


def inputItems(value: object) -> list[Any]:
    """A create body's C{input} as items (a bare string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise InvalidRequest("'input' must be a string or an array of items", param="input")


@attrs.define(slots=True)
class Turn:
    """A kept turn: everything a continuation of it sends before its own input."""

    id: str
    history: list[Any]
    size: int


@attrs.define
class ConnectionCache:
    """
    The turns of one connection, newest last, bounded by count and bytes.

    Past either bound the oldest turns are forgotten: continuing from one of
    them is C{previous_response_not_found} unless the response store holds
    it. The newest turn is always kept, whatever its size, since it is the
    one a client continues from.
    """

    maxTurns: int
    maxBytes: int
    _turns: OrderedDict[str, Turn] = attrs.field(factory=OrderedDict, init=False)
    _bytes: int = attrs.field(default=0, init=False)

    def __len__(self) -> int:
        return len(self._turns)

    def __contains__(self, rid: object) -> bool:
        return rid in self._turns

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, rid: str) -> Turn | None:
        return self._turns.get(rid)

    def keep(self, rid: str, sent: list[Any], output: list[Any], size: int) -> None:
        """Remember turn C{rid}: the input it was C{sent}, then its C{output}."""
        self.evict(rid)
        turn = Turn(rid, [*sent, *output], size)
        self._turns[rid] = turn
        self._bytes += size
        while len(self._turns) > 1 and (
            len(self._turns) > self.maxTurns or self._bytes > self.maxBytes
        ):
            _, oldest = self._turns.popitem(last=False)
            self._bytes -= oldest.size

    def evict(self, rid: str) -> None:
        """Forget C{rid}: a continuation of it failed, or it is being replaced."""
        turn = self._turns.pop(rid, None)
        if turn is not None:
            self._bytes -= turn.size


def continued(body: dict[str, Any], turn: Turn) -> dict[str, Any]:
    """
    C{body}, continuing C{turn}: its history, then the new input, and no
    C{previous_response_id} (the upstream is sent the whole conversation,
    whatever it keeps itself).
    """
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = [*turn.history, *inputItems(body.get("input"))]
    return out


def continuable(response: Mapping[str, Any]) -> bool:
    """Whether a terminal event's response may be continued from."""
    return response.get("status") in _CONTINUABLE


def warmupResponse(rid: str, body: Mapping[str, Any], now: int) -> dict[str, Any]:
    """
    The response of a C{generate: false} turn: nothing generated, nothing
    billed, the request's settings echoed as a real response would.
    """
    return {
        "id": rid,
        "object": "response",
        "created_at": now,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "model": body.get("model"),
        "output": [],
        "usage": None,
        **echo(dict(body)),
        "store": body.get("store") is not False,
    }


def warmupEvents(response: dict[str, Any], now: int) -> list[dict[str, Any]]:
    """C{response.created} then C{response.completed}, empty output, zero usage."""
    created = {"type": "response.created", "sequence_number": 0, "response": response}
    done = dict(
        response,
        status="completed",
        completed_at=now,
        usage={
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
    )
    return [created, {"type": "response.completed", "sequence_number": 1, "response": done}]


_OUTPUTS = {
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
}


def checkToolOutputs(items: object) -> None:
    """
    Refuse a tool output that answers no call of its conversation, as
    OpenAI does (400): sent on, it would be an orphan tool message that
    providers refuse or, worse, read as a new instruction.

    A conversation that was compacted (its earlier items replaced by a
    C{compaction} item) or that names items by reference is not checked:
    the calls it answers may be inside what it no longer spells out.
    """
    if not isinstance(items, list):
        return
    calls: dict[str, set[str]] = {"function_call": set(), "custom_tool_call": set()}
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in ("compaction", "item_reference"):
            return
        if kind in calls:
            cid = item.get("call_id")
            if isinstance(cid, str):
                calls[kind].add(cid)
    for item in items:
        if not isinstance(item, dict):
            continue
        call = _OUTPUTS.get(item.get("type"))  # type: ignore[arg-type]
        if call is None:
            continue
        cid = item.get("call_id")
        if isinstance(cid, str) and cid not in calls[call]:
            raise InvalidRequest(
                f"No tool call found for {item['type'].replace('_', ' ')} with call_id {cid}.",
                param="input",
            )


__all__ = [
    "IGNORED_FRAME_FIELDS",
    "ConnectionCache",
    "Turn",
    "checkToolOutputs",
    "continuable",
    "continued",
    "createBody",
    "inputItems",
    "warmupEvents",
    "warmupResponse",
]
