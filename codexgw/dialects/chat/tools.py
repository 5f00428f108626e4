# -*- test-case-name: tests.dialects.chat.test_tools -*-
"""
Responses tools to Chat Completions functions, and calls back again.

A Chat upstream knows only C{function} tools named C{^[a-zA-Z0-9_-]{1,64}$}.
The Responses API also has C{namespace} tools (groups of functions whose
calls must come back with C{name} + C{namespace}), C{custom} freeform tools
(whose calls carry a raw C{input} string), C{local_shell}, and hosted tools
that only OpenAI can run. A client-executed C{tool_search} (the Codex CLI's
door to its deferred MCP tools) is a function too, and the tools its
C{tool_search_output} items revealed are added to the request's own, so the
upstream can call them. Each client tool becomes one flat function here,
and L{ToolMap} remembers how to turn a call of that flat name back into what
the client expects. The map is rebuilt from the request alone, so no server
state is needed between a request and its stream.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.errors import InvalidRequest

_VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
NAMESPACE_SEPARATOR = "__"

FUNCTION = "function"
CUSTOM = "custom"
LOCAL_SHELL = "local_shell"
TOOL_SEARCH = "tool_search"

LOCAL_SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The command and its arguments, as an argv list.",
        },
        "workdir": {"type": "string", "description": "Working directory for the command."},
        "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds."},
    },
    "required": ["command"],
    "additionalProperties": False,
}

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}

TOOL_SEARCH_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "Search query for deferred tools."},
        "limit": {"type": "number", "description": "Maximum number of tools to return."},
    },
    "required": ["query"],
    "additionalProperties": False,
}


@attrs.frozen
class ToolTarget:
    """
    What a flat upstream function name stands for on the client's side.

    @ivar kind: L{FUNCTION}, L{CUSTOM}, L{LOCAL_SHELL} or L{TOOL_SEARCH}.
    @ivar name: the client's own tool name (the nested name for a namespace).
    @ivar namespace: the namespace tool's name, or L{None}.
    """

    kind: str
    name: str
    namespace: str | None = None


@attrs.frozen
class ToolMap:
    """
    The reverse mapping from upstream function names to client tools.

    @ivar targets: flat upstream name → L{ToolTarget}.
    @ivar names: (kind, namespace, name) → flat upstream name.
    """

    targets: dict[str, ToolTarget] = attrs.field(factory=dict)
    names: dict[tuple[str, str | None, str], str] = attrs.field(factory=dict)

    def target(self, flat: str) -> ToolTarget:
        """
        The client tool a call of C{flat} belongs to. A name the request did
        not offer (a model inventing a tool) passes through as a function, so
        the client reports it rather than the bridge hiding it.
        """
        found = self.targets.get(flat)
        if found is not None:
            return found
        return ToolTarget(FUNCTION, flat)

    def upstream_name(self, kind: str, name: str, namespace: str | None = None) -> str:
        """The flat name a history item's call goes upstream under."""
        found = self.names.get((kind, namespace, name))
        if found is not None:
            return found
        return flat_name(name, namespace)


@attrs.frozen
class MappedTools:
    """
    The result of L{map_tools}.

    @ivar tools: Chat C{tools} entries (empty: send no C{tools} at all).
    @ivar tool_map: how to map calls back.
    @ivar dropped: the types of tools the upstream cannot run, in order, for
        the I/O layer to log and count.
    """

    tools: list[dict[str, Any]]
    tool_map: ToolMap
    dropped: list[str]


def flat_name(name: str, namespace: str | None = None) -> str:
    """
    A Chat-valid function name for C{name} in C{namespace}: C{ns__name} when
    that fits, else a readable prefix plus a hash so that it stays unique and
    is still derived from the request alone.
    """
    raw = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
    if _VALID_NAME.match(raw):
        return raw
    return _hashed(raw)


