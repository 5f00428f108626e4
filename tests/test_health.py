"""
Health probes and the models listing, without sockets.
"""

from __future__ import annotations

import orjson
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.harness import Harness, makeConfig

JSON = {b"content-type": b"application/json"}
MODELS = b'{"object": "list", "data": [{"id": "up-1", "object": "model", "created": 5, "owned_by": "x"}]}'


class ReadinessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig({"server": {"health_probe_interval": 10}}))

    def test_ready_when_the_upstream_answers(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/ready")
        [probe] = self.h.sent
        self.assertEqual((probe.method, probe.uri), (b"GET", b"http://upstream.test/v1/models"))
        probe.respond(200, JSON, MODELS)
        status, _, _ = client.response()
        self.assertEqual(status, 200)
        self.assertEqual(client.json()["status"], "ok")
        self.assertEqual(self.h.metric("codexgw_upstream_up", upstream="main"), 1.0)

    def test_not_ready_when_the_upstream_cannot_be_reached(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/ready")
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        self.assertEqual(client.response()[0], 503)
        self.assertIn("connection refused", client.json()["error"])
        self.assertEqual(self.h.metric("codexgw_upstream_up", upstream="main"), 0.0)

    def test_an_auth_error_still_means_reachable(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/ready")
        self.h.sent[0].respond(401, JSON, b'{"error": {"message": "no"}}')
        self.assertEqual(client.response()[0], 200)

    def test_upstream_5xx_means_not_ready(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/ready")
        self.h.sent[0].respond(503, JSON, b"{}")
        self.assertEqual(client.response()[0], 503)

    def test_probes_are_cached_and_coalesced(self) -> None:
        first, second = self.h.connect(), self.h.connect()
        first.send(b"GET", b"/health/ready")
        second.send(b"GET", b"/health/ready")
        self.assertEqual(len(self.h.sent), 1)  # one probe for both
        self.h.sent[0].respond(200, JSON, MODELS)
        self.assertEqual((first.response()[0], second.response()[0]), (200, 200))
        third = self.h.connect()
        third.send(b"GET", b"/health/ready")
        self.assertEqual(len(self.h.sent), 1)  # cached
        self.h.reactor.advance(11)
        fourth = self.h.connect()
        fourth.send(b"GET", b"/health/ready")
        self.assertEqual(len(self.h.sent), 2)  # stale: probed again

    def test_draining_gateway_is_not_ready(self) -> None:
        self.h.gateway.draining = True
        client = self.h.connect()
        client.send(b"GET", b"/health/ready")
        self.assertEqual(client.response()[0], 503)
        self.assertEqual(self.h.sent, [])

    def test_live_needs_no_upstream(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/live")
        self.assertEqual((client.response()[0], client.json()), (200, {"status": "ok"}))
        self.assertEqual(self.h.sent, [])

    def test_details_name_version_uptime_and_upstream_state(self) -> None:
        self.h.reactor.advance(42)
        client = self.h.connect()
        client.send(b"GET", b"/health")
        self.h.sent[0].respond(200, JSON, MODELS)
        details = client.json()
        self.assertEqual(details["uptime_seconds"], 42)
        self.assertEqual(details["upstreams"]["main"]["reachable"], True)
        self.assertEqual(details["upstreams"]["main"]["base_url"], "http://upstream.test/v1")
        self.assertIn("version", details)


class ModelsTests(SynchronousTestCase):
    def test_details_never_show_credentials_written_into_a_base_url(self) -> None:
        h = Harness(makeConfig(base_url="https://user:s3cret@models.internal:8443/v1?token=t0k"))
        client = h.connect()
        client.send(b"GET", b"/health")
        h.sent[0].respond(200, JSON, MODELS)
        status, _, body = client.response()
        self.assertEqual(status, 200)
        self.assertNotIn(b"s3cret", body)
        self.assertNotIn(b"t0k", body)
        details = orjson.loads(body)
        self.assertEqual(
            details["upstreams"]["main"]["base_url"], "https://models.internal:8443/v1"
        )

    def test_configured_models_are_listed_without_asking(self) -> None:
        h = Harness(makeConfig(models=["a", "b"]))
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        self.assertEqual([m["id"] for m in client.json()["data"]], ["a", "b"])
        self.assertEqual(h.sent, [])

    def test_upstream_models_are_cached_for_the_ttl(self) -> None:
        h = Harness(makeConfig({"server": {"models_cache_ttl": 30}}))
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        h.sent[0].respond(200, JSON, MODELS)
        self.assertEqual(client.json()["data"][0]["id"], "up-1")
        again = h.connect()
        again.send(b"GET", b"/v1/models")
        self.assertEqual(len(h.sent), 1)
        h.reactor.advance(31)
        later = h.connect()
        later.send(b"GET", b"/v1/models")
        self.assertEqual(len(h.sent), 2)

    def test_routing_aliases_are_listed(self) -> None:
        h = Harness(
            makeConfig(
                {"models": [{"match": "fast", "upstream": "main", "model": "x"}]}, models=["x"]
            )
        )
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        self.assertEqual([m["id"] for m in client.json()["data"]], ["x", "fast"])

    def test_failing_upstream_lists_nothing_rather_than_failing(self) -> None:
        h = Harness()
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        self.assertEqual(client.response()[0], 200)
        self.assertEqual(client.json(), {"object": "list", "data": []})
