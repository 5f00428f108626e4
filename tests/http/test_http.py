"""
HTTP details every answer gets right, without sockets: standard reason
phrases, C{Allow} on 405, and the standard headers on C{/metrics}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import parse
from codexgw.http.site import reasonPhrase
from tests.harness import ClientConnection, Harness, makeConfig

CHAT = b"/v1/chat/completions"
JSON = {b"content-type": b"application/json"}


def statusLine(client: ClientConnection) -> bytes:
    return client.raw.split(b"\r\n", 1)[0]


class ReasonPhraseTests(SynchronousTestCase):
    def test_the_gateways_own_429_says_too_many_requests(self) -> None:
        h = Harness(
            parse(
                {
                    "upstreams": {"main": {"base_url": "http://up/v1"}},
                    "store": {"backend": "none"},
                    "auth": {
                        "keys": [{"name": "a", "key": "ka", "limits": {"requests_per_minute": 1}}]
                    },
                },
                "t.yaml",
                {},
            )
        )
        lines = []
        for _ in range(2):
            client = h.connect()
            client.post(CHAT, {"model": "m", "messages": []}, {b"authorization": b"Bearer ka"})
            if h.sent and not h.sent[-1].deferred.called:
                h.sent[-1].respond(200, JSON, b"{}")
            lines.append(statusLine(client))
        self.assertEqual(lines, [b"HTTP/1.1 200 OK", b"HTTP/1.1 429 Too Many Requests"])

    def test_relayed_statuses_get_their_standard_phrase(self) -> None:
        h = Harness(makeConfig())
        for code, phrase in [
            (422, b"Unprocessable Entity"),
            (429, b"Too Many Requests"),
            (504, b"Gateway Timeout"),
        ]:
            client = h.connect()
            client.post(CHAT, {"model": "m", "messages": []})
            h.sent[-1].respond(code, JSON, b'{"error": {"message": "no"}}')
            self.assertEqual(statusLine(client), b"HTTP/1.1 %d %s" % (code, phrase))

    def test_gateway_errors_get_their_standard_phrase(self) -> None:
        h = Harness(makeConfig())
        for method, path, line in [
            (b"GET", b"/v1/nothing", b"HTTP/1.1 404 Not Found"),
            (b"GET", CHAT, b"HTTP/1.1 405 Method Not Allowed"),
        ]:
            client = h.connect()
            client.send(method, path)
            self.assertEqual(statusLine(client), line)
        h.gateway.draining = True
        client = h.connect()
        client.post(CHAT, {"model": "m", "messages": []})
        self.assertEqual(statusLine(client), b"HTTP/1.1 503 Service Unavailable")

    def test_a_non_standard_status_keeps_twisteds_phrase(self) -> None:
        self.assertIsNone(reasonPhrase(599))
        self.assertEqual(reasonPhrase(429), b"Too Many Requests")


class MethodNotAllowedTests(SynchronousTestCase):
    def test_405_lists_the_routes_methods_in_allow(self) -> None:
        h = Harness(makeConfig())
        for method, path, allow in [
            (b"GET", CHAT, b"POST"),
            (b"PUT", b"/v1/responses", b"GET, HEAD, POST"),  # GET: WebSocket mode
            (b"POST", b"/v1/responses/resp_1", b"DELETE, GET, HEAD"),
            (b"DELETE", b"/v1/responses/resp_1/input_items", b"GET, HEAD"),
            (b"POST", b"/metrics", b"GET, HEAD"),
        ]:
            client = h.connect()
            client.send(method, path)
            status, headers, _ = client.response()
            self.assertEqual((status, headers.get(b"allow")), (405, allow), (method, path))
            self.assertEqual(client.json()["error"]["code"], "method_not_allowed")

    def test_other_errors_carry_no_allow(self) -> None:
        client = Harness(makeConfig()).connect()
        client.send(b"GET", b"/v1/nothing")
        self.assertNotIn(b"allow", client.response()[1])


class MetricsHeadersTests(SynchronousTestCase):
    def test_metrics_carry_the_standard_headers_and_the_prometheus_type(self) -> None:
        h = Harness(makeConfig())
        client = h.connect()
        client.send(b"GET", b"/metrics")
        status, headers, body = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"server"], b"codexgw")
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertTrue(headers[b"content-type"].startswith(b"text/plain; version="))
        self.assertIn(b"# TYPE codexgw_requests_total counter", body)
        self.assertIsNone(
            h.metric(
                "codexgw_requests_total", route="/metrics", status="200", upstream="-", model="none"
            ),
            "a scrape is still not counted",
        )
