"""
Bounds a client or upstream cannot push the gateway past: header sizes, the
total time of an exchange.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from tests.harness import Harness, makeConfig

SSE = {b"content-type": b"text/event-stream"}


class BoundsTests(SynchronousTestCase):
    def test_oversized_headers_are_refused_and_the_gateway_goes_on(self) -> None:
        h = Harness()
        client = h.connect()
        # One header line over twisted.web's 16 KiB line cap: 431 in OpenAI's
        # shape, then closed, before any routing or buffering.
        client.send(b"POST", b"/v1/chat/completions", b"{}", {b"x-filler": b"a" * 70000})
        self.assertTrue(client.raw.startswith(b"HTTP/1.1 431"), client.raw[:40])
        self.assertEqual(client.json()["error"]["code"], "request_headers_too_large")
        self.assertTrue(client.transport.disconnecting)
        # Many headers adding up past the total cap: the same.
        many = {b"x-h%d" % i: b"v" * 1000 for i in range(40)}
        second = h.connect()
        second.send(b"POST", b"/v1/chat/completions", b"{}", many)
        self.assertTrue(second.raw.startswith(b"HTTP/1.1 431"), second.raw[:40])
        self.assertTrue(second.transport.disconnecting)
        self.assertEqual(h.sent, [])
        other = h.connect()
        other.post(b"/v1/chat/completions", {"model": "m", "messages": []})
        self.assertEqual(len(h.sent), 1)
        # Answered, so the exchange ends here: left pending, its coroutine
        # would be finished (and access-logged) whenever it is collected,
        # inside some later test.
        h.sent[0].respond(200, {b"content-type": b"application/json"}, b"{}")
        self.assertEqual(other.response()[0], 200)

    def test_total_timeout_ends_a_stream_that_never_stops(self) -> None:
        h = Harness(makeConfig({"server": {"heartbeat_interval": 5}}, timeouts={"total": 60}))
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
        upstream = h.sent[0].respond(200, SSE)
        for _ in range(11):
            upstream.send(b'data: {"choices": []}\n\n')
            h.reactor.advance(5)
        self.assertNotEqual(upstream.transport.producerState, "stopped")
        upstream.send(b'data: {"choices": []}\n\n')
        h.reactor.advance(5)
        self.assertEqual(upstream.transport.producerState, "stopped")
        body = client.response()[2]
        last = body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        self.assertEqual(orjson.loads(last[6:])["error"]["code"], "total_timeout")
