# -*- test-case-name: tests.integration.test_messages_upstream.FakeAnthropicTests -*-
"""
A fake Anthropic Messages server for integration tests: a plain twisted.web
resource, served on a real loopback port, that records what it was sent and
answers from a script of turns.

It is as strict as Anthropic's API, because a bridge that only works against
a lenient fake fails against the real one: it wants the key (C{x-api-key},
or C{Authorization: Bearer} as the 2026 SDKs send it) and
C{anthropic-version}; C{max_tokens}; user and assistant turns alternating
(the 2026 API merges repeated turns, the compatible endpoints refuse them:
a bridge must not lean on merging), system messages among them text only;
non-empty text blocks; every C{tool_use} answered, ids matching, by
C{tool_result} blocks that open the very next user message; tools declared
whenever tool blocks appear, shaped C{{name, description, input_schema}}; no
unknown top-level fields ("Extra inputs are not permitted"); beta fields
only with their C{anthropic-beta}; no sampling knobs under the 2026-10-21
version;
and, with thinking on, a sane C{budget_tokens} and, on a tool-use turn, the
assistant message opening with the thinking block this server issued,
signature unchanged. A refusal is a 400 in Anthropic's error shape and is
also kept in L{FakeAnthropicUpstream.rejected}, so a test can say why.

Answers follow the real wire: JSON C{message} objects, or the SSE sequence
C{message_start}, C{ping}, C{content_block_start}/C{_delta}/C{_stop} per
block, C{message_delta}, C{message_stop}; errors as
C{{"type": "error", "error": {"type", "message"}, "request_id"}} with the
status Anthropic uses for the type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.chat_upstream import Received

API_KEY = "sk-ant-upstream-secret"
#: What the model thinks when a scripted turn names no thought (with thinking on).
DEFAULT_THOUGHT = "Let me work through this."

#: Status of each error type, as Anthropic's API (and its SDKs) use them.
STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

#: Top-level fields of POST /v1/messages, and the beta that must be named
#: in C{anthropic-beta} for a field that is not generally available.
FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "metadata",
        "stop_sequences",
        "stream",
        "system",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        # Added by the 2026 API (the anthropic SDK 2.x types have them);
        # Claude Code sends output_config for a model it does not know.
        "cache_control",
        "diagnostics",
        "inference_geo",
        "output_config",
        "speed",
    }
)
COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
    | {"context_management"}
)
BETA_FIELDS = {"context_management": "context-management-", "mcp_servers": "mcp-client-"}
#: Under this API version (the 2026-10 SDKs send it) sampling knobs are refused.
SAMPLING_REFUSED_FROM = "2026-10-21"

BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "cache_control", "title", "context", "citations"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


class Refused(Exception):
    """A request Anthropic would refuse: C{status}, error C{type}, C{message}."""

    def __init__(self, message: str, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.type = type
        self.status = STATUS[type]
        self.message = message


# -- the script -------------------------------------------------------------


@attrs.frozen
class Thinking:
    """
    A thinking block; the server signs it (only when thinking is on). With
    thinking on, a turn without one gets one (L{DEFAULT_THOUGHT}), as the
    model always thinks first.
    """

    text: str


@attrs.frozen
class RedactedThinking:
    """An opaque C{redacted_thinking} block, signed like thinking."""

    data: str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


@attrs.frozen
class Text:
    text: str


@attrs.frozen
class ToolUse:
    """A call of C{name}, which must be among the request's tools."""

    name: str
    input: dict[str, Any]
    id: str | None = None


Block = Thinking | RedactedThinking | Text | ToolUse


@attrs.frozen
class Turn:
    """
    One scripted answer. C{stop_reason} defaults to C{tool_use} when a
    block calls a tool, else C{end_turn}.
    """

    blocks: tuple[Block, ...]
    stop_reason: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@attrs.frozen
class Fail:
    """
    An error answer of Anthropic's C{type}; C{retry_after} is sent as the
    C{retry-after} header (rate limits); C{in_stream} answers 200 and sends
    it as an C{event: error} after C{message_start}, as the API does when it
    fails mid-stream.
    """

    type: str
    message: str
    retry_after: str | None = None
    in_stream: bool = False


Step = Turn | Fail | Callable[[Request, Any], Any]


