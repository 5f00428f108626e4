"""
Tests for L{codexgw.dialects.messages.errors}: Anthropic's error answers as
the gateway's errors (status kept), the gateway's errors in Anthropic's
shape, and the C{count_tokens} estimate.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.messages.errors import (
    error_type,
    estimate_tokens,
    messages_error_body,
    stream_error_event,
)
from codexgw.errors import (
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def anthropic(kind: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    )


class UpstreamErrorTests(SynchronousTestCase):
    def test_overloaded_keeps_529_and_is_a_retryable_upstream_failure(self) -> None:
        error = MESSAGES.errorToHub(529, anthropic("overloaded_error", "Overloaded"))
        self.assertIsInstance(error, UpstreamUnavailable)
        self.assertEqual(
            (error.status, error.code, error.message), (529, "server_is_overloaded", "Overloaded")
        )
        self.assertEqual(error.kind, "status")

    def test_rate_limit_is_429(self) -> None:
        error = MESSAGES.errorToHub(
            429, anthropic("rate_limit_error", "Number of requests exceeded")
        )
        self.assertIsInstance(error, RateLimited)
        self.assertEqual((error.status, error.code), (429, "rate_limit_exceeded"))

    def test_a_prompt_too_long_is_context_length_exceeded(self) -> None:
        error = MESSAGES.errorToHub(
            400,
            anthropic(
                "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"
            ),
        )
        self.assertIsInstance(error, InvalidRequest)
        self.assertEqual((error.status, error.code), (400, "context_length_exceeded"))

    def test_other_types_keep_their_status(self) -> None:
        for status, kind, cls, code in [
            (401, "authentication_error", Unauthorized, "invalid_api_key"),
            (403, "permission_error", Unauthorized, "invalid_api_key"),
            (404, "not_found_error", NotFound, "not_found"),
            (400, "invalid_request_error", InvalidRequest, "invalid_request_error"),
            (500, "api_error", UpstreamUnavailable, "upstream_unavailable"),
        ]:
            error = MESSAGES.errorToHub(status, anthropic(kind, "x"))
            self.assertIsInstance(error, cls)
            self.assertEqual((error.status, error.code), (status, code), kind)

    def test_a_body_that_is_not_json_is_the_message(self) -> None:
        error = MESSAGES.errorToHub(502, b"<html>Bad gateway</html>")
        self.assertEqual((error.status, error.message), (502, "<html>Bad gateway</html>"))
        self.assertEqual(MESSAGES.errorToHub(503, b"").message, "upstream answered HTTP 503")


class ClientShapeTests(SynchronousTestCase):
    def test_gateway_errors_in_anthropic_shape_by_status(self) -> None:
        self.assertEqual(
            messages_error_body(InvalidRequest("bad", param="model"), "req_9"),
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "bad"},
                "request_id": "req_9",
            },
        )
        self.assertEqual(
            messages_error_body(RateLimited("slow"))["error"]["type"], "rate_limit_error"
        )
        self.assertEqual(messages_error_body(UpstreamTimeout("late"))["error"]["type"], "api_error")
        self.assertNotIn("request_id", messages_error_body(Unauthorized("no")))

    def test_types_by_status(self) -> None:
        self.assertEqual(
            {
                s: error_type(s)
                for s in (400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 504, 529)
            },
            {
                400: "invalid_request_error",
                401: "authentication_error",
                403: "permission_error",
                404: "not_found_error",
                413: "request_too_large",
                422: "invalid_request_error",
                429: "rate_limit_error",
                500: "api_error",
                502: "api_error",
                503: "overloaded_error",
                504: "api_error",
                529: "overloaded_error",
            },
        )

    def test_stream_errors_by_hub_code(self) -> None:
        self.assertEqual(
            stream_error_event("rate_limit_exceeded", "m"),
            {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}},
        )
        self.assertEqual(
            stream_error_event("server_is_overloaded", "m")["error"]["type"], "overloaded_error"
        )
        self.assertEqual(stream_error_event(None, "m")["error"]["type"], "api_error")


class EstimateTests(SynchronousTestCase):
    def test_a_quarter_of_the_json_bytes_of_system_messages_and_tools(self) -> None:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 400}]}
        size = len(orjson.dumps({"messages": body["messages"]}))
        self.assertEqual(estimate_tokens(body), -(-size // 4))
        more = dict(
            body, system="s" * 400, tools=[{"name": "t", "input_schema": {"type": "object"}}]
        )
        self.assertGreater(estimate_tokens(more), estimate_tokens(body) + 100)

    def test_at_least_one(self) -> None:
        self.assertEqual(estimate_tokens({}), 1)
        self.assertEqual(estimate_tokens("nope"), 1)
