"""
External oracles for what the gateway emits on the Responses side.

Two independent descriptions of the protocol check every response object
and streamed event: the Open Responses pydantic models (C{openresponses_types},
generated from the public specification) and the openai SDK's typed models,
including the SDK's own stream accumulator (C{ResponseStreamState}, what
C{client.responses.stream()} runs), which rejects wrong indices and item
identities. On top, L{codex_rules} pins the Codex CLI behaviours from the
protocol notes that neither schema captures.

Where the two schemas disagree with reality the helpers say so explicitly:
  - Open Responses has no C{custom_tool_call}/C{local_shell_call} items and
    no C{response.reasoning_text.*}/C{response.custom_tool_call_input.*}
    events; those are checked by the openai SDK models only
    (L{OPENAI_ONLY_EVENTS}, L{OPENAI_ONLY_ITEMS}). Any other type that Open
    Responses does not know fails.
  - Open Responses' generated C{JsonSchemaResponseFormat.schema} is typed
    C{None} (a generator bug: the spec says object); it is blanked first.
  - The SDK types C{ResponseError.code} as a closed list that lacks codes
    OpenAI itself sends and the Codex CLI relies on
    (C{context_length_exceeded}); it is checked as a string here and the
    rest of the object by the SDK.
"""

from __future__ import annotations

import copy
from typing import Any

import openresponses_types as orx
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseOutputItem, ResponseStreamEvent
from pydantic import TypeAdapter

_OPENAI_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
_OPENAI_RESPONSE: TypeAdapter[Any] = TypeAdapter(Response)
_OPENAI_ITEM: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)

_OR_EVENTS: dict[str, type[Any]] = {
    "response.created": orx.ResponseCreatedStreamingEvent,
    "response.in_progress": orx.ResponseInProgressStreamingEvent,
    "response.completed": orx.ResponseCompletedStreamingEvent,
    "response.failed": orx.ResponseFailedStreamingEvent,
    "response.incomplete": orx.ResponseIncompleteStreamingEvent,
    "response.output_item.added": orx.ResponseOutputItemAddedStreamingEvent,
    "response.output_item.done": orx.ResponseOutputItemDoneStreamingEvent,
    "response.content_part.added": orx.ResponseContentPartAddedStreamingEvent,
    "response.content_part.done": orx.ResponseContentPartDoneStreamingEvent,
    "response.output_text.delta": orx.ResponseOutputTextDeltaStreamingEvent,
    "response.output_text.done": orx.ResponseOutputTextDoneStreamingEvent,
    "response.function_call_arguments.delta": orx.ResponseFunctionCallArgumentsDeltaStreamingEvent,
    "response.function_call_arguments.done": orx.ResponseFunctionCallArgumentsDoneStreamingEvent,
    "response.reasoning_summary_part.added": orx.ResponseReasoningSummaryPartAddedStreamingEvent,
    "response.reasoning_summary_part.done": orx.ResponseReasoningSummaryPartDoneStreamingEvent,
    "response.reasoning_summary_text.delta": orx.ResponseReasoningSummaryDeltaStreamingEvent,
    "response.reasoning_summary_text.done": orx.ResponseReasoningSummaryDoneStreamingEvent,
}
OPENAI_ONLY_EVENTS = frozenset(
    {
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    }
)
OPENAI_ONLY_ITEMS = frozenset({"custom_tool_call", "local_shell_call", "tool_search_call"})
TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})


class OracleError(AssertionError):
    """What we emitted breaks the protocol."""


def _for_openai(response: dict[str, Any]) -> dict[str, Any]:
    error = response.get("error")
    if error is None:
        return response
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        raise OracleError(f"response.error needs string code and message: {error!r}")
    return {**response, "error": {**error, "code": "server_error"}}


