# -*- test-case-name: tests.test_logs -*-
"""
Structured logging: one access event per request, and a JSON observer for
operators who ship logs to a collector.

Use with twistd as C{twistd --logger codexgw.logs.jsonObserver codexgw}, or
set C{CODEXGW_LOG_FORMAT=json}. Events are emitted through
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
    eventAsJSON,
    formatEvent,
    formatTime,
    jsonFileLogObserver,
    textFileLogObserver,
)
from zope.interface import implementer

access = Logger(namespace="codexgw.access")

ACCESS_FORMAT = (
    "{method} {route} {status} {duration_ms}ms upstream={upstream} model={model} "
    "key={key} request_id={request_id} outcome={outcome}"
)

_SECRET = re.compile(r"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+|sk-)[A-Za-z0-9._\-]{6,}")


def redact(text: str) -> str:
    """Replace anything shaped like a credential."""
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)


def logAccess(**fields: Any) -> None:
    """Emit the one access line of a request."""
    access.info(ACCESS_FORMAT, **fields)


@implementer(ILogObserver)
class _RedactingObserver:
    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            event = dict(event)
            event["log_failure_text"] = redact(failure.getTraceback())
        self._observer(event)


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
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
    if "log_failure_text" in event:
        out["traceback"] = event["log_failure_text"]
    return orjson.dumps(out).decode() + "\n"


def jsonObserver(stream: IO[str] | None = None) -> ILogObserver:
    """A JSON-lines observer (a twistd C{--logger} factory)."""
    return _RedactingObserver(FileLogObserver(stream or sys.stdout, _jsonFormat))


def textObserver(stream: IO[str] | None = None) -> ILogObserver:
    """Twisted's text format, with the redaction guard."""
    return _RedactingObserver(textFileLogObserver(stream or sys.stdout))


__all__ = [
    "eventAsJSON",
    "formatTime",
    "jsonFileLogObserver",
    "jsonObserver",
    "logAccess",
    "redact",
    "textObserver",
]
