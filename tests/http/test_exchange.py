"""
The Chat Completions relay, end to end through the real twisted.web stack,
with no sockets: a client connection on a StringTransport, a fake upstream
agent, and a memory clock.
"""

from __future__ import annotations

import orjson
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed

from tests.harness import Harness, makeConfig

CHAT = b"/v1/chat/completions"
SSE = {b"content-type": b"text/event-stream"}


def chunk(text: str) -> bytes:
    return (
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"
    )


class NonStreamedRelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(api_key="sk-upstream-secret"))
        self.client = self.h.connect()

    def test_body_is_forwarded_byte_for_byte(self) -> None:
        raw = b'{"model": "m1",   "messages": [{"role": "user", "content": "hi \\u00e9"}], "x_extra": 1}'
        self.client.send(b"POST", CHAT, raw)
        [sent] = self.h.sent
        self.assertEqual(sent.method, b"POST")
        self.assertEqual(sent.uri, b"http://upstream.test/v1/chat/completions")
        self.assertEqual(sent.body, raw)

    def test_upstream_key_replaces_the_clients(self) -> None:
        self.client.post(
            CHAT, {"model": "m1", "messages": []}, {b"authorization": b"Bearer client-key"}
        )
        [sent] = self.h.sent
        self.assertEqual(sent.header(b"authorization"), b"Bearer sk-upstream-secret")

    def test_status_body_and_client_headers_come_back(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        body = b'{"id": "chatcmpl-1", "choices": []}'
        self.h.sent[0].respond(
            200,
            {
                b"content-type": b"application/json",
                b"x-request-id": b"req_upstream",
                b"x-ratelimit-remaining-requests": b"99",
                b"set-cookie": b"tracking=1",
            },
            body,
        )
        status, headers, got = self.client.response()
        self.assertEqual((status, got), (200, body))
        self.assertEqual(headers[b"content-type"], b"application/json")
        # Ours is the id in our logs and the one sent upstream; the
        # upstream's own comes back beside it.
        self.assertTrue(headers[b"x-request-id"].startswith(b"gw-"))
        self.assertEqual(headers[b"x-request-id"], self.h.sent[0].header(b"x-request-id"))
        self.assertEqual(headers[b"x-upstream-request-id"], b"req_upstream")
        self.assertEqual(headers[b"x-ratelimit-remaining-requests"], b"99")
        self.assertEqual(headers[b"content-length"], b"%d" % len(body))
        self.assertNotIn(b"set-cookie", headers)
        self.assertEqual(headers[b"server"], b"codexgw")

    def test_upstream_error_keeps_status_body_and_retry_after(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        err = b'{"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}}'
        self.h.sent[0].respond(
            429, {b"content-type": b"application/json", b"retry-after": b"7"}, err
        )
        status, headers, got = self.client.response()
        self.assertEqual((status, got), (429, err))
        self.assertEqual(headers[b"retry-after"], b"7")

    def test_model_rule_renames_the_model_upstream(self) -> None:
        h = Harness(
            makeConfig(
                {"models": [{"match": "gpt-4o*", "upstream": "main", "model": "deepseek-chat"}]}
            )
        )
        client = h.connect()
        client.post(CHAT, {"model": "gpt-4o-mini", "messages": [], "temperature": 0.5})
        sent = orjson.loads(h.sent[0].body)
        self.assertEqual(sent, {"model": "deepseek-chat", "messages": [], "temperature": 0.5})

    def test_client_request_id_is_passed_upstream_and_returned(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []}, {b"x-request-id": b"abc-123"})
        self.assertEqual(self.h.sent[0].header(b"x-request-id"), b"abc-123")
        self.h.sent[0].respond(200, {b"x-request-id": b"req_other"}, b"{}")
        self.assertEqual(self.client.response()[1][b"x-request-id"], b"abc-123")

    def test_gateway_makes_a_request_id_when_none_given(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        given = self.h.sent[0].header(b"x-request-id")
        self.assertTrue(given and given.startswith(b"gw-"))

    def test_body_cut_short_closes_the_client_connection(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        response = self.h.sent[0].respond(200, {b"content-type": b"application/json"}, length=100)
        response.send(b'{"id": "x", ')
        response.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        self.assertTrue(self.client.transport.disconnecting)


class ClientErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.client = self.h.connect()

    def assertError(self, status: int, code: str | None, param: str | None = None) -> dict:
        got, headers, body = self.client.response()
        self.assertEqual(got, status)
        self.assertEqual(headers[b"content-type"], b"application/json")
        error = orjson.loads(body)["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(error["code"], code)
        self.assertEqual(error["param"], param)
        self.assertEqual(self.h.sent, [])
        return error

    def test_malformed_json_is_400(self) -> None:
        self.client.send(b"POST", CHAT, b'{"model": "m1", ')
        error = self.assertError(400, None)
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertIn("not valid JSON", error["message"])

    def test_json_that_is_not_an_object_is_400(self) -> None:
        self.client.send(b"POST", CHAT, b"[1, 2]")
        self.assertError(400, None)

    def test_missing_model_is_400_naming_the_param(self) -> None:
        self.client.post(CHAT, {"messages": []})
        self.assertError(400, None, "model")

    def test_non_json_content_type_is_415(self) -> None:
        self.client.send(b"POST", CHAT, b"model=m1", {b"content-type": b"text/plain"})
        self.assertError(415, "unsupported_media_type")

    def test_body_over_the_limit_is_413(self) -> None:
        h = Harness(makeConfig({"server": {"max_body_bytes": 64}}))
        self.h, self.client = h, h.connect()
        self.client.post(
            CHAT, {"model": "m1", "messages": [{"role": "user", "content": "x" * 100}]}
        )
        self.assertError(413, "request_too_large")

    def test_unknown_route_is_404_in_openai_shape(self) -> None:
        self.client.send(b"GET", b"/v1/nothing-here")
        self.assertError(404, "not_found")

    def test_wrong_method_is_405(self) -> None:
        self.client.send(b"GET", CHAT)
        self.assertError(405, "method_not_allowed")


class UpstreamFailureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(timeouts={"first_byte": 30}))
        self.client = self.h.connect()

    def test_unreachable_upstream_is_502(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        status, _, body = self.client.response()
        self.assertEqual(status, 502)
        error = orjson.loads(body)["error"]
        self.assertEqual(error["code"], "upstream_unavailable")
        self.assertIn("connection refused", error["message"])
        self.assertEqual(
            self.h.metric("codexgw_upstream_errors_total", upstream="main", kind="connect"),
            1.0,
        )

    def test_silent_upstream_is_504_after_first_byte_timeout(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        self.h.reactor.advance(29)
        self.assertEqual(self.client.raw, b"")
        self.h.reactor.advance(1)
        status, _, body = self.client.response()
        self.assertEqual(status, 504)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upstream_timeout")
        self.assertTrue(self.h.sent[0].cancelled)

    def test_gateway_serves_the_next_request_after_a_failure(self) -> None:
        self.client.post(CHAT, {"model": "m1", "messages": []})
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        other = self.h.connect()
        other.post(CHAT, {"model": "m1", "messages": []})
        self.h.sent[1].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(other.response()[0], 200)


class StreamedRelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig({"server": {"heartbeat_interval": 5}}, timeouts={"idle": 60}))
        self.client = self.h.connect()
        self.client.post(CHAT, {"model": "m1", "messages": [], "stream": True})
        self.upstream = self.h.sent[0].respond(200, SSE)

    def body(self) -> bytes:
        return self.client.response()[2]

    def wait(self, seconds: int) -> None:
        """Let time pass in heartbeat-sized steps, as a real clock would."""
        for _ in range(seconds // 5):
            self.h.reactor.advance(5)

    def test_events_reach_the_client_as_they_arrive(self) -> None:
        # Written at the end of the reactor turn that read them.
        self.upstream.send(chunk("Hel"))
        self.h.reactor.advance(0)
        self.assertEqual(self.body(), chunk("Hel"))
        self.upstream.send(chunk("lo") + b"data: [DONE]\n\n")
        self.h.reactor.advance(0)
        self.assertEqual(self.body(), chunk("Hel") + chunk("lo") + b"data: [DONE]\n\n")
        self.upstream.end()
        self.assertTrue(self.client.raw.endswith(b"\r\n0\r\n\r\n"))
        status, headers, _ = self.client.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/event-stream")
        self.assertEqual(headers[b"transfer-encoding"], b"chunked")

    def test_the_chunks_of_one_read_leave_as_one_write(self) -> None:
        # The HTTP client hands a read's chunks over one by one; the client
        # gets them in one HTTP chunk (one write, one redaction pass).
        for text in ("a", "b", "c"):
            self.upstream.send(chunk(text))
        self.assertEqual(self.client.raw, b"")
        self.h.reactor.advance(0)
        self.assertEqual(self.body(), chunk("a") + chunk("b") + chunk("c"))
        head, _, rest = self.client.raw.partition(b"\r\n\r\n")
        size, _, _ = rest.partition(b"\r\n")
        self.assertEqual(int(size, 16), len(chunk("a") + chunk("b") + chunk("c")))

    def test_what_is_queued_is_written_before_the_stream_ends(self) -> None:
        self.upstream.send(chunk("a") + b"data: [DONE]\n\n")
        self.upstream.end()
        self.assertEqual(self.body(), chunk("a") + b"data: [DONE]\n\n")

    def test_client_pause_pauses_the_upstream_and_resume_resumes_it(self) -> None:
        self.upstream.send(chunk("a"))
        # What a full socket buffer does: the transport pauses the channel.
        self.client.transport.producer.pauseProducing()
        self.assertEqual(self.upstream.transport.producerState, "paused")
        self.client.transport.producer.resumeProducing()
        self.assertEqual(self.upstream.transport.producerState, "producing")

    def test_client_disconnect_closes_the_upstream_at_once(self) -> None:
        self.upstream.send(chunk("a"))
        self.client.disconnect()
        self.assertEqual(self.upstream.transport.producerState, "stopped")
        self.assertEqual(self.h.metric("codexgw_active_streams", route="/v1/chat/completions"), 0)

    def test_active_streams_gauge_counts_the_open_stream(self) -> None:
        self.assertEqual(self.h.metric("codexgw_active_streams", route="/v1/chat/completions"), 1)
        self.upstream.end()
        self.assertEqual(self.h.metric("codexgw_active_streams", route="/v1/chat/completions"), 0)

    def test_broken_upstream_ends_the_stream_with_an_error_event(self) -> None:
        self.upstream.send(chunk("a"))
        self.upstream.end(Failure(ResponseFailed([Failure(ConnectionLost())])))
        body = self.body()
        self.assertTrue(body.startswith(chunk("a")))
        last = body[len(chunk("a")) :]
        self.assertTrue(last.startswith(b"data: ") and last.endswith(b"\n\n"))
        error = orjson.loads(last[6:])["error"]
        self.assertEqual(error["code"], "upstream_broken")
        self.assertTrue(self.client.raw.endswith(b"\r\n0\r\n\r\n"))

    def test_heartbeat_comment_while_upstream_is_silent(self) -> None:
        self.h.reactor.advance(3)
        self.upstream.send(chunk("a"))
        self.h.reactor.advance(4.9)  # the chunk counts as activity
        self.assertEqual(self.body(), chunk("a"))
        self.h.reactor.advance(0.1)
        self.assertEqual(self.body(), chunk("a") + b": keep-alive\n\n")
        self.h.reactor.advance(5)
        self.assertEqual(self.body(), chunk("a") + b": keep-alive\n\n" * 2)

    def test_heartbeat_never_splits_a_line(self) -> None:
        self.upstream.send(b'data: {"choi')
        self.wait(10)
        # A line is forwarded whole or not at all: the client is still
        # between events, so whole keep-alive comments are fine.
        self.assertEqual(self.body(), b": keep-alive\n\n" * 2)
        self.upstream.send(b'ces": []}\n')
        self.wait(10)
        # Between lines of one event only a comment line is legal.
        self.assertEqual(
            self.body(),
            b": keep-alive\n\n" * 2 + b'data: {"choices": []}\n' + b": keep-alive\n" * 2,
        )

    def test_idle_upstream_ends_the_stream_after_the_idle_timeout(self) -> None:
        self.h.reactor.advance(7)
        self.upstream.send(chunk("a"))
        self.h.reactor.advance(59.9)
        self.assertNotEqual(self.upstream.transport.producerState, "stopped")
        self.h.reactor.advance(0.1)
        self.assertEqual(self.upstream.transport.producerState, "stopped")
        self.assertIn(b'"code":"idle_timeout"', self.body())
        self.assertTrue(self.client.raw.endswith(b"\r\n0\r\n\r\n"))

    def test_a_paused_client_does_not_make_the_upstream_idle(self) -> None:
        self.upstream.send(chunk("a"))
        self.client.transport.producer.pauseProducing()
        self.h.reactor.advance(100)
        self.client.transport.producer.resumeProducing()
        self.h.reactor.advance(59)
        self.assertNotEqual(self.upstream.transport.producerState, "stopped")
        self.h.reactor.advance(1)
        self.assertEqual(self.upstream.transport.producerState, "stopped")

    def test_upstream_line_over_the_cap_fails_that_stream_cleanly(self) -> None:
        h = Harness(makeConfig({"server": {"max_sse_line_bytes": 1000}}))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": [], "stream": True})
        upstream = h.sent[0].respond(200, SSE)
        upstream.send(b"data: " + b"x" * 600)
        upstream.send(b"x" * 600)
        self.assertEqual(upstream.transport.producerState, "stopped")
        self.assertIn(b'"code":"bad_stream"', client.response()[2])
        self.assertTrue(client.raw.endswith(b"\r\n0\r\n\r\n"))


class DisconnectBeforeAnswerTests(SynchronousTestCase):
    def test_client_leaving_before_the_upstream_answers_cancels_it(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": [], "stream": True})
        client.disconnect()
        self.assertTrue(h.sent[0].cancelled)


class AccountingTests(SynchronousTestCase):
    def test_request_is_counted_with_route_status_upstream_and_model(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": []})
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(
            h.metric(
                "codexgw_requests_total",
                route="/v1/chat/completions",
                status="200",
                upstream="main",
                model="m1",
            ),
            1.0,
        )
        self.assertEqual(
            h.metric(
                "codexgw_request_duration_seconds_count",
                route="/v1/chat/completions",
                upstream="main",
            ),
            1.0,
        )

    def test_metrics_route_serves_prometheus_text(self) -> None:
        h = Harness()
        client = h.connect()
        client.send(b"GET", b"/metrics")
        status, headers, body = client.response()
        self.assertEqual(status, 200)
        self.assertTrue(headers[b"content-type"].startswith(b"text/plain"))
        self.assertIn(b"# TYPE codexgw_requests_total counter", body)


class LateAnswerTests(SynchronousTestCase):
    def test_answer_arriving_after_the_client_left_is_dropped_not_crashed_on(self) -> None:
        from twisted.web.server import Request
        from twisted.web.test.requesthelper import DummyChannel

        from codexgw.stream.relay import CLIENT_GONE
        from tests.fakes.agent import FakeResponse

        h = Harness()
        request = Request(DummyChannel())
        ex = h.gateway.proxy.begin(request, "/v1/chat/completions")
        request.channel = None  # what connectionLost leaves behind
        response = FakeResponse(200, SSE, None)
        done = h.gateway.proxy.passThrough(ex, h.gateway.upstreams["main"], response, True)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(ex.outcome, CLIENT_GONE)
        self.assertEqual(response.transport.producerState, "stopped")
        self.assertEqual(h.gateway.proxy.active, set())


class UpstreamErrorKindTests(SynchronousTestCase):
    """The kind label is one of a fixed few, whatever an upstream writes."""

    def test_an_upstreams_own_error_codes_never_become_label_values(self) -> None:
        h = Harness(makeConfig())
        responses = b"/v1/responses"
        for i in range(3):
            client = h.connect()
            client.post(responses, {"model": "m1", "input": "hi"})
            invented = b'{"error": {"message": "boom", "code": "made_up_%d"}}' % i
            h.sent[-1].respond(500, {b"content-type": b"application/json"}, invented)
            self.assertEqual(client.response()[0], 500)
        client = h.connect()
        client.post(responses, {"model": "m1", "input": "hi"})
        h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
        kinds = {
            s.labels["kind"]: s.value
            for metric in h.gateway.metrics.registry.collect()
            if metric.name == "codexgw_upstream_errors"
            for s in metric.samples
            if s.name.endswith("_total")
        }
        self.assertEqual(kinds, {"status": 3.0, "connect": 1.0})


class DrainTests(SynchronousTestCase):
    def test_a_request_still_waiting_for_its_upstream_is_drained_too(self) -> None:
        h = Harness(makeConfig())
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": []})
        self.assertEqual(h.gateway.proxy.active, set(), "no relay yet: nothing answered")
        drained = h.gateway.drain(30)
        self.assertNoResult(drained)
        h.reactor.advance(5)
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b'{"id": "late"}')
        self.assertEqual(client.response()[0], 200, "it was answered, not cut")
        self.successResultOf(drained)

    def test_the_deadline_is_a_hard_cap(self) -> None:
        h = Harness(makeConfig())
        h.connect().post(CHAT, {"model": "m1", "messages": []})
        drained = h.gateway.drain(30)
        h.reactor.advance(29)
        self.assertNoResult(drained)
        h.reactor.advance(1)
        self.successResultOf(drained)

    def test_an_idle_gateway_drains_at_once(self) -> None:
        h = Harness(makeConfig())
        self.successResultOf(h.gateway.drain(30))


class NonStreamedIdleTests(SynchronousTestCase):
    def test_the_idle_timeout_fires_after_idle_seconds_on_a_whole_body(self) -> None:
        """Not up to twice as late: the timer counts from the last byte."""
        h = Harness(makeConfig(timeouts={"idle": 10}))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": []})
        upstream = h.sent[0].respond(200, {b"content-type": b"application/json"})
        h.reactor.advance(1)
        upstream.send(b'{"id": "chatcmpl-1", ')
        h.reactor.advance(9.9)
        self.assertEqual(upstream.transport.producerState, "producing")
        h.reactor.advance(0.1)
        self.assertEqual(upstream.transport.producerState, "stopped")
        # A whole body cut short cannot be mended: the connection is closed.
        self.assertTrue(client.transport.disconnecting)