def _for_open_responses(response: dict[str, Any]) -> dict[str, Any]:
    output = []
    for item in response.get("output", []):
        if item.get("type") in OPENAI_ONLY_ITEMS:
            _OPENAI_ITEM.validate_python(item)
        else:
            output.append(item)
    text = response.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        if text["format"].get("type") == "json_schema":
            text = {**text, "format": {**text["format"], "schema": None}}
    return {**response, "output": output, "text": text}


def check_response(response: dict[str, Any]) -> None:
    """Validate one response object against both schemas and Codex's rules."""
    _OPENAI_RESPONSE.validate_python(_for_openai(response))
    orx.ResponseResource.model_validate(_for_open_responses(response))
    codex_rules(response)


def codex_rules(response: dict[str, Any]) -> None:
    """The Codex CLI behaviours from the protocol notes that schemas miss."""
    if not isinstance(response.get("id"), str):
        raise OracleError("response.id must be a string")
    usage = response.get("usage")
    if usage is not None:
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            if type(usage.get(key)) is not int:
                raise OracleError(f"usage.{key} must be an integer: {usage!r}")
        if type(usage["input_tokens_details"]["cached_tokens"]) is not int:
            raise OracleError("usage.input_tokens_details.cached_tokens must be an integer")
        if type(usage["output_tokens_details"]["reasoning_tokens"]) is not int:
            raise OracleError("usage.output_tokens_details.reasoning_tokens must be an integer")
    details = response.get("incomplete_details")
    if details is not None and details.get("reason") == "interrupted":
        raise OracleError("never emit incomplete reason 'interrupted' (Codex re-sends at once)")
    if response.get("status") == "failed" and not (response.get("error") or {}).get("code"):
        raise OracleError("a failed response must carry error.code")
    for item in response.get("output", []):
        codex_item_rules(item)


def codex_item_rules(item: dict[str, Any]) -> None:
    kind = item.get("type")
    if kind == "message":
        if not isinstance(item.get("content"), list):
            raise OracleError("message content must be a list of parts")
        for part in item["content"]:
            if part.get("type") != "output_text":
                raise OracleError(f"assistant parts must be output_text, not {part.get('type')}")
    elif kind == "function_call":
        if not isinstance(item.get("arguments"), str):
            raise OracleError("function_call.arguments must be a string")
        if not item.get("call_id"):
            raise OracleError("function_call needs a call_id")
    elif kind == "custom_tool_call":
        if not isinstance(item.get("input"), str) or not item.get("call_id"):
            raise OracleError("custom_tool_call needs a string input and a call_id")
    elif kind == "reasoning":
        if not isinstance(item.get("summary"), list):
            raise OracleError("reasoning items need summary: [] (Codex drops them otherwise)")


def check_event(event: dict[str, Any]) -> Any:
    """Validate one event; returns the openai SDK's parsed event."""
    kind = event.get("type")
    if type(event.get("sequence_number")) is not int:
        raise OracleError(f"{kind} lacks an integer sequence_number")
    model = _OR_EVENTS.get(kind)  # type: ignore[arg-type]
    if model is not None:
        payload = event
        if "response" in event:
            payload = {**event, "response": _for_open_responses(event["response"])}
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") in OPENAI_ONLY_ITEMS:
            payload = {**event, "item": None}
        model.model_validate(payload)
    elif kind not in OPENAI_ONLY_EVENTS:
        raise OracleError(f"unknown event type {kind!r}")
    if "response" in event:
        codex_rules(event["response"])
        event = {**event, "response": _for_openai(event["response"])}
    return _OPENAI_EVENT.validate_python(event)


_PART_DELTAS = {
    "response.output_text.delta": ("content", "output_text"),
    "response.output_text.done": ("content", "output_text"),
    "response.reasoning_text.delta": ("content", "reasoning_text"),
    "response.reasoning_text.done": ("content", "reasoning_text"),
    "response.reasoning_summary_text.delta": ("summary", "summary_text"),
    "response.reasoning_summary_text.done": ("summary", "summary_text"),
}


