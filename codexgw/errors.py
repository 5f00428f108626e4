# -*- test-case-name: tests.http.test_exchange,tests.upstream.test_retry_after -*-
"""
Errors as typed values, mapped to OpenAI's error shape in one place.

Every failure a client can see is one of these classes: the HTTP status,
OpenAI C{type} and C{code} live on the class, so a route raises
C{InvalidRequest("...", param="model")} and never builds an error body by
hand. L{error_body} is the only function that serialises them.
"""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """
    An error a client receives as C{{"error": {message, type, param, code}}}.

    @cvar status: the HTTP status code the client sees.
    @cvar type: OpenAI's error C{type} string.
    @cvar code: OpenAI's error C{code}, or L{None}.
    """

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    kind: str = "other"
    """
    For C{upstream_error}s, the bounded metric label: connect, timeout,
    status or circuit_open (never a code an upstream wrote).
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return errorObject(self.message, self.type, self.code, self.param)


class InvalidRequest(GatewayError):
    """The client sent something we cannot act on (400)."""

    status = 400
    type = "invalid_request_error"


class NotFound(GatewayError):
    """A route, model or stored object does not exist (404)."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class MalformedRequest(InvalidRequest):
    """
    The request's HTTP framing cannot be parsed: its request line, a header,
    C{Content-Length} or C{Transfer-Encoding}, or its chunked body (400).
    The connection is closed: nothing after the error can be trusted to
    start the next request.
    """

    code = "malformed_http_request"


class RequestTimeout(GatewayError):
    """
    The client did not send its whole request (head and body) within
    C{server.request_timeout} (408); the connection is closed.
    """

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class HeadersTooLarge(GatewayError):
    """The request line and headers are too long, or too many (431)."""

    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamUnavailable(GatewayError):
    """The upstream could not be reached or broke before answering (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"
    kind = "connect"


class UpstreamFailed(GatewayError):
    """
    The upstream's answer to a client that did not stream failed part way,
    so no whole answer could be made (502); C{code} is what the failure
    said, if anything.
    """

    status = 502
    type = "upstream_error"
    code = None
    kind = "stream"


class UpstreamTimeout(GatewayError):
    """The upstream did not answer in time (504)."""

    status = 504
    type = "upstream_error"
    code = "upstream_timeout"
    kind = "timeout"


class ServiceUnavailable(GatewayError):
    """
    A backend of the gateway itself (the shared rate limiter, the response
    store) cannot be reached right now; retrying later may work (503).
    """

    status = 503
    type = "server_error"
    code = "service_unavailable"


class TooManyConnections(ServiceUnavailable):
    """
    C{server.max_connections} client connections are already open (503,
    C{Retry-After}); the new one is answered and closed at once.
    """

    code = "too_many_connections"


class StoreUnavailable(ServiceUnavailable):
    """
    The response store cannot be read or written right now: Redis is away or
    timed out, the SQLite file cannot be opened, is read-only or corrupt
    (503, C{Retry-After}).

    The client is told only that; C{cause} (what the backend said) goes to
    the log, and into C{str()} so log lines that format the error carry it.

    @ivar cause: what went wrong, for operators.
    """

    code = "store_unavailable"

    def __init__(self, cause: str, retryAfter: int = 1) -> None:
        super().__init__(
            "stored responses cannot be read or written right now; retry",
            headers={b"retry-after": str(retryAfter).encode("ascii")},
        )
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.message} ({self.cause})"


class ShuttingDown(GatewayError):
    """The gateway is draining for shutdown; another replica should answer."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"


def adviseRetry(error: GatewayError, seconds: int) -> GatewayError:
    """
    Give a 429 its C{Retry-After} of C{seconds} and, for clients that
    only see the message (a C{response.failed} in a stream), say the same in
    words: the Codex CLI reads C{try again in Ns} from a
    C{rate_limit_exceeded} error's message.
    """
    if error.status != 429:
        return error
    error.headers[b"retry-after"] = b"%d" % max(1, seconds)
    if "try again in" not in error.message.lower():
        error.message = f"{error.message.rstrip()} Please try again in {seconds}s."
    return error


def error_body(error: GatewayError) -> bytes:
    """Serialise C{error} in OpenAI's error shape."""
    return orjson.dumps(error.to_dict())


def errorObject(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """
    OpenAI's error shape, C{{"error": {message, type, param, code}}}: the one
    place it is built, for error answers, the error event that ends a relayed
    Chat stream, a bridged Chat stream's error chunk and a whole answer that
    failed.
    """
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
