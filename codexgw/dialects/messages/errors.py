# -*- test-case-name: tests.dialects.messages.test_errors -*-
"""
Anthropic's errors, both ways, and the token estimate of C{count_tokens}.

An upstream's error answer (L{upstream_error}) becomes the gateway's error
with its status kept, so the client's retry rules still apply: 529
C{overloaded_error} stays a 5xx that clients (and the upstream retry policy,
once it lists 529) retry, and a prompt that is too long becomes
C{context_length_exceeded}, the code that makes the Codex CLI compact its
history instead of sending the same request again.

A Messages client is answered in Anthropic's own shape
(L{messages_error_body}): the SDKs and Claude Code decide what to do from
C{error.type}, not from OpenAI's C{code}.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from codexgw.dialects.chat.errors import error_code
from codexgw.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)

OVERLOADED = "server_is_overloaded"
"""The hub's C{error.code} for Anthropic's C{overloaded_error}: any code but
the few the Codex CLI treats specially is retried, and this one says why."""

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
"""The hub's code for a context overflow, whatever the upstream called it."""

# Anthropic's error types by the status they come with.
_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}

# Anthropic's own error types: a hub code that is one already stays itself.
_ANTHROPIC_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)

# The hub codes an error inside a stream may carry, as Anthropic's types.
_TYPES_BY_CODE = {
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    CONTEXT_LENGTH_EXCEEDED: "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
    OVERLOADED: "overloaded_error",
    "server_overloaded": "overloaded_error",
    "slow_down": "overloaded_error",
    "upstream_unavailable": "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's C{error.type} for an answer of HTTP C{status}."""
    found = _TYPES_BY_STATUS.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def stream_error_type(code: str | None) -> str:
    """
    Anthropic's C{error.type} for a failure inside a 200 stream, from the
    hub's C{error.code}: Claude Code retries C{overloaded_error} and
    C{api_error} and shows an C{invalid_request_error}. A code that is an
    Anthropic type already (an upstream of Anthropic's dialect said it)
    stays as it is.
    """
    if code in _ANTHROPIC_TYPES:
        return code
    return _TYPES_BY_CODE.get(code or "", "api_error")


_NUMBER = r"(\d[\d,]*)"
_LIMIT = re.compile(
    r"(?:maximum context length|context length|context window|context limit|context size)"
    r"\s+(?:is|of)\s+" + _NUMBER + r"\s*tokens",
    re.IGNORECASE,
)
# What the request came to: OpenAI's, DeepSeek's and vLLM's words.
_ACTUAL = re.compile(
    r"(?:resulted in|requested|request has|you have|prompt has|prompt contains|input has)\s+"
    + _NUMBER
    + r"\s*(?:input\s+)?tokens",
    re.IGNORECASE,
)
# OpenAI's and DeepSeek's split of what was requested: "(N in the
# messages, M in the completion)".
_SPLIT = re.compile(
    _NUMBER + r"\s+in the messages?,\s*" + _NUMBER + r"\s+in the completion", re.IGNORECASE
)
# vLLM's refusal of a max_tokens that does not fit: "'max_tokens' … is too
# large: M. This model's maximum context length is L tokens and your
# request has N input tokens".
_MAX_TOKENS = re.compile(r"max_(?:completion_)?tokens\W.*?too large:\s*" + _NUMBER, re.IGNORECASE)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def context_overflow_message(message: str) -> str:
    """
    A context overflow worded as Anthropic words it, which is what Claude
    Code acts on: C{prompt is too long: N tokens > M maximum} (it compacts
    the conversation, reading N and M), or, when the prompt fits but the
    room asked for the answer does not, C{input length and `max_tokens`
    exceed context limit: N + K > M, …} (it retries with a smaller
    C{max_tokens}). Where the upstream's message gives no numbers it is
    kept after C{prompt is too long: }; Anthropic's own words stay as
    they are.

    @param message: the upstream's message for an error whose hub code is
        C{context_length_exceeded}.
    """
    lowered = message.lower()
    if "prompt is too long" in lowered or "exceed context limit" in lowered:
        return message
    limit_match = _LIMIT.search(message)
    if limit_match is not None:
        limit = _int(limit_match.group(1))
        split = _SPLIT.search(message)
        actual_match = _ACTUAL.search(message)
        max_tokens = _MAX_TOKENS.search(message)
        prompt: int | None = None
        answer: int | None = None
        if split is not None:
            prompt, answer = _int(split.group(1)), _int(split.group(2))
        elif actual_match is not None:
            prompt = _int(actual_match.group(1))
            if max_tokens is not None:
                answer = _int(max_tokens.group(1))
        if prompt is not None and prompt > limit:
            return f"prompt is too long: {prompt} tokens > {limit} maximum"
        if prompt is not None and answer is not None and prompt + answer > limit:
            return (
                f"input length and `max_tokens` exceed context limit: {prompt} + {answer} > "
                f"{limit}, decrease input length or `max_tokens` and try again"
            )
    return f"prompt is too long: {message}"


def _client_message(code: str | None, message: str) -> str:
    if code == CONTEXT_LENGTH_EXCEEDED:
        return context_overflow_message(message)
    return message


def messages_error_status(error: GatewayError) -> int:
    """
    The status a Messages client is answered C{error} with: its own, but
    400 for a context overflow, as Anthropic answers one, whatever status
    it came with (a Responses upstream fails an oversized stream inside a
    200, which a client that did not stream would get as a 502): a client
    that retries 5xx must not send the same prompt again, and Claude Code
    reads the C{max_tokens} refusal's numbers only from a 400.
    """
    if error.code == CONTEXT_LENGTH_EXCEEDED:
        return 400
    return error.status


def messages_error_body(error: GatewayError, request_id: str | None = None) -> dict[str, Any]:
    """
    C{error} as a Messages client expects it:
    C{{"type": "error", "error": {"type", "message"}, "request_id"}}, the
    type by L{messages_error_status}; a context overflow in Anthropic's
    words (L{context_overflow_message}).
    """
    kind = error_type(messages_error_status(error))
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind, "message": _client_message(error.code, error.message)},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def stream_error_event(code: str | None, message: str) -> dict[str, Any]:
    """
    The C{event: error} that ends a Messages stream that failed; a context
    overflow in Anthropic's words (L{context_overflow_message}).
    """
    return {
        "type": "error",
        "error": {"type": stream_error_type(code), "message": _client_message(code, message)},
    }