def node_accumulator(events: list[dict[str, Any]]) -> None:
    """
    What the openai Node SDK's stream accumulator (C{ResponseStream}) needs
    and the Python one does not check: every text, reasoning text and
    summary delta goes into a part that was added before it, at its index
    and of its type (else it throws 'missing content at index 0'), and
    every part that was added is done before its item.
    """
    parts: dict[tuple[int, str, int], str] = {}
    open_parts: set[tuple[int, str, int]] = set()
    for event in events:
        kind = event["type"]
        if kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
            where = "content" if kind == "response.content_part.added" else "summary"
            index = event["content_index" if where == "content" else "summary_index"]
            key = (event["output_index"], where, index)
            if key in parts:
                raise OracleError(f"{kind}: {where} part {index} added twice")
            parts[key] = event["part"]["type"]
            open_parts.add(key)
        elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
            where = "content" if kind == "response.content_part.done" else "summary"
            index = event["content_index" if where == "content" else "summary_index"]
            key = (event["output_index"], where, index)
            if key not in open_parts or parts[key] != event["part"]["type"]:
                raise OracleError(f"{kind} for a {where} part {index} that is not open")
            open_parts.discard(key)
        elif kind in _PART_DELTAS:
            where, part_type = _PART_DELTAS[kind]
            index = event["content_index" if where == "content" else "summary_index"]
            key = (event["output_index"], where, index)
            if key not in open_parts:
                raise OracleError(f"{kind}: missing {where} at index {index}")
            if parts[key] != part_type:
                raise OracleError(f"{kind}: {where} part {index} is {parts[key]}, not {part_type}")
        elif kind == "response.output_item.done":
            if any(key[0] == event["output_index"] for key in open_parts):
                raise OracleError(f"output_item.done {event['output_index']} with parts open")


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """
    Validate a whole stream: every event, consecutive sequence numbers from
    0, created then in_progress first, exactly one terminal event and last,
    added/done pairs with the same item id, the final response's C{output}
    equal to the items of C{output_item.done} in C{output_index} order, and
    the SDK's accumulator agreeing. Returns the final response.
    """
    if not events:
        raise OracleError("no events")
    events = copy.deepcopy(events)
    for n, event in enumerate(events):
        if event.get("sequence_number") != n:
            raise OracleError(f"event {n} has sequence_number {event.get('sequence_number')}")
    types = [e["type"] for e in events]
    if types[:2] != ["response.created", "response.in_progress"]:
        raise OracleError(f"stream must open with created, in_progress: {types[:2]}")
    terminals = [t for t in types if t in TERMINAL]
    if len(terminals) != 1 or types[-1] not in TERMINAL:
        raise OracleError(f"exactly one terminal event, last: {terminals}")
    added: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "response.output_item.added":
            if event["output_index"] in added:
                raise OracleError(f"output_index {event['output_index']} added twice")
            added[event["output_index"]] = event["item"]
        elif event["type"] == "response.output_item.done":
            index = event["output_index"]
            if index not in added or added[index]["id"] != event["item"]["id"]:
                raise OracleError(f"output_item.done {index} does not match its added item")
            done[index] = event["item"]
        elif "output_index" in event and event["output_index"] not in added:
            raise OracleError(f"{event['type']} before its item was added")
        elif "item_id" in event and added[event["output_index"]]["id"] != event["item_id"]:
            raise OracleError(f"{event['type']} names the wrong item_id")
    final = events[-1]["response"]
    if sorted(added) != list(range(len(added))):
        raise OracleError(f"items added out of order: {sorted(added)}")
    if set(added) != set(done):
        # Only a failed response may leave items unfinished: they are
        # abandoned (never closed as if whole), and the output that follows
        # holds just the finished ones.
        if final["status"] != "failed":
            raise OracleError(f"items added {sorted(added)} but done {sorted(done)}")
    if final["output"] != [done[i] for i in sorted(done)]:
        raise OracleError("final response.output differs from the streamed items")
    check_response(final)
    node_accumulator(events)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(check_event(event))
    return final  # type: ignore[no-any-return]
