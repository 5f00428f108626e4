# -*- test-case-name: tests.dialects.chat.test_stream_to_hub -*-
"""
A Chat upstream's errors, whatever their shape, as the gateway's errors.

Used for an error answer before any stream (the status is kept, so the
client's retry rules apply) and for an error object in the middle of one
(it becomes C{response.failed}). Context overflows become
C{context_length_exceeded} whatever the provider called them: that code makes
the Codex CLI compact its history instead of retrying the same request.
"""

from __future__ import annotations

import orjson

from codexgw.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
)


def error_code(message: str, code: object = None, type_: object = None) -> str:
    """
    The C{error.code} a client sees for an upstream error. Context overflows
    become C{context_length_exceeded} whatever the provider calls them: that
    code makes the Codex CLI compact its history instead of retrying.
    """
    lowered = f"{message} {code or ''}".lower()
    if any(marker in lowered for marker in _CONTEXT_MARKERS):
        return "context_length_exceeded"
    if isinstance(code, str) and code:
        return code
    if isinstance(code, int) and not isinstance(code, bool):
        return "rate_limit_exceeded" if code == 429 else "upstream_error"
    if isinstance(type_, str) and type_:
        return type_
    return "upstream_error"


def error_fields(error: object) -> tuple[str, object, object, object]:
    """(message, code, type, param) from whatever shape an upstream used."""
    if isinstance(error, dict):
        inner = error.get("error")
        if isinstance(inner, dict | str):
            return error_fields(inner)
        message = error.get("message") or error.get("detail") or ""
        return str(message), error.get("code"), error.get("type"), error.get("param")
    if isinstance(error, str):
        return error, None, None, None
    return "", None, None, None


def upstream_error(status: int, body: bytes) -> GatewayError:
    """
    A Chat upstream's error answer (before any stream) as the gateway error
    the client sees, keeping the status so the client's retry rules apply.
    """
    try:
        parsed: object = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    message, code, type_, param = error_fields(parsed)
    if not message:
        message = body[:500].decode("utf-8", "replace") or f"upstream answered HTTP {status}"
    mapped = error_code(message, code, type_ if status < 500 else None)
    cls: type[GatewayError]
    if status == 429:
        cls = RateLimited
    elif status in (401, 403):
        cls = Unauthorized
    elif 400 <= status < 500:
        cls = InvalidRequest
    else:
        cls = UpstreamUnavailable
    if mapped == "upstream_error":
        mapped = cls.code or mapped
    error = cls(
        message, code=mapped, status=status, param=param if isinstance(param, str) else None
    )
    error.kind = "status"
    return error
