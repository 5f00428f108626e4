# -*- test-case-name: tests.dialects.responses.test_validate -*-
"""
The types of a Responses create body's fields, declared once.

Every C{POST /v1/responses} body is checked against L{create_fields} before
it is dispatched, bridged to a Chat upstream or relayed to a Responses one.
A field of the wrong type (C{stream: "yes"}, C{previous_response_id: 5},
C{max_output_tokens: "9"}, a tool of a type nobody knows) is refused with a
400 whose C{param} is the field's path, as OpenAI's own API refuses it:
otherwise the bridge would quietly ignore it (and answer something the client
did not ask for), and a relay would spend an upstream attempt to learn the
same thing.

The table follows the OpenAI Responses API reference (the openai SDK's
C{ResponseCreateParams}). What it leaves alone is as deliberate:

  - Fields it does not name pass untouched: clients keep adding fields
    (the Codex CLI's C{client_metadata}), and refusing them would break a
    client the day it upgrades.
  - C{null} passes wherever a field is optional, as the API takes it.
  - Sets of values that grow (C{include} entries, service tiers, hosted tool
    options) are checked for their type only.
  - Input items are checked for their outer shape only (and a message's
    C{phase}, one of L{MESSAGE_PHASES}): what each item
    means is the translator's business on the bridge
    (L{codexgw.dialects.chat.request_from_hub}) and the upstream's on a relay.
  - Tool types: the bridge must know every tool it is handed, to translate
    it or drop it with a log line, so there an unknown type is refused. A
    Responses upstream knows its own tools (OpenAI ships new hosted ones
    often), so a relayed tool only needs a string C{type}.

This costs a few dictionary look-ups per request and nothing per event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from codexgw.errors import InvalidRequest

Check = Callable[[Any, str], None]
"""Checks the value found at a field path; raises L{InvalidRequest}."""

MAX_TOKENS = 2**31 - 1
"""The largest token count any upstream (and a 32-bit field) takes."""

FUNCTION_TOOLS = frozenset({"function", "custom", "local_shell", "namespace"})
"""Tools the bridge turns into Chat functions."""

HOSTED_TOOLS = frozenset(
    {
        "apply_patch",
        "code_interpreter",
        "computer",
        "computer_use_preview",
        "file_search",
        "image_generation",
        "mcp",
        "programmatic_tool_calling",
        "shell",
        "tool_search",
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
    }
)
"""
Tools a Chat upstream cannot run: the bridge drops them, logged and counted
(all but a C{tool_search} with C{execution: "client"}, which the client runs).
"""

TOOL_TYPES = FUNCTION_TOOLS | HOSTED_TOOLS

_CHOICE_HOSTED = frozenset(
    {
        "apply_patch",
        "code_interpreter",
        "computer",
        "computer_use",
        "computer_use_preview",
        "file_search",
        "image_generation",
        "programmatic_tool_calling",
        "shell",
        "web_search_preview",
        "web_search_preview_2025_03_11",
    }
)
"""C{tool_choice} types that name a hosted tool and carry nothing else."""

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# The Codex CLI's own ReasoningSummary has a "none" member besides the API's three.
REASONING_SUMMARIES = ("auto", "concise", "detailed", "none")


# -- the checks ------------------------------------------------------------------


def _kind(value: object) -> str:
    """What a JSON value is, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _shown(value: str) -> str:
    """A client's string, quoted and cut short: error bodies stay small."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _refuse(where: str, expected: str, value: object) -> NoReturn:
    # A number of the right type but out of range is shown itself: "not a
    # number" would contradict "must be a number".
    got = _kind(value)
    if got == "a number":
        got = f"{value!r}"[:40]
    raise InvalidRequest(f"{where} must be {expected}, not {got}", param=where)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def optional(check: Check) -> Check:
    """C{check}, with C{null} accepted as \"not given\"."""

    def checked(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return checked


def boolean(value: Any, where: str) -> None:
    # bool before int: a JSON 1 is no boolean, and True is no count.
    if not isinstance(value, bool):
        _refuse(where, "a boolean", value)


def string(value: Any, where: str) -> None:
    if not isinstance(value, str):
        _refuse(where, "a string", value)


def name(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        _refuse(where, "a non-empty string", value)


def whole(low: int, high: int) -> Check:
    """A count: an integer (or a float with no fraction, as 64.0) in range."""

    def checked(value: Any, where: str) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
            or value != int(value)
        ):
            _refuse(where, f"a whole number from {low} to {high}", value)

    return checked


def number(low: float, high: float) -> Check:
    def checked(value: Any, where: str) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            _refuse(where, f"a number from {low:g} to {high:g}", value)

    return checked


def one_of(*values: str) -> Check:
    expected = "one of " + ", ".join(repr(v) for v in values)

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in values:
            if isinstance(value, str):
                raise InvalidRequest(
                    f"{where} must be {expected}, not {_shown(value)}", param=where
                )
            _refuse(where, expected, value)

    return checked


def array(item: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if not isinstance(value, list):
            _refuse(where, "an array", value)
        for i, entry in enumerate(value):
            item(entry, f"{where}[{i}]")

    return checked


def mapping(item: Check) -> Check:
    """An object whose every value passes C{item} (C{metadata})."""

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _refuse(where, "an object", value)
        for key, entry in value.items():
            item(entry, _join(where, key))

    return checked


def anything(value: Any, where: str) -> None:
    """No constraint (a JSON Schema, whose own rules are the upstream's)."""


def json_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        _refuse(where, "an object", value)


def fields(table: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    """
    An object whose named fields pass their checks, and C{required} ones
    are there. Other keys pass untouched.
    """

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _refuse(where, "an object", value)
        for key, check in table.items():
            if key in value:
                check(value[key], _join(where, key))
            elif key in required:
                at = _join(where, key)
                raise InvalidRequest(f"{at} is required", param=at)

    return checked


def tagged(variants: Mapping[str, Check], *, open_types: bool) -> Check:
    """
    An object told apart by its C{type}: each known type has its own check;
    an unknown (string) type passes only where C{open_types}.
    """
    names = "one of " + ", ".join(repr(v) for v in sorted(variants))

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _refuse(where, "an object", value)
        kind = value.get("type")
        at = _join(where, "type")
        if not isinstance(kind, str):
            _refuse(at, "a string", kind)
        check = variants.get(kind)
        if check is not None:
            check(value, where)
        elif not open_types:
            raise InvalidRequest(f"{at} must be {names}, not {_shown(kind)}", param=at)

    return checked


# -- the Responses create body ---------------------------------------------------


_FUNCTION = fields(
    {
        "name": name,
        "description": optional(string),
        "parameters": optional(json_object),
        "strict": optional(boolean),
    },
    required=("name",),
)

_CUSTOM = fields(
    {
        "name": name,
        "description": optional(string),
        "format": optional(
            tagged(
                {
                    "text": anything,
                    "grammar": fields(
                        {"definition": string, "syntax": one_of("lark", "regex")},
                        required=("definition", "syntax"),
                    ),
                },
                open_types=False,
            )
        ),
    },
    required=("name",),
)

_NAMESPACE = fields(
    {
        "name": name,
        "description": optional(string),
        "tools": array(tagged({"function": _FUNCTION, "custom": _CUSTOM}, open_types=False)),
    },
    required=("name", "tools"),
)


_TOOL_SEARCH = fields(
    {
        "execution": optional(one_of("server", "client")),
        "description": optional(string),
        "parameters": optional(json_object),
    }
)
"""C{tool_search}: a client-executed one becomes a function for a Chat upstream."""


def _tools(bridged: bool) -> Check:
    variants: dict[str, Check] = dict.fromkeys(HOSTED_TOOLS, anything)
    variants.update(function=_FUNCTION, custom=_CUSTOM, namespace=_NAMESPACE, local_shell=anything)
    variants["tool_search"] = _TOOL_SEARCH
    return array(tagged(variants, open_types=not bridged))


def _tool_choice(bridged: bool) -> Check:
    objects = tagged(
        dict.fromkeys(_CHOICE_HOSTED, anything)
        | {
            "function": fields({"name": name, "namespace": optional(string)}, ("name",)),
            "custom": fields({"name": name, "namespace": optional(string)}, ("name",)),
            "mcp": fields({"server_label": name, "name": optional(string)}, ("server_label",)),
            "allowed_tools": fields(
                {"mode": one_of("auto", "required"), "tools": array(json_object)},
                ("mode", "tools"),
            ),
        },
        open_types=not bridged,
    )
    modes = one_of("none", "auto", "required")

    def checked(value: Any, where: str) -> None:
        if isinstance(value, str):
            modes(value, where)
        elif isinstance(value, dict):
            objects(value, where)
        else:
            _refuse(where, "'none', 'auto', 'required' or an object", value)

    return checked


def _string_or(kind: type[dict[str, Any]] | type[list[Any]], other: Check) -> Check:
    """A string, or else a C{kind} passing C{other} (C{input}, C{conversation})."""
    expected = "a string or " + ("an array" if kind is list else "an object")

    def checked(value: Any, where: str) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, kind):
            _refuse(where, expected, value)
        other(value, where)

    return checked


_TEXT_FORMAT = tagged(
    {
        "text": anything,
        "json_object": anything,
        "json_schema": fields(
            {
                "schema": json_object,
                "name": optional(string),
                "description": optional(string),
                "strict": optional(boolean),
            },
            required=("schema",),
        ),
    },
    open_types=False,
)


MESSAGE_PHASES = ("commentary", "final_answer")
"""An assistant message's C{phase} (the 2026-04 specification)."""

_PHASE = optional(one_of(*MESSAGE_PHASES))


_COMPACTION = fields(
    {"id": optional(string), "encrypted_content": string},
    required=("encrypted_content",),
)
"""A C{compaction} input item (C{compaction_trigger} has no fields)."""


def _input_item(value: Any, where: str) -> None:
    """An input item: an object; a message's C{phase}, when given, a known one."""
    json_object(value, where)
    if "phase" in value and value.get("type", "message") == "message":
        _PHASE(value["phase"], _join(where, "phase"))
    if value.get("type") == "compaction":
        # A compaction comes back with the token it went out with (up to 10 MiB);
        # a C{compaction_trigger} carries nothing to check.
        _COMPACTION(value, where)


def create_fields(bridged: bool) -> dict[str, Check]:
    """
    The Responses create body, field by field.

    @param bridged: the body goes to a Chat upstream through the bridge,
        which must know every tool type; else it is relayed as it is.
    """
    return {
        "input": optional(_string_or(list, array(_input_item))),
        "stream": optional(boolean),
        "store": optional(boolean),
        "background": optional(boolean),
        "parallel_tool_calls": optional(boolean),
        "previous_response_id": optional(string),
        "instructions": optional(string),
        "user": optional(string),
        "safety_identifier": optional(string),
        "prompt_cache_key": optional(string),
        "prompt_cache_retention": optional(string),
        "service_tier": optional(string),
        "max_output_tokens": optional(whole(1, MAX_TOKENS)),
        "max_tool_calls": optional(whole(0, MAX_TOKENS)),
        "top_logprobs": optional(whole(0, 20)),
        "temperature": optional(number(0, 2)),
        "top_p": optional(number(0, 1)),
        "presence_penalty": optional(number(-2, 2)),
        "frequency_penalty": optional(number(-2, 2)),
        "truncation": optional(one_of("auto", "disabled")),
        "tools": optional(_tools(bridged)),
        "tool_choice": optional(_tool_choice(bridged)),
        "text": optional(
            fields(
                {
                    "format": optional(_TEXT_FORMAT),
                    "verbosity": optional(one_of("low", "medium", "high")),
                }
            )
        ),
        "reasoning": optional(
            fields(
                {
                    "effort": optional(one_of(*REASONING_EFFORTS)),
                    "summary": optional(one_of(*REASONING_SUMMARIES)),
                    "generate_summary": optional(one_of("auto", "concise", "detailed")),
                }
            )
        ),
        "metadata": optional(mapping(string)),
        "include": optional(array(string)),
        "stream_options": optional(fields({"include_obfuscation": optional(boolean)})),
        "prompt": optional(
            fields(
                {
                    "id": name,
                    "version": optional(string),
                    "variables": optional(mapping(_string_or(dict, json_object))),
                },
                required=("id",),
            )
        ),
        "conversation": optional(_string_or(dict, fields({"id": name}, required=("id",)))),
    }


_TABLES = {True: create_fields(True), False: create_fields(False)}


def check_create(body: Mapping[str, Any], *, bridged: bool) -> None:
    """
    Refuse a Responses create body with a field of the wrong type.

    @param body: the parsed request body (a JSON object).
    @param bridged: see L{create_fields}.
    @raise InvalidRequest: naming the first bad field's path in C{param}.
    """
    for key, check in _TABLES[bridged].items():
        if key in body:
            check(body[key], key)
