# -*- test-case-name: tests.http.test_auth -*-
"""
Gateway API keys as configured values: who a key is and what it may do.

Keys are kept only as SHA-256 digests here (a config may give the digest
itself, so the key never sits in a file); L{codexgw.http.auth} compares a
presented key with them. The key's I{name} is what logs and metrics see.
"""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase

import attrs


@attrs.frozen
class Limits:
    """
    Rate limits: a key's own (C{auth.keys[].limits}), the defaults
    (C{rate_limits}), and what L{codexgw.state.ratelimit} counts against.
    L{None} means unlimited.
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None


#: The name the config loader knows them by: the same type.
KeyLimits = Limits


@attrs.frozen
class ApiKey:
    """
    @ivar name: how logs and metrics refer to the key.
    @ivar digest: SHA-256 of the key (never the key).
    @ivar models: model globs it may use; empty means all.
    """

    name: str
    digest: bytes = attrs.field(repr=False)
    models: tuple[str, ...] = ()
    limits: Limits = Limits()

    def allows(self, model: str) -> bool:
        return not self.models or any(fnmatchcase(model, m) for m in self.models)


ANONYMOUS = ApiKey(name="anonymous", digest=b"")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()
