# -*- test-case-name: tests.obs.test_logs -*-
"""
Structured logging: one access event per request, and a JSON observer for
operators who ship logs to a collector.

Use with twistd as C{twistd --logger codexgw.obs.logs.jsonObserver codexgw}
(or C{codexgw.obs.logs.textObserver} for redacted text). Events are emitted through
C{twisted.logger}, so embedding programs route them like their own.
Nothing here ever receives a key: callers pass names, never secrets, and
L{redact} scrubs anything that looks like a bearer token as a last guard.
"""

from __future__ import annotations

import re
import sys
from time import time
from typing import IO, Any

import orjson
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)

access = Logger(namespace="codexgw.access")

ACCESS_FORMAT = (
    "{method} {route} {status} {duration_ms}ms upstream={upstream} model={model} "
    "key={key} request_id={request_id} outcome={outcome}"
)
_STANDARD = frozenset(re.findall(r"{(\w+)}", ACCESS_FORMAT))
_ACCESS_FIELDS = len(_STANDARD)

# Credential shapes: a bearer token, an api-key assignment, an OpenAI-style
# sk- key (not the "sk-" inside words like "task-runner").
_TOKEN = r"[A-Za-z0-9._~+/=\-]{6,}"
_SECRET = re.compile(rf"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+|(?<![A-Za-z0-9])sk-){_TOKEN}")


class Throttle:
    """
    At most one line per C{interval} seconds for a condition that every
    request meets during an outage (the store away, say): the first is
    logged at once, later ones are counted and the count rides on the next
    line logged. Without it an outage doubles the log volume: one warning
    beside every access line.
    """

    def __init__(self, clock: Any, interval: float = 60.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: float | None = None
        self._suppressed = 0

    def due(self) -> int | None:
        """The number of lines suppressed since the last one if a line is due now, else L{None}."""
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            self._suppressed += 1
            return None
        self._last = now
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


_CONFIGURED: list[Any] = []


def redactConfigured(redactor: Any) -> None:
    """
    Also scrub, from every line these observers write, the credentials a
    gateway was configured with (its L{codexgw.obs.redaction.Redactor}): the
    shapes below catch most keys, the exact values catch all of them.
    """
    if redactor.active and redactor not in _CONFIGURED:
        _CONFIGURED.append(redactor)


def _mayHoldShape(text: str) -> bool:
    """
    Whether C{_SECRET} can match C{text}: for ASCII text (IGNORECASE then
    means ASCII case), only if one of its three prefixes is in it. The
    regex costs microseconds a line (IGNORECASE defeats its prefix scan);
    these tests, a fraction of one.
    """
    if not text.isascii():
        return True
    low = text.lower()
    return (
        "sk-" in low or "bearer" in low or "apikey" in low or "api-key" in low or "api_key" in low
    )


def _masked(match: re.Match[str]) -> str:
    return match.group(1) + "[redacted]"


def redact(text: str) -> str:
    """Replace anything shaped like a credential, and every configured one."""
    if _mayHoldShape(text):
        text = _SECRET.sub(_masked, text)
    for redactor in _CONFIGURED:
        text = redactor.text(text)
    return text


_ACCESS_EVENT = "{access_line}"  # the format logAccess emits
_INFO = LogLevel.info


def _message(event: dict[str, Any]) -> str:
    """
    C{formatEvent(event)}, with a shortcut for access events: their format
    names one string field, and rendering it through twisted.logger's
    formatter (parse the format, look the field up, format it) cost more
    than the rest of writing the line. The result is the same string.
    """
    if event.get("log_format") == _ACCESS_EVENT:
        line = event.get("access_line")
        if type(line) is str:
            return line
    return formatEvent(event)


def logAccess(**fields: Any) -> None:
    """
    Emit the one access line of a request.

    The line is formatted here, once, with plain str.format, and the event's
    format string only names it: twisted.logger's own formatting per field
    was most of a request's logging cost. The fields ride along for JSON.
    """
    f = fields
    # ACCESS_FORMAT, as an f-string: a third of the cost of str.format.
    line = (
        f"{f['method']} {f['route']} {f['status']} {f['duration_ms']}ms "
        f"upstream={f['upstream']} model={f['model']} key={f['key']} "
        f"request_id={f['request_id']} outcome={f['outcome']}"
    )
    if len(fields) > _ACCESS_FIELDS:
        # Fields beyond the standard ones (a WebSocket's socket id and turn
        # count) follow the line as key=value.
        line += "".join(f" {k}={v}" for k, v in fields.items() if k not in _STANDARD)
    # The event access.info() would emit, made here: Logger.emit checks the
    # level against every LogLevel constant (sorted anew) on each call, a
    # fifth of what writing the line cost.
    logger = access
    fields["access_line"] = line
    fields["log_logger"] = logger
    fields["log_level"] = _INFO
    fields["log_namespace"] = logger.namespace
    fields["log_source"] = logger.source
    fields["log_format"] = _ACCESS_EVENT
    fields["log_time"] = time()
    logger.observer(fields)


def _jsonFormat(event: dict[str, Any]) -> str:
    """One JSON object a line, with the message already rendered."""
    out: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": getattr(event.get("log_level"), "name", None),
        "namespace": event.get("log_namespace"),
        "message": redact(_message(event)),
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


class _TextFormatter:
    """
    Twisted's classic text line, faster: the timestamp is formatted once a
    second instead of once a line, and the line is redacted.
    """

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def __call__(self, event: dict[str, Any]) -> str | None:
        when = event.get("log_time")
        if when is None:
            return formatEventAsClassicLogText(event)
        second = int(when)
        if second != self._second:
            self._second, self._stamp = second, formatTime(second)
        text = _message(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        level = getattr(event.get("log_level"), "name", "-")
        namespace = event.get("log_system") or event.get("log_namespace", "-")
        text = redact(text).replace("\n", "\n\t")
        return f"{self._stamp} [{namespace}#{level}] {text}\n"


def jsonObserver(stream: IO[str] | None = None) -> ILogObserver:
    """A JSON-lines observer (a twistd C{--logger} factory)."""
    return FileLogObserver(stream or sys.stdout, _jsonFormat)


def textObserver(stream: IO[str] | None = None) -> ILogObserver:
    """Twisted's text format, with the redaction guard (also a C{--logger})."""
    return FileLogObserver(stream or sys.stdout, _TextFormatter())


__all__ = ["Throttle", "jsonObserver", "logAccess", "redact", "redactConfigured", "textObserver"]