def _hashed(raw: str) -> str:
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:10]
    base = _INVALID_CHARS.sub("_", raw)[: 64 - len(digest) - 1]
    return f"{base}_{digest}"


def revealed_tools(items: object) -> list[tuple[str, list[Any]]]:
    """
    The tools each C{tool_search_output} item of a request's C{input}
    revealed, with where they were found: once revealed, a tool stays
    callable for the rest of the conversation, as with OpenAI.
    """
    found: list[tuple[str, list[Any]]] = []
    if not isinstance(items, list):
        return found
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "tool_search_output":
            tools = item.get("tools")
            where = f"input[{i}].tools"
            if not isinstance(tools, list):
                raise InvalidRequest(f"{where} must be an array", param=where)
            found.append((where, tools))
    return found


def map_tools(
    tools: object,
    dialect: ChatDialect,
    *,
    param: str = "tools",
    revealed: Sequence[tuple[str, list[Any]]] = (),
) -> MappedTools:
    """
    Turn a Responses C{tools} array into Chat functions plus a L{ToolMap}.

    @param revealed: the tools C{tool_search_output} items revealed, as
        L{revealed_tools} finds them: mapped after C{tools}, each tool once.
    @raise InvalidRequest: a tool is not an object or lacks a valid name.
    """
    if tools is None and not revealed:
        return MappedTools([], ToolMap(), [])
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise InvalidRequest(f"{param} must be an array", param=param)
    out: list[dict[str, Any]] = []
    targets: dict[str, ToolTarget] = {}
    names: dict[tuple[str, str | None, str], str] = {}
    dropped: list[str] = []

    def add(target: ToolTarget, function: dict[str, Any]) -> None:
        if (target.kind, target.namespace, target.name) in names:
            # Revealed again by a later search, or offered and revealed.
            return
        flat = flat_name(target.name, target.namespace)
        if flat in targets and targets[flat] != target:
            flat = _hashed(f"{target.kind}:{target.namespace or ''}:{target.name}")
        targets[flat] = target
        names[(target.kind, target.namespace, target.name)] = flat
        function["name"] = flat
        out.append({"type": "function", "function": function})

    def one(tool: object, where: str) -> None:
        if not isinstance(tool, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        kind = tool.get("type")
        if kind == FUNCTION:
            add(ToolTarget(FUNCTION, _name(tool, where)), _function(tool, where, dialect))
        elif kind == CUSTOM:
            add(ToolTarget(CUSTOM, _name(tool, where)), _custom_function(tool))
        elif kind == LOCAL_SHELL:
            add(
                ToolTarget(LOCAL_SHELL, LOCAL_SHELL),
                {
                    "description": "Run a command on the user's machine.",
                    "parameters": LOCAL_SHELL_PARAMETERS,
                },
            )
        elif kind == TOOL_SEARCH and tool.get("execution") == "client":
            add(ToolTarget(TOOL_SEARCH, TOOL_SEARCH), _tool_search_function(tool, where))
        elif kind == "namespace":
            namespace = _name(tool, where)
            nested = tool.get("tools")
            if not isinstance(nested, list):
                raise InvalidRequest(f"{where}.tools must be an array", param=f"{where}.tools")
            for j, inner in enumerate(nested):
                inner_where = f"{where}.tools[{j}]"
                if not isinstance(inner, dict):
                    raise InvalidRequest(f"{inner_where} must be an object", param=inner_where)
                inner_kind = inner.get("type")
                if inner_kind == FUNCTION:
                    function = _function(inner, inner_where, dialect)
                    target = ToolTarget(FUNCTION, _name(inner, inner_where), namespace)
                    add(target, function)
                elif inner_kind == CUSTOM:
                    target = ToolTarget(CUSTOM, _name(inner, inner_where), namespace)
                    add(target, _custom_function(inner))
                else:
                    dropped.append(f"namespace.{inner_kind}")
        elif isinstance(kind, str):
            # Hosted tools (web_search, file_search, code_interpreter, a
            # server-side tool_search, image_generation, computer_use_preview, mcp…)
            # run on OpenAI's side; a Chat upstream cannot run them.
            dropped.append(kind)
        else:
            raise InvalidRequest(f"{where}.type must be a string", param=f"{where}.type")

    for i, tool in enumerate(tools):
        one(tool, f"{param}[{i}]")
    for where, found in revealed:
        for i, tool in enumerate(found):
            one(tool, f"{where}[{i}]")
    return MappedTools(out, ToolMap(targets, names), dropped)


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name must be a non-empty string", param=f"{where}.name")
    return name


def _function(tool: dict[str, Any], where: str, dialect: ChatDialect) -> dict[str, Any]:
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = _EMPTY_PARAMETERS
    elif not isinstance(parameters, dict):
        raise InvalidRequest(f"{where}.parameters must be an object", param=f"{where}.parameters")
    function: dict[str, Any] = {}
    description = tool.get("description")
    if isinstance(description, str) and description:
        function["description"] = description
    function["parameters"] = parameters
    strict = tool.get("strict")
    if dialect.supports_strict and isinstance(strict, bool):
        function["strict"] = strict
    return function


def _tool_search_function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """
    A client-executed C{tool_search} as a function of its own parameters
    (the Codex CLI's: C{query}, C{limit}); the client runs the search.
    """
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = TOOL_SEARCH_PARAMETERS
    elif not isinstance(parameters, dict):
        raise InvalidRequest(f"{where}.parameters must be an object", param=f"{where}.parameters")
    description = tool.get("description")
    return {
        "description": description
        if isinstance(description, str) and description
        else "Search for more tools; the ones found become callable.",
        "parameters": parameters,
    }


def _custom_function(tool: dict[str, Any]) -> dict[str, Any]:
    """
    A freeform tool as a function of one string: the model writes the raw
    input into C{input}; the grammar, if any, goes into the description so
    the model still knows the syntax it must follow.
    """
    description = tool.get("description")
    text = description if isinstance(description, str) else ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        definition = fmt.get("definition")
        if isinstance(definition, str) and definition:
            syntax = fmt.get("syntax") or "grammar"
            text += (
                f"\n\nPut the raw tool input (not JSON-encoded beyond the string) in `input`;"
                f" it must follow this {syntax} grammar:\n{definition}"
            )
    return {
        "description": text.strip() or "A freeform tool; put its raw input in `input`.",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The raw tool input."}},
            "required": ["input"],
            "additionalProperties": False,
        },
    }


