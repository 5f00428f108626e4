"""
Upstream bodies that are not streams (errors, listings, bodies dropped
before a retry) are read with a cap: no upstream makes the gateway hold
megabytes it will not use.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from codexgw.upstream.bodies import ERROR_BODY_LIMIT, readCapped
from tests.fakes.agent import FakeResponse
from tests.harness import Harness

JSON = {b"content-type": b"application/json"}


class CappedReadTests(SynchronousTestCase):
    def test_reading_stops_at_the_cap_and_drops_the_connection(self) -> None:
        response = FakeResponse(500, JSON, None)
        read = readCapped(response, 10)
        response.send(b"0123456")
        self.assertNoResult(read)
        response.send(b"789abcdef")
        self.assertEqual(self.successResultOf(read), b"0123456789")
        self.assertEqual(response.transport.producerState, "stopped")

    def test_a_body_cut_short_is_still_what_it_holds(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        response = FakeResponse(500, JSON, None)
        read = readCapped(response)
        response.send(b'{"error": ')
        response.end(Failure(ConnectionLost()))
        self.assertEqual(self.successResultOf(read), b'{"error": ')

    def test_a_bridged_error_with_a_huge_body_is_answered_after_the_cap(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi"})
        upstream = h.sent[0].respond(500, JSON)
        for _ in range(ERROR_BODY_LIMIT // 4096 + 1):
            upstream.send(b"x" * 4096)
            if upstream.transport.producerState == "stopped":
                break
        self.assertEqual(upstream.transport.producerState, "stopped")
        status, _, body = client.response()
        self.assertEqual(status, 500)
        self.assertLess(len(body), 2048)
