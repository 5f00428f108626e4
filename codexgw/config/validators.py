# -*- test-case-name: tests.test_config -*-
"""
Checks of one value, each returning what is wrong (the message of a
L{Problem}) or L{None}. The schema names them in its field metadata; they know
nothing of where the value sits, so the key is the caller's to add.
"""

from __future__ import annotations

import os
import re

# The scheme and a C{user:password@} (or a lone C{token@}) before the host.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_HTTP_URL = re.compile(r"^https?://[^/\s]+")
_ORIGIN = re.compile(r"https?://[^/\s]+")
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
REASONING_LEVELS = ("minimal", "low", "medium", "high", "xhigh")


def redactUserinfo(url: str) -> str:
    """C{url} with any credentials before the host shown as C{***}: safe to print."""
    return _USERINFO.sub(r"\1***@", url)


def hasUserinfo(url: str) -> bool:
    return _USERINFO.match(url) is not None


def httpURL(url: str) -> str | None:
    """An C{http://} or C{https://} URL with a host; never echoes credentials."""
    if not _HTTP_URL.match(url):
        return f"expected an http:// or https:// URL, got {redactUserinfo(url)!r}"
    return None


def upstreamName(name: str) -> str | None:
    if not _UPSTREAM_NAME.match(name):
        return "upstream names are letters, digits, _ . - only"
    return None


def origin(value: str) -> str | None:
    if value != "*" and not _ORIGIN.fullmatch(value):
        return f"expected an origin such as https://app.example (no path), got {value!r}"
    return None


def reasoningLevel(value: str) -> str | None:
    if value not in REASONING_LEVELS:
        return f"expected minimal..xhigh, got {value!r}"
    return None


def redisURL(value: str) -> str | None:
    if not value.startswith(("redis://", "rediss://")):
        return "expected redis[s]://[[user]:password@]host[:port][/db]"
    return None


def redisCAFile(value: str, url: str) -> str | None:
    if not url.startswith("rediss://"):
        return "is for TLS: the url must be rediss://"
    if not os.path.isfile(value):
        return f"no such file: {value}"
    return None


def sha256Hex(value: str) -> str | None:
    if not _SHA256.fullmatch(value):
        return "expected 64 hexadecimal digits"
    return None


def positiveSeconds(value: float) -> str | None:
    if value == 0:
        return "expected a positive number of seconds, got 0"
    return None


def isLoopback(listen: str) -> bool:
    """Whether an endpoint string only accepts connections from this machine."""
    kind = listen.split(":", 1)[0].lower()
    if kind == "unix":
        return True
    m = re.search(r"interface=((?:\\:|[^:])+)", listen)
    if m is None:
        return False
    host = m.group(1).replace("\\", "").strip("[]").lower()
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
