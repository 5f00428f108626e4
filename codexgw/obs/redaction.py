# -*- test-case-name: tests.obs.test_redaction -*-
"""
Keeping secrets home: every byte the gateway sends a client passes through
one L{Redactor}, which replaces each configured credential (upstream keys,
secret upstream headers, gateway keys, the Redis password).

Some upstreams echo the request's C{Authorization} (or Anthropic's
C{x-api-key}) header in their errors, and a relay must not hand that back. The check runs at the edge (the
site's request writes it), so no route can forget it, and it works on the
bytes as they leave: streamed or not, relayed or translated.

Replacements keep the length of what they replace (C{[redacted**…]}), so a
C{Content-Length} copied from the upstream stays true and the JSON around a
key stays valid. A key split across two writes is caught by holding back,
until the next write or the end, only a tail that could begin a secret; SSE
writes end at a line end, which no secret contains, so streams are never
delayed by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MIN_SECRET = 8
"""
Shorter values are not redacted: replacing every C{test} in every answer
would mangle text, and a credential that short is no credential.
"""

_MARK = b"[redacted"


def _mask(length: int) -> bytes:
    if length < len(_MARK) + 1:
        return b"*" * length
    return _MARK + b"*" * (length - len(_MARK) - 1) + b"]"


def _variants(secret: str) -> set[bytes]:
    """The secret as bytes, and as it reads inside a JSON string (and with
    C{/} escaped as some servers write it)."""
    raw = secret.encode("utf-8")
    escaped = orjson.dumps(secret)[1:-1]
    return {raw, escaped, escaped.replace(b"/", b"\\/")}


class Redactor:
    """
    Replaces a fixed set of secrets in bytes.

    @param secrets: the plain-text credentials; those shorter than
        L{MIN_SECRET} (and empty ones) are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[bytes] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET:
                found |= _variants(secret)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = tuple(sorted(found, key=len, reverse=True))
        self.pairs = tuple((s, _mask(len(s))) for s in self._secrets)
        self.chars = frozenset(b for s in self._secrets for b in s)
        self.active = bool(self._secrets)

    def redact(self, data: bytes) -> bytes:
        """C{data} with every whole secret in it replaced."""
        # find() rather than `in`: the same search, half the call overhead
        # in CPython 3.11, and this runs on every write of every answer.
        for secret, mask in self.pairs:
            if data.find(secret) != -1:
                data = data.replace(secret, mask)
        return data

    def text(self, value: str) -> str:
        """L{redact} for text (header values, messages)."""
        if not self.active:
            return value
        raw = value.encode("utf-8", "surrogateescape")
        clean = self.redact(raw)
        return value if clean is raw else clean.decode("utf-8", "surrogateescape")

    def partial(self, data: bytes) -> int:
        """
        How many bytes at the end of C{data} could be the start of a secret
        that the next write completes (0 almost always: the last byte is
        checked first, and line ends and JSON punctuation are in no key).
        """
        if not data or data[-1] not in self.chars:
            return 0
        longest = 0
        for secret in self._secrets:
            first = secret[0]
            start = max(0, len(data) - len(secret) + 1)
            at = data.find(first, start)
            while at >= 0:
                if secret.startswith(data[at:]):
                    longest = max(longest, len(data) - at)
                    break
                at = data.find(first, at + 1)
        return longest

    def stream(self) -> StreamRedactor:
        """A redactor for one response body written in several pieces."""
        return StreamRedactor(self)


class StreamRedactor:
    """
    L{Redactor} over one body written piece by piece: a secret split
    between two writes is still replaced.
    """

    __slots__ = ("_redactor", "_pairs", "_chars", "_held")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pairs = redactor.pairs
        self._chars = redactor.chars
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What of C{data} can be sent now, redacted."""
        # Redactor.redact and the first test of partial(), inlined: this
        # is the per-write cost of every answer.
        if self._held:
            data = self._held + data
            self._held = b""
        for secret, mask in self._pairs:
            if data.find(secret) != -1:
                data = data.replace(secret, mask)
        if data and data[-1] in self._chars:
            keep = self._redactor.partial(data)
            if keep:
                self._held = data[-keep:]
                data = data[:-keep]
        return data

    def flush(self) -> bytes:
        """The held-back tail, at the end of the body (it is no secret)."""
        held, self._held = self._held, b""
        return held


NO_SECRETS = Redactor(())


def configSecrets(config: object) -> list[str]:
    """
    Every credential in a L{codexgw.config.Config}: upstream keys and the
    values of upstream (and provider profile) headers that carry
    credentials, plain-text gateway keys, the seal key, and the password in
    the Redis URL.
    """
    from urllib.parse import urlsplit

    secrets: list[str] = []
    headerSets: list[Any] = []
    for upstream in getattr(config, "upstreams", {}).values():
        if upstream.api_key:
            secrets.append(upstream.api_key)
        headerSets.append(upstream.headers)
    for profile in (getattr(config, "profiles", None) or {}).values():
        if isinstance(profile, dict) and isinstance(profile.get("headers"), dict):
            headerSets.append(profile["headers"])
    for headers in headerSets:
        for name, value in headers.items():
            if isinstance(value, str) and _credentialHeader(str(name)):
                secrets.append(value)
                # "Bearer sk-…" also ends in the bare token.
                secrets.append(value.rpartition(" ")[2])
    secrets.extend(getattr(config, "gateway_secrets", ()))
    secrets.extend(s for s in [getattr(config, "seal_key", None)] if s)
    redis = getattr(config, "redis", None)
    if redis is not None:
        password = urlsplit(redis.url).password
        if password:
            secrets.append(password)
    return secrets


def _credentialHeader(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("auth", "key", "token", "secret", "cookie"))


__all__ = ["MIN_SECRET", "NO_SECRETS", "Redactor", "StreamRedactor", "configSecrets"]
