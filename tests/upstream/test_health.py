"""
Health probes and the models listing, without sockets.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import Config
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
    def test_details_never_show_a_base_urls_query_string_or_credentials(self) -> None:
        # A query string may carry a token. Credentials are refused in a
        # config's base_url (tests.test_config), so they are planted here
        # behind validation's back: /health strips them all the same.
        config = makeConfig(base_url="https://models.internal:8443/v1?token=t0k")
        planted = attrs.evolve(
            config.upstreams["main"],
            base_url="https://user:s3cret@models.internal:8443/v1?token=t0k",
        )
        h = Harness(attrs.evolve(config, upstreams={"main": planted}))
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


def threeUpstreams(**server: Any) -> Config:
    """Upstreams C{a}, C{b} and C{c}, in that order, each at its own host."""
    upstreams = {
        name: {
            "base_url": f"http://{name}.upstream.test/v1",
            "wire_api": "chat",
            "retries": {"max_attempts": 1},
        }
        for name in ("a", "b", "c")
    }
    return makeConfig({"upstreams": upstreams, "default_upstream": "a", "server": server})


def modelsOf(name: str) -> bytes:
    return orjson.dumps({"object": "list", "data": [{"id": f"{name}-1", "object": "model"}]})


class ConcurrentUpstreamsTests(SynchronousTestCase):
    """
    C{/health} and C{/v1/models} ask every upstream at once: silent upstreams
    cost a client one timeout together, not one timeout each.
    """

    def test_health_with_three_silent_upstreams_answers_after_one_probe_timeout(self) -> None:
        h = Harness(threeUpstreams())
        client = h.connect()
        client.send(b"GET", b"/health")
        self.assertEqual(
            [r.uri for r in h.sent],
            [f"http://{n}.upstream.test/v1/models".encode() for n in "abc"],
        )
        h.reactor.advance(2.9)
        self.assertEqual(client.raw, b"")
        h.reactor.advance(0.1)  # one probe timeout (3 s), not three
        status, _, body = client.response()
        self.assertEqual(status, 200)
        upstreams = orjson.loads(body)["upstreams"]
        self.assertEqual(list(upstreams), ["a", "b", "c"])
        for state in upstreams.values():
            self.assertEqual(state["reachable"], False)
            self.assertIn("did not answer within 3 s", state["error"])
            self.assertEqual(state["latency_ms"], 3000.0)

    def test_health_reports_each_upstream_under_its_own_name_whatever_answers_first(
        self,
    ) -> None:
        h = Harness(threeUpstreams())
        client = h.connect()
        client.send(b"GET", b"/health")
        a, b, c = h.sent
        c.respond(503, JSON, b"{}")
        a.respond(200, JSON, MODELS)
        self.assertEqual(client.raw, b"")  # b is still being asked
        b.deferred.errback(Failure(ConnectionRefusedError()))
        upstreams = client.json()["upstreams"]
        self.assertEqual(
            {n: (s["reachable"], s["status"]) for n, s in upstreams.items()},
            {"a": (True, 200), "b": (False, None), "c": (False, 503)},
        )
        self.assertIn("connection refused", upstreams["b"]["error"])

    def test_a_client_leaving_health_does_not_break_the_probe_for_the_others(self) -> None:
        h = Harness(threeUpstreams())
        leaving, staying = h.connect(), h.connect()
        leaving.send(b"GET", b"/health")
        staying.send(b"GET", b"/health")
        self.assertEqual(len(h.sent), 3)  # coalesced: one probe each, both wait
        leaving.disconnect()
        for sent in h.sent:
            self.assertFalse(sent.cancelled)  # the others still want the answer
            sent.respond(200, JSON, MODELS)
        self.assertEqual(staying.response()[0], 200)
        self.assertEqual({s["reachable"] for s in staying.json()["upstreams"].values()}, {True})

    def test_models_with_three_silent_upstreams_answers_after_one_timeout(self) -> None:
        h = Harness(threeUpstreams())
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        self.assertEqual(len(h.sent), 3)  # all asked at once
        h.reactor.advance(9.9)
        self.assertEqual(client.raw, b"")
        h.reactor.advance(0.1)  # one listing timeout (10 s), not three
        self.assertEqual(client.response()[0], 200)
        self.assertEqual(client.json(), {"object": "list", "data": []})

    def test_models_lists_upstreams_in_config_order_whatever_answers_first(self) -> None:
        h = Harness(threeUpstreams())
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        a, b, c = h.sent
        c.respond(200, JSON, modelsOf("c"))
        h.reactor.advance(5)
        a.respond(200, JSON, modelsOf("a"))
        self.assertEqual(client.raw, b"")  # b is still being asked
        h.reactor.advance(5)  # b times out: it lists nothing
        self.assertEqual([m["id"] for m in client.json()["data"]], ["a-1", "c-1"])

    def test_a_client_leaving_models_stops_asking_every_upstream(self) -> None:
        warnings: list[dict[str, Any]] = []

        def observer(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "codexgw.upstream.models":
                warnings.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        h = Harness(threeUpstreams())
        client = h.connect()
        client.send(b"GET", b"/v1/models")
        client.disconnect()
        self.assertEqual([r.cancelled for r in h.sent], [True, True, True])
        # Not the upstreams' failure: nothing says their listing failed.
        self.assertEqual(warnings, [])
        self.assertEqual(self.flushLoggedErrors(), [])