def map_tool_choice(choice: object, tool_map: ToolMap) -> object | None:
    """
    The Chat C{tool_choice} for a Responses one, or L{None} to send none.
    A choice naming a hosted tool becomes C{"auto"}: that tool was dropped.
    """
    if choice is None:
        return None
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    name = choice.get("name")
    if kind in (FUNCTION, CUSTOM) and isinstance(name, str):
        namespace = choice.get("namespace")
        flat = tool_map.upstream_name(kind, name, namespace if isinstance(namespace, str) else None)
        return {"type": "function", "function": {"name": flat}}
    if kind == "allowed_tools":
        mode = choice.get("mode")
        return mode if mode in ("auto", "required") else "auto"
    return "auto"


def custom_arguments(text: str) -> str:
    """The Chat C{arguments} for a freeform call's raw C{input}."""
    return orjson.dumps({"input": text}).decode("utf-8")


def custom_input(arguments: str) -> str:
    """
    The raw C{input} of a freeform call from the upstream's C{arguments}.
    Models sometimes ignore the wrapper and write the raw text, or pick
    another key: anything that is not C{{"input": str}} is taken as it is,
    or from the object's only string value.
    """
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict):
        text = value.get("input")
        if isinstance(text, str):
            return text
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    elif isinstance(value, str):
        return value
    return arguments