def anthropic_error_fields(parsed: object) -> tuple[str, str | None]:
    """(message, Anthropic type) of an error body or stream event, whatever is missing."""
    if isinstance(parsed, dict):
        inner = parsed.get("error")
        if isinstance(inner, dict):
            message = inner.get("message")
            kind = inner.get("type")
            return (
                message if isinstance(message, str) else "",
                kind if isinstance(kind, str) else None,
            )
        if isinstance(inner, str):
            return inner, None
        message = parsed.get("message")
        if isinstance(message, str):
            return message, None
    return "", None


def hub_code(message: str, kind: str | None) -> str:
    """
    The hub's C{error.code} for an Anthropic error: context overflows are
    C{context_length_exceeded} whatever the message says; the rest keep
    a code the Codex CLI reads the same way it reads OpenAI's.
    """
    if kind == "overloaded_error":
        return OVERLOADED
    if kind == "rate_limit_error":
        return "rate_limit_exceeded"
    mapped = error_code(message)
    if mapped != "upstream_error":
        return mapped
    return kind or "upstream_error"


def upstream_error(status: int, body: bytes) -> GatewayError:
    """
    A Messages upstream's error answer (before any stream) as the gateway
    error the client sees, status kept.
    """
    try:
        parsed: object = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    message, kind = anthropic_error_fields(parsed)
    if not message:
        message = body[:500].decode("utf-8", "replace") or f"upstream answered HTTP {status}"
    code = hub_code(message, kind)
    cls: type[GatewayError]
    if status == 429 or kind == "rate_limit_error":
        cls = RateLimited
    elif status in (401, 403) or kind in ("authentication_error", "permission_error"):
        cls = Unauthorized
    elif status == 404:
        cls = NotFound
    elif status == 413:
        cls = PayloadTooLarge
    elif 400 <= status < 500:
        cls = InvalidRequest
    else:
        cls = UpstreamUnavailable
    if code == "upstream_error" or (cls is not InvalidRequest and code == kind):
        code = cls.code or code
    error = cls(message, code=code, status=status)
    error.kind = "status"
    return error


def estimate_tokens(body: object) -> int:
    """
    A rough count of the input tokens of a C{count_tokens} body: the bytes
    of the compact JSON of its C{system}, C{messages} and C{tools}, divided
    by four and rounded up (at least 1).

    An estimate, not the model's tokenizer: a bridged upstream has no count
    endpoint, and clients (Claude Code) use the number only to decide when
    to compact, for which being within a few tens of percent is enough.
    English prose runs near four bytes a token; code and JSON somewhat
    fewer, non-Latin text more.
    """
    if not isinstance(body, dict):
        return 1
    counted = {k: body[k] for k in ("system", "messages", "tools") if body.get(k) is not None}
    size = len(orjson.dumps(counted)) if counted else 0
    return max(1, math.ceil(size / 4))


__all__ = [
    "CONTEXT_LENGTH_EXCEEDED",
    "OVERLOADED",
    "context_overflow_message",
    "error_type",
    "estimate_tokens",
    "messages_error_body",
    "messages_error_status",
    "stream_error_event",
    "stream_error_type",
    "upstream_error",
]
