"""
C{POST /v1/messages} and C{/v1/messages/count_tokens} onto a Messages
upstream: relayed untouched, the upstream's key substituted, Anthropic's
headers forwarded, the upstream's errors and retries as Anthropic means
them, and its key never echoed.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.messages.errors import estimate_tokens
from tests.fakes import messages_upstream as anthropic
from tests.harness import Harness, makeConfig

MESSAGES = b"/v1/messages"
UPSTREAM_KEY = "sk-ant-upstream-0123456789"
GATEWAY_KEY = "sk-gw-alice-0123456789"
AUTH = {"auth": {"keys": [{"name": "alice", "key": GATEWAY_KEY}]}}
CLAUDE = {
    b"x-api-key": GATEWAY_KEY.encode(),
    b"anthropic-version": b"2023-06-01",
    b"anthropic-beta": b"interleaved-thinking-2025-05-14,context-management-2025-06-27",
}


def messagesHarness(extra: dict | None = None, **upstream: object) -> Harness:
    upstream.setdefault("wire_api", "messages")
    upstream.setdefault("provider", "anthropic")
    upstream.setdefault("api_key", UPSTREAM_KEY)
    return Harness(makeConfig({**AUTH, **(extra or {})}, **upstream))


class RelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = messagesHarness()

    def test_the_body_goes_byte_for_byte_with_the_upstream_key_as_x_api_key(self) -> None:
        client = self.h.connect()
        raw = b'{"model":  "claude-sonnet-4-5", "max_tokens": 9, "messages": [{"role":"user","content":"hi"}]}'
        client.send(b"POST", MESSAGES + b"?beta=true", raw, CLAUDE)
        [sent] = self.h.sent
        self.assertEqual(sent.body, raw)
        self.assertEqual(sent.uri, b"http://upstream.test/v1/messages?beta=true")
        self.assertEqual(sent.header(b"x-api-key"), UPSTREAM_KEY.encode())
        self.assertIsNone(sent.header(b"authorization"))
        self.assertEqual(sent.header(b"anthropic-version"), b"2023-06-01")
        self.assertEqual(sent.header(b"anthropic-beta"), CLAUDE[b"anthropic-beta"])
        answer = anthropic.wholeText("hello")
        sent.respond(200, {**anthropic.JSON, b"request-id": b"req_up1"}, answer)
        status, headers, body = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(body, answer)
        self.assertEqual(headers[b"request-id"], b"req_up1")

    def test_a_stream_is_relayed_as_it_arrives(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True), CLAUDE)
        [sent] = self.h.sent
        response = sent.respond(200, anthropic.SSE)
        events = anthropic.textEvents(["Hel", "lo"])
        for e in events[:3]:
            response.send(e)
        self.h.reactor.advance(0)  # the end of the reactor turn that read them
        self.assertIn(b"message_start", client.response()[2])
        for e in events[3:]:
            response.send(e)
        response.end()
        status, headers, body = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/event-stream")
        self.assertEqual(body, b"".join(events))

    def test_a_relayed_stream_that_goes_silent_ends_in_an_anthropic_error_event(self) -> None:
        h = messagesHarness(timeouts={"idle": 30})
        client = h.connect()
        client.post(MESSAGES, anthropic.request(stream=True), CLAUDE)
        response = h.sent[0].respond(200, anthropic.SSE)
        events = anthropic.textEvents(["Hel", "lo"])
        for e in events[:4]:
            response.send(e)
        h.reactor.advance(31)
        raw = client.response()[2]
        self.assertTrue(raw.startswith(b"".join(events[:4])))
        tail = raw[len(b"".join(events[:4])) :].split(b"\n\n")
        last = next(t for t in reversed(tail) if t.startswith(b"event: "))
        name, _, data = last.partition(b"\ndata: ")
        self.assertEqual(name, b"event: error")
        error = orjson.loads(data)
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["type"], "api_error")
        self.assertNotIn(b'data: {"error"', raw)

    def test_tokens_are_counted_from_the_first_and_last_events_of_a_relayed_stream(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True), CLAUDE)
        response = self.h.sent[0].respond(200, anthropic.SSE)
        for e in anthropic.textEvents(["Hel", "lo"], output=7):
            # Split inside the first event: its data line comes in a second read.
            response.send(e[:20])
            response.send(e[20:])
        response.end()
        self.assertEqual(client.response()[0], 200)
        labels = {"model": "claude-sonnet-4-5", "key": "alice"}
        # input 11, cache creation 2, cache reads 5: all input.
        self.assertEqual(self.h.metric("codexgw_tokens_total", direction="input", **labels), 18)
        self.assertEqual(self.h.metric("codexgw_tokens_total", direction="output", **labels), 7)

    def test_tokens_are_counted_from_a_relayed_stream_read_at_once(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(stream=True), CLAUDE)
        body = anthropic.stream(anthropic.textEvents(["Hi"], output=4))
        self.h.sent[0].respond(200, anthropic.SSE, body)
        self.assertEqual(client.response()[2], body)
        labels = {"model": "claude-sonnet-4-5", "key": "alice"}
        self.assertEqual(self.h.metric("codexgw_tokens_total", direction="input", **labels), 18)
        self.assertEqual(self.h.metric("codexgw_tokens_total", direction="output", **labels), 4)

    def test_anthropic_version_defaults_when_the_client_names_none(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(), {b"x-api-key": GATEWAY_KEY.encode()})
        [sent] = self.h.sent
        self.assertEqual(sent.header(b"anthropic-version"), b"2023-06-01")
        self.assertIsNone(sent.header(b"anthropic-beta"))

    def test_the_model_is_renamed_only_when_routing_maps_it(self) -> None:
        h = messagesHarness(
            {"models": [{"match": "claude-sonnet-*", "upstream": "main", "model": "up-model"}]}
        )
        client = h.connect()
        client.post(MESSAGES, anthropic.request(), CLAUDE)
        [sent] = h.sent
        self.assertEqual(orjson.loads(sent.body)["model"], "up-model")
        self.assertEqual(orjson.loads(sent.body)["messages"], anthropic.request()["messages"])

    def test_the_upstreams_error_is_relayed_with_its_status(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(), CLAUDE)
        body = anthropic.error("invalid_request_error", "max_tokens: Field required")
        self.h.sent[0].respond(400, anthropic.JSON, body)
        status, _, got = client.response()
        self.assertEqual((status, got), (400, body))

    def test_an_echoed_upstream_key_is_redacted(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(), CLAUDE)
        echo = anthropic.error("authentication_error", f"invalid x-api-key: {UPSTREAM_KEY}")
        self.h.sent[0].respond(401, anthropic.JSON, echo)
        status, _, body = client.response()
        self.assertEqual(status, 401)
        self.assertNotIn(UPSTREAM_KEY.encode(), body)
        self.assertIn(b"[redacted", body)
        self.assertEqual(orjson.loads(body)["error"]["type"], "authentication_error")

    def test_the_gateway_key_is_never_sent_upstream(self) -> None:
        client = self.h.connect()
        client.post(
            MESSAGES, anthropic.request(), {b"authorization": b"Bearer " + GATEWAY_KEY.encode()}
        )
        [sent] = self.h.sent
        everything = b"".join(v for _, vs in sent.headers.getAllRawHeaders() for v in vs)
        self.assertNotIn(GATEWAY_KEY.encode(), everything + sent.body)


class RetryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = messagesHarness(retries={"max_attempts": 3, "backoff_base": 0.1})

    def test_overloaded_529_is_retried_before_the_first_byte(self) -> None:
        client = self.h.connect()
        client.post(MESSAGES, anthropic.request(), CLAUDE)
        self.h.sent[0].respond(
            529, anthropic.JSON, anthropic.error("overloaded_error", "Overloaded")
        )
        self.h.reactor.advance(1)
        self.assertEqual(len(self.h.sent), 2)
        self.h.sent[1].respond(200, anthropic.JSON, anthropic.wholeText("ok"))
        status, _, body = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(orjson.loads(body)["content"][0]["text"], "ok")
        self.assertEqual(
            self.h.metric("codexgw_upstream_retries_total", upstream="main", reason="529"), 1
        )

    def test_a_429_keeps_retry_after_in_whole_seconds(self) -> None:
        h = messagesHarness()
        client = h.connect()
        client.post(MESSAGES, anthropic.request(), CLAUDE)
        h.sent[0].respond(
            429,
            {**anthropic.JSON, b"retry-after": b"7"},
            anthropic.error("rate_limit_error", "slow down"),
        )
        status, headers, body = client.response()
        self.assertEqual(status, 429)
        self.assertEqual(headers[b"retry-after"], b"7")
        self.assertEqual(orjson.loads(body)["error"]["type"], "rate_limit_error")


class CountTokensTests(SynchronousTestCase):
    def test_count_tokens_is_relayed_to_a_messages_upstream(self) -> None:
        h = messagesHarness()
        client = h.connect()
        client.post(MESSAGES + b"/count_tokens?beta=true", anthropic.request(), CLAUDE)
        [sent] = h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/messages/count_tokens?beta=true")
        self.assertEqual(sent.header(b"x-api-key"), UPSTREAM_KEY.encode())
        sent.respond(200, anthropic.JSON, b'{"input_tokens": 42}')
        status, _, body = client.response()
        self.assertEqual((status, orjson.loads(body)), (200, {"input_tokens": 42}))

    def test_an_upstream_that_cannot_count_gets_the_estimate_answered(self) -> None:
        h = messagesHarness(provider="deepseek-anthropic")
        client = h.connect()
        body = anthropic.request("some words to count")
        client.post(MESSAGES + b"/count_tokens", body, CLAUDE)
        h.sent[0].respond(404, anthropic.JSON, anthropic.error("not_found_error", "Not Found"))
        status, _, got = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(orjson.loads(got), {"input_tokens": estimate_tokens(body)})

    def test_a_count_tokens_error_is_relayed(self) -> None:
        h = messagesHarness()
        client = h.connect()
        client.post(MESSAGES + b"/count_tokens", anthropic.request(), CLAUDE)
        error = anthropic.error("invalid_request_error", "messages: Field required")
        h.sent[0].respond(400, anthropic.JSON, error)
        self.assertEqual(client.response()[::2], (400, error))


class HeaderKeyTests(SynchronousTestCase):
    def test_a_key_configured_as_an_x_api_key_header_is_redacted_too(self) -> None:
        secret = "sk-ant-in-a-header-0123456789"
        h = Harness(
            makeConfig(
                AUTH, wire_api="messages", provider="anthropic", headers={"x-api-key": secret}
            )
        )
        client = h.connect()
        client.post(MESSAGES, anthropic.request(stream=True), CLAUDE)
        self.assertEqual(h.sent[0].header(b"x-api-key"), secret.encode())
        echo = anthropic.event(
            {"type": "error", "error": {"type": "api_error", "message": f"bad key {secret}"}}
        )
        h.sent[0].respond(200, anthropic.SSE, echo)
        raw = client.raw
        self.assertNotIn(secret.encode(), raw)
        self.assertIn(b"bad key [redacted", raw)
