# -*- test-case-name: tests.http.test_auth -*-
"""
CORS for browser clients: explicit origins only.

A wildcard is allowed only without credentials (config validation refuses
the pair), and the allowed origin is echoed rather than C{*} whenever one
is configured, with C{Vary: Origin} so caches keep answers apart.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from codexgw.config import CorsConfig

_METHODS = b"GET, POST, DELETE, OPTIONS"
_HEADERS = b"authorization, content-type, api-key, x-api-key, x-request-id, openai-beta"
_EXPOSE = b"x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens"


class CORSResource(Resource):
    """Wraps the gateway's (leaf) resource, answering preflights itself."""

    isLeaf = True

    def __init__(self, wrapped: IResource, config: CorsConfig) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._wrapped = wrapped
        self._any = "*" in config.allowed_origins
        self._origins = frozenset(o.encode() for o in config.allowed_origins if o != "*")
        self._credentials = config.allow_credentials
        self._maxAge = str(config.max_age).encode()

    def _allowed(self, origin: bytes | None) -> bytes | None:
        if origin is None:
            return None
        if origin in self._origins:
            return origin
        if self._any:
            return b"*"
        return None

    def render(self, request: Request) -> Any:
        origin = request.getHeader(b"origin")
        allowed = self._allowed(origin)
        if allowed is not None:
            request.setHeader(b"access-control-allow-origin", allowed)
            request.setHeader(b"vary", b"Origin")
            if self._credentials:
                request.setHeader(b"access-control-allow-credentials", b"true")
        if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
            request.setHeader(b"server", b"codexgw")
            request.setHeader(b"x-content-type-options", b"nosniff")
            if allowed is None:
                request.setResponseCode(403)
                return b""
            request.setResponseCode(204)
            request.setHeader(b"access-control-allow-methods", _METHODS)
            asked = request.getHeader(b"access-control-request-headers")
            request.setHeader(b"access-control-allow-headers", asked or _HEADERS)
            request.setHeader(b"access-control-max-age", self._maxAge)
            return b""
        if allowed is not None:
            request.setHeader(b"access-control-expose-headers", _EXPOSE)
        return self._wrapped.render(request)
