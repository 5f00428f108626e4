# -*- test-case-name: tests.http.test_auth -*-
"""
Gateway API keys: who may use the gateway, and for which models.

Keys are kept only as SHA-256 digests (a config may give the digest itself,
so the key never sits in a file), and a presented key is compared with every
configured digest in constant time, so response timing says nothing about
how close a guess was. The key's I{name} is what logs and metrics see.
"""

from __future__ import annotations

import hmac

from twisted.web.server import Request

from codexgw.config.keys import ANONYMOUS, ApiKey, digest
from codexgw.errors import GatewayError, Unauthorized


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


def presentedKey(request: Request) -> str | None:
    """The key a client sent: C{Authorization: Bearer}, C{api-key} or C{x-api-key}."""
    header = request.getHeader(b"authorization")
    if header:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip().decode("latin-1")
    for name in (b"api-key", b"x-api-key"):
        given = request.getHeader(name)
        if given:
            return given.strip().decode("latin-1")
    return None


class Authenticator:
    """
    @param enabled: when false every request is L{ANONYMOUS}; only an
        explicit config choice turns it off (see L{codexgw.config}).
    """

    def __init__(self, keys: tuple[ApiKey, ...], enabled: bool) -> None:
        self.keys = keys
        self.enabled = enabled

    def authenticate(self, request: Request) -> ApiKey:
        """
        @raise Unauthorized: no key, or one that matches none configured.
        """
        if not self.enabled:
            return ANONYMOUS
        presented = presentedKey(request)
        if presented is None:
            raise Unauthorized(
                "missing API key: send it as 'Authorization: Bearer <key>' "
                "(or 'x-api-key: <key>', as Anthropic's clients do)",
                headers={b"www-authenticate": b'Bearer realm="codexgw"'},
            )
        wanted = digest(presented)
        found = None
        for key in self.keys:
            # Every digest is compared, match or not: no early exit to time.
            if hmac.compare_digest(key.digest, wanted):
                found = key
        if found is None:
            raise Unauthorized(
                "incorrect API key provided",
                headers={b"www-authenticate": b'Bearer realm="codexgw"'},
            )
        return found

    def authorize(self, key: ApiKey, model: str) -> None:
        """@raise Forbidden: C{key} may not use C{model}."""
        if not key.allows(model):
            raise Forbidden(f"the key {key.name!r} may not use the model {model!r}", param="model")
