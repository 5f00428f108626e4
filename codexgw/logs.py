# -*- test-case-name: tests.test_logs -*-
"""
Structured logging: one access event per request, and a JSON observer for
operators who ship logs to a collector.

Use with twistd as C{twistd --logger codexgw.logs.jsonObserver codexgw}
(or C{codexgw.logs.textObserver} for redacted text). Events are emitted through
C{twisted.logger}, so embedding programs route them like their own.
Nothing here ever receives a key: callers pass names, never secrets, and
L{redact} scrubs anything that looks like a bearer token as a last guard.
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any

import orjson
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    formatEvent,
    formatEventAsClassicLogText,
)

access = Logger(namespace="codexgw.access")

ACCESS_FORMAT = (
    "{method} {route} {status} {duration_ms}ms upstream={upstream} model={model} "
    "key={key} request_id={request_id} outcome={outcome}"
)

# Credential shapes: a bearer token, an api-key assignment, an OpenAI-style
# sk- key (not the "sk-" inside words like "task-runner").
_TOKEN = r"[A-Za-z0-9._~+/=\-]{6,}"
_SECRET = re.compile(rf"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+|(?<![A-Za-z0-9])sk-){_TOKEN}")


def redact(text: str) -> str:
    """Replace anything shaped like a credential."""
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)


def logAccess(**fields: Any) -> None:
    """Emit the one access line of a request."""
    access.info(ACCESS_FORMAT, **fields)


def _jsonFormat(event: dict[str, Any]) -> str:
    """One JSON object a line, with the message already rendered."""
    out: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": getattr(event.get("log_level"), "name", None),
        "namespace": event.get("log_namespace"),
        "message": redact(formatEvent(event)),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in ("format", "message", "system", "time"):
            continue
        if isinstance(value, str):
            out[key] = redact(value)
        elif isinstance(value, int | float | bool) or value is None:
            out[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        out["traceback"] = redact(failure.getTraceback())
    return orjson.dumps(out).decode() + "\n"


def _textFormat(event: dict[str, Any]) -> str | None:
    text = formatEventAsClassicLogText(event)
    return None if text is None else redact(text)


def jsonObserver(stream: IO[str] | None = None) -> ILogObserver:
    """A JSON-lines observer (a twistd C{--logger} factory)."""
    return FileLogObserver(stream or sys.stdout, _jsonFormat)


def textObserver(stream: IO[str] | None = None) -> ILogObserver:
    """Twisted's text format, with the redaction guard (also a C{--logger})."""
    return FileLogObserver(stream or sys.stdout, _textFormat)


__all__ = ["jsonObserver", "logAccess", "redact", "textObserver"]
