"""
Responses pass-through: to an upstream with wire_api: responses, the
Responses routes are relayed untouched, streamed or not, with the
gateway's auth, retries and metrics around them.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import parse
from tests.harness import Harness

JSON = {b"content-type": b"application/json"}
SSE = {b"content-type": b"text/event-stream"}


def responsesGateway(**extra: object) -> Harness:
    return Harness(
        parse(
            dict(
                {
                    "upstreams": {
                        "oai": {
                            "base_url": "https://api.example.com/v1",
                            "wire_api": "responses",
                            "api_key": "sk-up",
                            "retries": {"max_attempts": 1},
                        },
                    },
                    "models": [{"match": "fast", "upstream": "oai", "model": "gpt-5-mini"}],
                    "store": {"backend": "none"},
                },
                **extra,
            ),
            "t.yaml",
            {},
        )
    )


class ResponsesPassThroughTests(SynchronousTestCase):
    def test_post_is_relayed_byte_for_byte(self) -> None:
        h = responsesGateway()
        raw = b'{"model": "gpt-5",  "input": "hi", "store": true, "include": ["x"]}'
        client = h.connect()
        client.send(b"POST", b"/v1/responses", raw)
        [sent] = h.sent
        self.assertEqual((sent.uri, sent.body), (b"https://api.example.com/v1/responses", raw))
        answer = b'{"id": "resp_1", "object": "response", "status": "completed", "output": []}'
        sent.respond(200, JSON, answer)
        self.assertEqual(client.response()[2], answer)

    def test_stream_is_relayed_as_it_arrives(self) -> None:
        h = responsesGateway()
        client = h.connect()
        client.post(b"/v1/responses", {"model": "gpt-5", "input": "hi", "stream": True})
        upstream = h.sent[0].respond(200, SSE)
        event = (
            b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
        )
        upstream.send(event)
        h.reactor.advance(0)  # the end of the reactor turn that read it
        self.assertEqual(client.response()[2], event)
        upstream.end()
        self.assertTrue(client.raw.endswith(b"\r\n0\r\n\r\n"))

    def test_model_alias_is_renamed(self) -> None:
        h = responsesGateway()
        client = h.connect()
        client.post(b"/v1/responses", {"model": "fast", "input": "hi"})
        self.assertEqual(orjson.loads(h.sent[0].body)["model"], "gpt-5-mini")

    def test_get_delete_and_input_items_are_relayed(self) -> None:
        h = responsesGateway()
        for method, path, want in [
            (b"GET", b"/v1/responses/resp_123", b"https://api.example.com/v1/responses/resp_123"),
            (
                b"DELETE",
                b"/v1/responses/resp_123",
                b"https://api.example.com/v1/responses/resp_123",
            ),
            (
                b"GET",
                b"/v1/responses/resp_123/input_items?limit=5&order=asc",
                b"https://api.example.com/v1/responses/resp_123/input_items?limit=5&order=asc",
            ),
        ]:
            client = h.connect()
            client.send(method, path)
            sent = h.sent[-1]
            self.assertEqual((sent.method, sent.uri), (method, want))
            self.assertEqual(sent.header(b"authorization"), b"Bearer sk-up")
            sent.respond(404, JSON, b'{"error": {"message": "No response found"}}')
            self.assertEqual(client.response()[0], 404)

    def test_without_a_responses_upstream_stored_ids_are_404(self) -> None:
        h = Harness(
            parse(
                {"upstreams": {"c": {"base_url": "http://h/v1"}}, "store": {"backend": "none"}},
                "t.yaml",
                {},
            )
        )
        client = h.connect()
        client.send(b"GET", b"/v1/responses/resp_1")
        status, _, body = client.response()
        self.assertEqual(status, 404)
        self.assertEqual(orjson.loads(body)["error"]["param"], "response_id")
        self.assertEqual(h.sent, [])
