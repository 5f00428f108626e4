"""
The Messages routes as every route is: gateway keys in either of the
headers Anthropic's clients send, per-key models, rate limits, and every
error in Anthropic's shape with the status its SDKs map; C{count_tokens}
estimated where the upstream cannot count.
"""

from __future__ import annotations

import hashlib

import orjson
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.messages.errors import estimate_tokens
from tests.fakes import messages_upstream as anthropic
from tests.harness import Harness, makeConfig

MESSAGES = b"/v1/messages"
COUNT = b"/v1/messages/count_tokens"
KEYS = {
    "auth": {
        "keys": [
            {"name": "alice", "key": "sk-alice-0123456789"},
            {
                "name": "bob",
                "sha256": hashlib.sha256(b"sk-bob-0123456789").hexdigest(),
                "models": ["claude-haiku-*"],
            },
        ]
    }
}
ALICE = {b"x-api-key": b"sk-alice-0123456789", b"anthropic-version": b"2023-06-01"}


def anthropicError(body: bytes) -> dict:
    parsed = orjson.loads(body)
    assert parsed["type"] == "error", parsed
    assert set(parsed["error"]) >= {"type", "message"}, parsed
    assert "code" not in parsed["error"], parsed
    return dict(parsed["error"])


class AuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(KEYS, wire_api="messages", provider="anthropic"))

    def post(self, headers: dict[bytes, bytes], model: str = "claude-sonnet-4-5") -> tuple:
        client = self.h.connect()
        before = len(self.h.sent)
        client.post(MESSAGES + b"?beta=true", anthropic.request(model=model), headers)
        if len(self.h.sent) > before:
            self.h.sent[-1].respond(200, anthropic.JSON, anthropic.wholeText("ok"))
        return client.response()

    def test_the_key_is_taken_as_x_api_key_or_bearer(self) -> None:
        for headers in (
            {b"x-api-key": b"sk-alice-0123456789"},
            {b"authorization": b"Bearer sk-alice-0123456789"},
            {b"x-api-key": b"sk-bob-0123456789"},
        ):
            status, _, body = self.post(headers, "claude-haiku-4-5")
            self.assertEqual(status, 200, (headers, body))

    def test_no_key_is_401_authentication_error(self) -> None:
        status, _, body = self.post({})
        self.assertEqual(status, 401)
        self.assertEqual(anthropicError(body)["type"], "authentication_error")
        self.assertEqual(self.h.sent, [])

    def test_a_wrong_key_is_401(self) -> None:
        status, _, body = self.post({b"x-api-key": b"sk-mallory-0123456789"})
        self.assertEqual(status, 401)
        self.assertEqual(anthropicError(body)["type"], "authentication_error")

    def test_a_model_the_key_may_not_use_is_403_permission_error(self) -> None:
        status, _, body = self.post({b"x-api-key": b"sk-bob-0123456789"}, "claude-opus-4-1")
        self.assertEqual(status, 403)
        self.assertEqual(anthropicError(body)["type"], "permission_error")
        self.assertEqual(self.h.sent, [])


class ErrorShapeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(wire_api="messages", provider="anthropic"))

    def test_a_body_that_is_not_json_is_400_invalid_request_error(self) -> None:
        client = self.h.connect()
        client.send(b"POST", MESSAGES, b"{nope", {b"content-type": b"application/json"})
        status, headers, body = client.response()
        self.assertEqual(status, 400)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(anthropicError(body)["type"], "invalid_request_error")

    def test_no_model_is_400(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, {"max_tokens": 5, "messages": []})
        status, _, body = client.response()
        self.assertEqual(status, 400)
        self.assertIn("model", anthropicError(body)["message"])

    def test_a_body_over_the_limit_is_413_request_too_large(self) -> None:
        h = Harness(
            makeConfig(
                {"server": {"max_body_bytes": 1024}}, wire_api="messages", provider="anthropic"
            )
        )
        client = h.connect()
        client.post(MESSAGES, anthropic.request("x" * 4096))
        status, _, body = client.response()
        self.assertEqual(status, 413)
        self.assertEqual(anthropicError(body)["type"], "request_too_large")

    def test_an_unreachable_upstream_is_an_api_error(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        status, _, body = client.response()
        self.assertEqual(status, 502)
        self.assertEqual(anthropicError(body)["type"], "api_error")

    def test_the_gateways_rate_limit_is_429_rate_limit_error_with_retry_after(self) -> None:
        h = Harness(
            makeConfig(
                {"rate_limits": {"requests_per_minute": 1}},
                wire_api="messages",
                provider="anthropic",
            )
        )
        first = h.connect()
        first.post(MESSAGES, anthropic.request())
        h.sent[0].respond(200, anthropic.JSON, anthropic.wholeText("ok"))
        second = h.connect()
        second.post(MESSAGES, anthropic.request())
        status, headers, body = second.response()
        self.assertEqual(status, 429)
        self.assertIn(b"retry-after", headers)
        self.assertEqual(anthropicError(body)["type"], "rate_limit_error")

    def test_an_unknown_messages_path_and_a_wrong_method_are_in_anthropics_shape(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES + b"/batches", anthropic.request())
        status, _, body = client.response()
        self.assertEqual(status, 404)
        self.assertEqual(anthropicError(body)["type"], "not_found_error")
        client = self.h.connect()
        client.send(b"GET", MESSAGES)
        status, headers, body = client.response()
        self.assertEqual(status, 405)
        self.assertEqual(headers[b"allow"], b"POST")
        self.assertEqual(anthropicError(body)["type"], "invalid_request_error")

    def test_other_routes_keep_openais_shape(self) -> None:
        client = self.h.connect()
        client.send(
            b"POST", b"/v1/chat/completions", b"{nope", {b"content-type": b"application/json"}
        )
        self.assertIn("error", orjson.loads(client.response()[2]))
        self.assertNotIn("type", orjson.loads(client.response()[2]))

    def test_the_access_line_and_metrics_count_the_route(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request())
        self.h.sent[0].respond(200, anthropic.JSON, anthropic.wholeText("ok"))
        self.assertEqual(client.response()[0], 200)
        self.assertEqual(
            self.h.metric(
                "codexgw_requests_total",
                route="/v1/messages",
                status="200",
                upstream="main",
                model="claude-sonnet-4-5",
            ),
            1,
        )


class CountTokensEstimateTests(SynchronousTestCase):
    def test_a_chat_upstream_gets_nothing_and_the_estimate_is_answered(self) -> None:
        h = Harness(makeConfig())
        client = h.connect()
        body = anthropic.request("count these words please", system="be brief")
        client.post(COUNT + b"?beta=true", body)
        status, _, got = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(orjson.loads(got), {"input_tokens": estimate_tokens(body)})
        self.assertEqual(h.sent, [])

    def test_a_count_without_messages_is_400(self) -> None:
        h = Harness(makeConfig(wire_api="responses"))
        client = h.connect()
        client.post(COUNT, {"model": "claude-sonnet-4-5"})
        status, _, got = client.response()
        self.assertEqual(status, 400)
        self.assertEqual(anthropicError(got)["type"], "invalid_request_error")


class CancellationTests(SynchronousTestCase):
    def test_a_client_leaving_before_the_answer_aborts_the_attempt_only(self) -> None:
        h = Harness(
            makeConfig(wire_api="messages", provider="anthropic", retries={"max_attempts": 3})
        )
        client = h.connect()
        client.post(MESSAGES, anthropic.request(stream=True))
        client.disconnect()
        h.reactor.advance(30)
        self.assertEqual(len(h.sent), 1)
        self.assertTrue(h.sent[0].cancelled)
        self.assertEqual(h.metric("codexgw_cancellations_total", route="/v1/messages"), 1.0)

    def test_a_client_leaving_mid_stream_stops_the_upstream(self) -> None:
        for wire in ("messages", "chat", "responses"):
            h = Harness(
                makeConfig(wire_api=wire, provider="anthropic" if wire == "messages" else "openai")
            )
            client = h.connect()
            client.post(MESSAGES, anthropic.request(stream=True))
            response = h.sent[0].respond(200, anthropic.SSE)
            client.disconnect()
            self.assertEqual(response.transport.producerState, "stopped", wire)
            self.assertEqual(
                h.metric("codexgw_cancellations_total", route="/v1/messages"), 1.0, wire
            )


class ConfigTests(SynchronousTestCase):
    def test_an_anthropic_profile_on_a_chat_upstream_is_refused_with_the_fix(self) -> None:
        from codexgw.config import ConfigError

        for provider in ("anthropic", "kimi-anthropic"):
            with self.assertRaises(ConfigError) as caught:
                makeConfig(provider=provider)
            self.assertIn("upstreams.main.wire_api", str(caught.exception))
            self.assertIn("wire_api: messages", str(caught.exception))
        makeConfig(provider="anthropic", wire_api="messages")
        # A Chat profile on a Messages upstream is allowed (its key as Bearer).
        makeConfig(provider="deepseek", wire_api="messages")