def say(*words: str) -> Turn:
    """A plain text answer."""
    return Turn((Text("".join(words)),))


def think(thought: str, *blocks: Block) -> Turn:
    """A thinking block, then C{blocks}."""
    return Turn((Thinking(thought), *blocks))


def call(name: str, input: dict[str, Any], id: str | None = None, thought: str = "") -> Turn:
    """A tool call, after a thinking block when C{thought} is given."""
    blocks: tuple[Block, ...] = (ToolUse(name, input, id),)
    if thought:
        blocks = (Thinking(thought), *blocks)
    return Turn(blocks)


# -- validation ---------------------------------------------------------------


def thinkingOn(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _betas(headers: dict[bytes, bytes]) -> list[str]:
    raw = headers.get(b"anthropic-beta", b"").decode()
    return [b.strip() for b in raw.split(",") if b.strip()]


def presentedKeys(headers: dict[bytes, bytes]) -> list[str]:
    """The keys a request carries: C{x-api-key}, and C{Authorization: Bearer}."""
    keys = []
    if b"x-api-key" in headers:
        keys.append(headers[b"x-api-key"].decode("latin-1"))
    scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and value.strip():
        keys.append(value.strip().decode("latin-1"))
    return keys


def checkHeaders(headers: dict[bytes, bytes], apiKey: str) -> None:
    # The API takes a key as x-api-key (Claude Code, older SDKs) or as a
    # bearer token (the 2026 SDKs send api_key so); every key sent must be
    # valid, so a relay that forwards its client's key beside its own fails.
    keys = presentedKeys(headers)
    if not keys:
        raise Refused("x-api-key header is required", "authentication_error")
    if any(key != apiKey for key in keys):
        raise Refused("invalid x-api-key", "authentication_error")
    if not headers.get(b"anthropic-version"):
        raise Refused("anthropic-version: header is required")


def _checkTopLevel(
    headers: dict[bytes, bytes], body: Any, allowed: frozenset[str]
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused("The request body is not valid JSON.")
    for field in body:
        if field not in allowed:
            raise Refused(f"{field}: Extra inputs are not permitted")
    betas = _betas(headers)
    for field, beta in BETA_FIELDS.items():
        if field in body and not any(b.startswith(beta) for b in betas):
            raise Refused(f"{field}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Refused("model: Field required")
    version = headers.get(b"anthropic-version", b"").decode()
    if version >= SAMPLING_REFUSED_FROM:
        for knob in ("temperature", "top_p", "top_k"):
            if knob in body:
                raise Refused(f"{knob}: is not supported with anthropic-version {version}")
    return body


def _checkBlock(where: str, role: str, block: Any) -> None:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_KEYS:
        kind = block.get("type") if isinstance(block, dict) else type(block).__name__
        raise Refused(f"{where}: Input tag '{kind}' does not match any of the expected tags")
    kind = block["type"]
    for key in block:
        if key not in BLOCK_KEYS[kind]:
            raise Refused(f"{where}.{kind}.{key}: Extra inputs are not permitted")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise Refused(f"{where}.text.text: Field required")
        if not block["text"]:
            raise Refused("messages: text content blocks must be non-empty")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
            raise Refused(f"{where}.image.source: Field required")
        if source["type"] == "base64" and not (source.get("media_type") and source.get("data")):
            raise Refused(f"{where}.image.source.base64.media_type: Field required")
    elif kind == "tool_use":
        if role != "assistant":
            raise Refused(f"{where}: tool_use blocks may only appear in assistant messages")
        if not isinstance(block.get("id"), str) or not TOOL_ID.match(block["id"]):
            raise Refused(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not TOOL_NAME.match(block["name"]):
            raise Refused(f"{where}.tool_use.name: String should match pattern")
        if not isinstance(block.get("input"), dict):
            raise Refused(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if role != "user":
            raise Refused(f"{where}: tool_result blocks may only appear in user messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise Refused(f"{where}.tool_result.tool_use_id: Field required")
        content = block.get("content", "")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                    raise Refused(f"{where}.tool_result.content.{j}: Input tag does not match")
                _checkBlock(f"{where}.tool_result.content.{j}", "user", part)
        elif not isinstance(content, str):
            raise Refused(f"{where}.tool_result.content: Input should be a valid string or list")
    elif kind == "thinking":
        if role != "assistant":
            raise Refused(f"{where}: thinking blocks may only appear in assistant messages")
        if not isinstance(block.get("thinking"), str):
            raise Refused(f"{where}.thinking.thinking: Field required")
        if not isinstance(block.get("signature"), str):
            raise Refused(f"{where}.thinking.signature: Field required")
    elif kind == "redacted_thinking":
        if not isinstance(block.get("data"), str):
            raise Refused(f"{where}.redacted_thinking.data: Field required")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content  # type: ignore[no-any-return]


def checkMessages(body: dict[str, Any], verify: Callable[[dict[str, Any]], bool]) -> None:
    """
    The conversation rules. C{verify} says whether a thinking or
    redacted_thinking block is one this server issued, unchanged.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise Refused("messages: Field required")
    if not messages:
        raise Refused("messages: at least one message is required")
    previous = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise Refused(f"{where}: Input should be a valid dictionary")
        for key in message:
            if key not in ("role", "content"):
                raise Refused(f"{where}.{key}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise Refused(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if i == 0 and role != "user":
            raise Refused('messages: first message must use the "user" role')
        if role == "system":
            # The 2026 API takes system messages among the turns (Claude Code
            # sends them for a model it does not know): text only.
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list) or not blocks:
                raise Refused(f"{where}: system messages must have non-empty content")
            for j, block in enumerate(blocks):
                if not isinstance(block, dict) or block.get("type") != "text":
                    raise Refused(f"{where}.content.{j}: system messages take text blocks only")
                _checkBlock(f"{where}.content.{j}", role, block)
            continue
        if role == previous:
            raise Refused(
                'messages: roles must alternate between "user" and "assistant", '
                'but found multiple "' + role + '" roles in a row'
            )
        previous = role
        content = message.get("content")
        if isinstance(content, str):
            if not content and not (role == "assistant" and i == len(messages) - 1):
                raise Refused(f"{where}: {role} messages must have non-empty content")
        elif isinstance(content, list):
            if not content:
                raise Refused(f"{where}: {role} messages must have non-empty content")
            for j, block in enumerate(content):
                _checkBlock(f"{where}.content.{j}", role, block)
        else:
            raise Refused(f"{where}.content: Field required")
    # Every tool_use is answered, first thing, in the very next user message.
    for i, message in enumerate(messages):
        blocks = _blocks(message)
        if message["role"] == "assistant":
            ids = [b["id"] for b in blocks if b["type"] == "tool_use"]
            if len(set(ids)) != len(ids):
                raise Refused(f"messages.{i}: `tool_use` ids must be unique")
            if not ids:
                continue
            answered = []
            if i + 1 < len(messages):
                nextBlocks = _blocks(messages[i + 1])
                answered = [b["tool_use_id"] for b in nextBlocks if b["type"] == "tool_result"]
            missing = [x for x in ids if x not in answered]
            if missing:
                raise Refused(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        else:
            results = [(j, b) for j, b in enumerate(blocks) if b["type"] == "tool_result"]
            if not results:
                continue
            offered = []
            if i > 0:
                offered = [b["id"] for b in _blocks(messages[i - 1]) if b["type"] == "tool_use"]
            for j, block in results:
                if block["tool_use_id"] not in offered:
                    raise Refused(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous "
                        "message."
                    )
            if [j for j, _ in results] != list(range(len(results))):
                raise Refused(
                    f"messages.{i}: Did not find {len(results)} `tool_result` block(s) at the "
                    "beginning of this message. Messages following `tool_use` blocks must "
                    "begin with a matching number of `tool_result` blocks."
                )
    if not body.get("tools") and any(
        b["type"] in ("tool_use", "tool_result") for m in messages for b in _blocks(m)
    ):
        # A replayed tool loop needs its tools declared, even on a turn
        # that must not call them (a compaction, a summary).
        raise Refused(
            "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
    # Thinking blocks sent back must be this server's, unchanged.
    for i, message in enumerate(messages):
        for j, block in enumerate(_blocks(message)):
            if block["type"] in ("thinking", "redacted_thinking") and not verify(block):
                raise Refused(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    turns = [(i, m) for i, m in enumerate(messages) if m["role"] != "system"]
    if thinkingOn(body) and len(turns) >= 2:
        last = turns[-1][1]
        at, before = turns[-2]
        if last["role"] == "user" and any(b["type"] == "tool_result" for b in _blocks(last)):
            first = _blocks(before)[0]
            if first["type"] not in ("thinking", "redacted_thinking"):
                raise Refused(
                    f"messages.{at}.content.0.type: Expected `thinking` or "
                    f"`redacted_thinking`, but found `{first['type']}`. When `thinking` is "
                    "enabled, a final `assistant` message must start with a thinking block "
                    "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
                    "We recommend you include thinking blocks from previous turns. To avoid "
                    "this requirement, disable `thinking`. Please consult our documentation "
                    "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                )


def checkSystem(body: dict[str, Any]) -> None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Refused("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Refused(f"system.{i}: Input tag does not match the expected tag 'text'")
        for key in block:
            if key not in ("type", "text", "cache_control", "citations"):
                raise Refused(f"system.{i}.{key}: Extra inputs are not permitted")
        if not block.get("text"):
            raise Refused("system: text content blocks must be non-empty")


def checkTools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise Refused("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise Refused(f"tools.{i}: Input should be a valid dictionary")
            kind = tool.get("type", "custom")
            if kind == "custom":
                for key in tool:
                    if key not in ("type", "name", "description", "input_schema", "cache_control"):
                        raise Refused(f"tools.{i}.custom.{key}: Extra inputs are not permitted")
                if not isinstance(tool.get("input_schema"), dict):
                    raise Refused(f"tools.{i}.custom.input_schema: Field required")
                if tool["input_schema"].get("type") != "object":
                    raise Refused(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
                if "description" in tool and not isinstance(tool["description"], str):
                    raise Refused(f"tools.{i}.custom.description: Input should be a valid string")
            elif not re.match(r"^[a-z_]+_\d{8}$", str(kind)):
                # Server tools are versioned (web_search_20250305, bash_20250124…).
                raise Refused(
                    f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of "
                    "the expected tags"
                )
            name = tool.get("name")
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                raise Refused(
                    f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                )
            if name in names:
                raise Refused(f"tools: Tool names must be unique. Duplicate: {name}")
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            raise Refused("tool_choice: Input tag does not match any of the expected tags")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Refused(f"tool_choice.tool.name: tool {choice.get('name')!r} not in tools")
        if thinkingOn(body) and choice["type"] in ("any", "tool"):
            raise Refused("Thinking may not be enabled when tool_choice forces tool use.")


def checkThinking(body: dict[str, Any], counting: bool = False) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in (
        "enabled",
        "disabled",
        "adaptive",
    ):
        raise Refused("thinking: Input tag does not match any of the expected tags")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise Refused("thinking.enabled.budget_tokens: Field required")
        if budget < 1024:
            raise Refused(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if not counting and budget >= body["max_tokens"]:
            raise Refused("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if thinkingOn(body):
        if body.get("temperature", 1) != 1:
            raise Refused("`temperature` may only be set to 1 when thinking is enabled.")
        if "top_k" in body:
            raise Refused("`top_k` may not be set when thinking is enabled.")


def checkCreate(
    headers: dict[bytes, bytes], body: Any, verify: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Everything POST /v1/messages refuses, in the order the API reports it."""
    body = _checkTopLevel(headers, body, FIELDS)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise Refused("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise Refused("max_tokens: Input should be greater than or equal to 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Refused("stream: Input should be a valid boolean")
    checkSystem(body)
    checkMessages(body, verify)
    checkTools(body)
    checkThinking(body)
    return body


def checkCount(
    headers: dict[bytes, bytes], body: Any, verify: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """What POST /v1/messages/count_tokens refuses (no max_tokens, no stream)."""
    body = _checkTopLevel(headers, body, COUNT_FIELDS)
    checkSystem(body)
    checkMessages(body, verify)
    checkTools(body)
    checkThinking(body, counting=True)
    return body


def estimateTokens(body: dict[str, Any]) -> int:
    """A deterministic count: a token per four bytes of what would be read."""
    counted = {k: body.get(k) for k in ("system", "messages", "tools")}
    return max(1, len(orjson.dumps(counted)) // 4)


# -- the server -----------------------------------------------------------------


def sseEvent(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class FakeAnthropicUpstream(Resource):
    """
    @ivar received: every request, in order (L{Received}, as the Chat fake's).
    @ivar raw: the body of each, as the bytes that came.
    @ivar script: L{Turn}s, L{Fail}s or callables C{(request, body)} that
        render or return the L{Turn} or L{Fail} to answer, used one per
        accepted POST /v1/messages, in order; when empty, a short text answer.
    @ivar rejected: C{(request index, status, message)} of every refusal.
    @ivar issued: the signature of every thinking block answered, and its text.
    """

    isLeaf = True

    def __init__(self, apiKey: str = API_KEY) -> None:
        super().__init__()
        self.apiKey = apiKey
        self.received: list[Received] = []
        self.raw: list[bytes] = []
        self.script: list[Step] = []
        self.rejected: list[tuple[int, int, str]] = []
        self.issued: dict[str, str] = {}
        self._secret = b"fake-anthropic-signing-key"
        self._counter = 0

    # What the tests read.

    @property
    def messages(self) -> list[Received]:
        """The POST /v1/messages requests (not count_tokens, not models)."""
        return [
            r
            for r in self.received
            if r.method == b"POST" and r.path.split(b"?")[0].endswith(b"/v1/messages")
        ]

    # Signing.

    def sign(self, text: str) -> str:
        mac = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        signature = base64.b64encode(b"\x12\x08" + mac + mac[:16]).decode()
        self.issued[signature] = text
        return signature

    def verify(self, block: dict[str, Any]) -> bool:
        if block["type"] == "redacted_thinking":
            return block["data"] in self.issued
        signature = block.get("signature", "")
        return self.issued.get(signature) == block.get("thinking")

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_01Fake{self._counter:04d}"

    # Rendering.

    def render(self, request: Request) -> Any:
        raw = request.content.read() if request.content else b""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        headers = {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()}
        record = Received(request.method, request.path, headers, body, request.notifyFinish())

        def lost(f: Any) -> None:
            record.lost = True

        record.finished.addErrback(lost)
        self.received.append(record)
        self.raw.append(raw)
        path = request.path.split(b"?")[0]
        try:
            checkHeaders(headers, self.apiKey)
            if request.method == b"GET" and path.endswith(b"/v1/models"):
                return self._models(request)
            if request.method != b"POST":
                raise Refused(
                    f"Not Found: {request.method.decode()} {path.decode()}", "not_found_error"
                )
            if path.endswith(b"/v1/messages/count_tokens"):
                counted = checkCount(headers, body, self.verify)
                return self._json(request, 200, {"input_tokens": estimateTokens(counted)})
            if not path.endswith(b"/v1/messages"):
                raise Refused(f"Not Found: POST {path.decode()}", "not_found_error")
            body = checkCreate(headers, body, self.verify)
        except Refused as refused:
            self.rejected.append((len(self.received) - 1, refused.status, refused.message))
            return self.error(request, refused.type, refused.message)
        step: Any = self.script.pop(0) if self.script else say("Hello from the fake Anthropic")
        if not isinstance(step, Turn | Fail):
            step = step(request, body)  # a render, or a Turn or Fail it chose
            if not isinstance(step, Turn | Fail):
                return step
        if isinstance(step, Fail):
            return self._fail(request, body, step)
        try:
            message = self._message(body, step)
        except Refused as refused:
            return self.error(request, refused.type, refused.message)
        if body.get("stream"):
            return self._stream(request, message)
        return self._json(request, 200, message)

    def _json(self, request: Request, status: int, value: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"request-id", self._id("req").encode())
        return orjson.dumps(value)

    def error(self, request: Request, type: str, message: str) -> bytes:
        """An error answer in Anthropic's shape, with the status of its type."""
        request.setHeader(b"x-should-retry", b"true" if STATUS[type] >= 429 else b"false")
        return self._json(
            request,
            STATUS[type],
            {
                "type": "error",
                "error": {"type": type, "message": message},
                "request_id": self._id("req"),
            },
        )

    def _fail(self, request: Request, body: dict[str, Any], fail: Fail) -> bytes | int:
        if fail.retry_after is not None:
            request.setHeader(b"retry-after", fail.retry_after.encode())
        if not (fail.in_stream and body.get("stream")):
            return self.error(request, fail.type, fail.message)
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(sseEvent({"type": "message_start", "message": self._shell(body, 11)}))
        request.write(
            sseEvent({"type": "error", "error": {"type": fail.type, "message": fail.message}})
        )
        request.finish()
        return NOT_DONE_YET

    def _models(self, request: Request) -> bytes:
        data = [
            {
                "type": "model",
                "id": "claude-sonnet-4-5-20250929",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            }
        ]
        return self._json(
            request,
            200,
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[0]["id"]},
        )

    def _shell(self, body: dict[str, Any], inputTokens: int) -> dict[str, Any]:
        return {
            "id": self._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": inputTokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
                "service_tier": "standard",
            },
        }

    def _message(self, body: dict[str, Any], turn: Turn) -> dict[str, Any]:
        offered = {t.get("name") for t in body.get("tools") or []}
        content: list[dict[str, Any]] = []
        blocks = turn.blocks
        if thinkingOn(body) and not any(isinstance(b, Thinking | RedactedThinking) for b in blocks):
            # With thinking on the model always opens with a thinking block
            # (which is why the API can demand it back on a tool turn).
            blocks = (Thinking(DEFAULT_THOUGHT), *blocks)
        for block in blocks:
            if isinstance(block, Thinking):
                if thinkingOn(body):  # a model thinks only when asked to
                    content.append(
                        {
                            "type": "thinking",
                            "thinking": block.text,
                            "signature": self.sign(block.text),
                        }
                    )
            elif isinstance(block, RedactedThinking):
                if thinkingOn(body):
                    self.issued[block.data] = ""
                    content.append({"type": "redacted_thinking", "data": block.data})
            elif isinstance(block, Text):
                content.append({"type": "text", "text": block.text})
            else:
                if block.name not in offered:
                    raise Refused(
                        f"fake: the script calls {block.name!r}, which the request's tools "
                        f"({sorted(n for n in offered if n)}) do not offer",
                        "api_error",
                    )
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.id or self._id("toolu"),
                        "name": block.name,
                        "input": block.input,
                    }
                )
        calls = any(b["type"] == "tool_use" for b in content)
        message = self._shell(body, turn.input_tokens)
        message["content"] = content
        message["stop_reason"] = turn.stop_reason or ("tool_use" if calls else "end_turn")
        message["usage"].update(
            output_tokens=turn.output_tokens,
            cache_read_input_tokens=turn.cache_read_input_tokens,
            cache_creation_input_tokens=turn.cache_creation_input_tokens,
        )
        return message

    def _stream(self, request: Request, message: dict[str, Any]) -> int:
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"request-id", self._id("req").encode())
        start = dict(message, content=[], stop_reason=None)
        start["usage"] = dict(message["usage"], output_tokens=1)
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {"type": "ping"},
        ]
        for index, block in enumerate(message["content"]):
            events += blockEvents(index, block)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    "input_tokens": message["usage"]["input_tokens"],
                    "cache_creation_input_tokens": message["usage"]["cache_creation_input_tokens"],
                    "cache_read_input_tokens": message["usage"]["cache_read_input_tokens"],
                    "output_tokens": message["usage"]["output_tokens"],
                },
            }
        )
        events.append({"type": "message_stop"})
        for event in events:
            request.write(sseEvent(event))
        request.finish()
        return NOT_DONE_YET


def _halves(text: str) -> Sequence[str]:
    half = len(text) // 2
    return [p for p in (text[:half], text[half:]) if p]


def blockEvents(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """One content block as the API streams it: start, deltas split mid-way, stop."""
    kind = block["type"]
    out: list[dict[str, Any]] = []

    def delta(d: dict[str, Any]) -> None:
        out.append({"type": "content_block_delta", "index": index, "delta": d})

    if kind == "text":
        out.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        )
        for part in _halves(block["text"]):
            delta({"type": "text_delta", "text": part})
    elif kind == "thinking":
        out.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            }
        )
        for part in _halves(block["thinking"]):
            delta({"type": "thinking_delta", "thinking": part})
        delta({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "redacted_thinking":
        out.append({"type": "content_block_start", "index": index, "content_block": block})
    else:
        out.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": {},
                },
            }
        )
        delta({"type": "input_json_delta", "partial_json": ""})
        for part in _halves(orjson.dumps(block["input"]).decode()):
            delta({"type": "input_json_delta", "partial_json": part})
    out.append({"type": "content_block_stop", "index": index})
    return out