def local_shell_arguments(action: object) -> str:
    """The Chat C{arguments} for a history C{local_shell_call}'s C{action}."""
    args: dict[str, Any] = {}
    if isinstance(action, dict):
        if isinstance(action.get("command"), list):
            args["command"] = action["command"]
        if isinstance(action.get("working_directory"), str):
            args["workdir"] = action["working_directory"]
        if isinstance(action.get("timeout_ms"), int):
            args["timeout_ms"] = action["timeout_ms"]
    return orjson.dumps(args).decode("utf-8")


def local_shell_action(arguments: str) -> dict[str, Any]:
    """The C{local_shell_call} C{action} for the upstream's C{arguments}."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = {}
    if not isinstance(value, dict):
        value = {}
    command = value.get("command")
    if isinstance(command, str):
        command = ["bash", "-lc", command]
    elif not isinstance(command, list):
        command = []
    action: dict[str, Any] = {
        "type": "exec",
        "command": [str(c) for c in command],
        "env": {},
        "timeout_ms": value.get("timeout_ms") if isinstance(value.get("timeout_ms"), int) else None,
        "user": None,
        "working_directory": value.get("workdir")
        if isinstance(value.get("workdir"), str)
        else None,
    }
    return action


def tool_search_arguments(arguments: str) -> object:
    """
    A C{tool_search_call}'s C{arguments} (a JSON value, not a string) from
    the upstream's: an object, or C{{"query": text}} for anything else.
    """
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"query": value}
    return {"query": arguments}


def tool_search_result(tools: list[Any], tool_map: ToolMap) -> str:
    """
    The C{tool} message for a C{tool_search_output}: the revealed tools by
    the names the upstream calls them under (their definitions are in the
    request's C{tools}).
    """
    found: list[dict[str, str]] = []

    def one(tool: object, namespace: str | None) -> None:
        if not isinstance(tool, dict):
            return
        kind = tool.get("type")
        name = tool.get("name")
        if kind == "namespace" and isinstance(name, str):
            for inner in tool.get("tools") or []:
                one(inner, name)
        elif kind in (FUNCTION, CUSTOM) and isinstance(name, str):
            entry = {"name": tool_map.upstream_name(kind, name, namespace)}
            description = tool.get("description")
            if isinstance(description, str) and description:
                entry["description"] = description
            found.append(entry)

    for tool in tools:
        one(tool, None)
    if not found:
        return "No tools were found."
    return orjson.dumps({"tools_loaded": found}).decode("utf-8")


def call_id_of(item: dict[str, Any], where: str) -> str:
    """A hub call or output item's C{call_id}, which every upstream needs."""
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            f"{where}.call_id must be a non-empty string", param=f"{where}.call_id"
        )
    return call_id


def upstream_call(tool_map: ToolMap, item: dict[str, Any], where: str) -> tuple[str, str]:
    """
    A hub call item (C{function_call}, C{custom_tool_call},
    C{local_shell_call}) as a function call upstream: its name there (custom
    and namespaced tools mapped) and its arguments as JSON text. Both the
    Chat and the Messages spokes send calls as functions.
    """
    kind = item["type"]
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    if kind == "local_shell_call":
        return tool_map.upstream_name(LOCAL_SHELL, LOCAL_SHELL), local_shell_arguments(
            item.get("action")
        )
    raw_name = item.get("name")
    if not isinstance(raw_name, str) or not raw_name:
        raise InvalidRequest(f"{where}.name must be a non-empty string", param=f"{where}.name")
    if kind == "custom_tool_call":
        text = item.get("input")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.input must be a string", param=f"{where}.input")
        return tool_map.upstream_name(CUSTOM, raw_name, namespace), custom_arguments(text)
    args = item.get("arguments")
    if isinstance(args, dict):
        args = orjson.dumps(args).decode("utf-8")
    if not isinstance(args, str):
        raise InvalidRequest(f"{where}.arguments must be a string", param=f"{where}.arguments")
    return tool_map.upstream_name(FUNCTION, raw_name, namespace), args
