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
    context_overflow_message,
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
    UpstreamFailed,
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

    def test_anthropic_type_names_stay_as_they_are(self) -> None:
        # An upstream of Anthropic's dialect names the type itself; it is
        # not a hub code to map.
        for kind in (
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "not_found_error",
            "request_too_large",
            "rate_limit_error",
            "api_error",
            "overloaded_error",
        ):
            self.assertEqual(stream_error_event(kind, "m")["error"]["type"], kind)
        self.assertEqual(stream_error_event("frobnicated", "m")["error"]["type"], "api_error")


#: OpenAI's (and DeepSeek's, and vLLM's) words for a context overflow.
OPENAI_TOO_LONG = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 130000 tokens. Please reduce the length of the messages."
)


class ContextOverflowTests(SynchronousTestCase):
    """
    Claude Code knows a context overflow by Anthropic's words, "prompt is
    too long" (it compacts, reading the numbers of "N tokens > M
    maximum"), and a C{max_tokens} too large for the room left by
    "input length and `max_tokens` exceed context limit: N + K > M"
    (it retries with less).
    """

    def test_openai_words_become_anthropics_with_the_numbers(self) -> None:
        for message, expected in [
            (OPENAI_TOO_LONG, "prompt is too long: 130000 tokens > 128000 maximum"),
            (
                "This model's maximum context length is 131072 tokens. However, you requested "
                "140000 tokens (139000 in the messages, 1000 in the completion). Please reduce "
                "the length of the messages or completion.",
                "prompt is too long: 139000 tokens > 131072 maximum",
            ),
            (
                "This model's maximum context length is 4096 tokens. However, your request has "
                "5000 input tokens. Please reduce the length of the input messages.",
                "prompt is too long: 5000 tokens > 4096 maximum",
            ),
        ]:
            self.assertEqual(context_overflow_message(message), expected)

    def test_a_max_tokens_that_does_not_fit_is_worded_so(self) -> None:
        expected = (
            "input length and `max_tokens` exceed context limit: {} + {} > {}, decrease input "
            "length or `max_tokens` and try again"
        )
        for message, numbers in [
            (
                "This model's maximum context length is 128000 tokens. However, you requested "
                "130000 tokens (100000 in the messages, 30000 in the completion). Please reduce "
                "the length of the messages or completion.",
                (100000, 30000, 128000),
            ),
            (
                "'max_tokens' or 'max_completion_tokens' is too large: 32000. This model's "
                "maximum context length is 32768 tokens and your request has 1000 input tokens "
                "(32000 > 32768 - 1000).",
                (1000, 32000, 32768),
            ),
        ]:
            self.assertEqual(context_overflow_message(message), expected.format(*numbers))

    def test_words_without_numbers_follow_prompt_is_too_long(self) -> None:
        message = "Your input exceeds the context window of this model. Please adjust your input."
        self.assertEqual(context_overflow_message(message), f"prompt is too long: {message}")

    def test_anthropics_own_words_are_kept(self) -> None:
        for message in (
            "prompt is too long: 210000 tokens > 200000 maximum",
            "input length and `max_tokens` exceed context limit: 188059 + 21333 > 200000, "
            "decrease input length or `max_tokens` and try again",
        ):
            self.assertEqual(context_overflow_message(message), message)

    def test_an_error_answer_is_worded_so(self) -> None:
        error = InvalidRequest(OPENAI_TOO_LONG, code="context_length_exceeded")
        self.assertEqual(
            messages_error_body(error),
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 130000 tokens > 128000 maximum",
                },
            },
        )

    def test_an_overflow_that_failed_a_stream_is_an_invalid_request(self) -> None:
        # A client that did not stream, of an upstream that failed its
        # stream: Anthropic answers a too-long prompt 400, never a 5xx.
        error = UpstreamFailed(
            "Your input exceeds the context window", code="context_length_exceeded"
        )
        self.assertEqual(messages_error_body(error)["error"]["type"], "invalid_request_error")

    def test_a_stream_error_event_is_worded_so(self) -> None:
        self.assertEqual(
            stream_error_event("context_length_exceeded", OPENAI_TOO_LONG),
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 130000 tokens > 128000 maximum",
                },
            },
        )

    def test_other_errors_keep_their_words(self) -> None:
        self.assertEqual(messages_error_body(InvalidRequest("bad"))["error"]["message"], "bad")
        self.assertEqual(
            stream_error_event("rate_limit_exceeded", "slow")["error"]["message"], "slow"
        )


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
