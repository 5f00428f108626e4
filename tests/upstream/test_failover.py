"""
Routing with pools and fallbacks: failover before the first byte, circuit
breakers that open and close, and cache affinity. A memory clock drives
time; nothing sleeps.
"""

from __future__ import annotations

import orjson
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import ConfigError, parse
from tests.harness import Harness

CHAT = b"/v1/chat/completions"
JSON = {b"content-type": b"application/json"}
OK = b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": []}'


def config(route: dict, **server: object) -> object:
    one = {"retries": {"max_attempts": 1}}
    return parse(
        {
            "upstreams": {
                "first": dict(one, base_url="http://first.test/v1"),
                "second": dict(one, base_url="http://second.test/v1"),
                "third": dict(one, base_url="http://third.test/v1"),
            },
            "default_upstream": "first",
            "models": [dict({"match": "m*"}, **route)],
            "server": dict({"circuit_threshold": 2, "circuit_cooldown": 30}, **server),
        },
        "test.yaml",
        {},
    )


def host(sent: object) -> bytes:
    return sent.uri.split(b"/")[2]  # type: ignore[attr-defined]


class FailoverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(config({"upstream": "first", "fallbacks": ["second"]}))

    def post(self, body: dict | None = None) -> object:
        client = self.h.connect()
        client.post(CHAT, body or {"model": "m1", "messages": []})
        return client

    def test_first_refuses_second_answers(self) -> None:
        client = self.post()
        self.h.sent[0].deferred.errback(Failure(ConnectionRefusedError()))
        self.assertEqual([host(s) for s in self.h.sent], [b"first.test", b"second.test"])
        self.h.sent[1].respond(200, JSON, OK)
        self.assertEqual(client.response()[0], 200)  # type: ignore[attr-defined]
        self.assertEqual(
            self.h.metric(
                "codexgw_failovers_total", upstream="first", reason="upstream_unavailable"
            ),
            1,
        )

    def test_5xx_fails_over_but_the_last_answer_is_relayed(self) -> None:
        client = self.post()
        self.h.sent[0].respond(503, JSON, b"{}")
        self.h.sent[1].respond(500, JSON, b'{"error": {"message": "second is down too"}}')
        status, _, body = client.response()  # type: ignore[attr-defined]
        self.assertEqual(status, 500)
        self.assertIn(b"second is down too", body)

    def test_client_errors_do_not_fail_over(self) -> None:
        client = self.post()
        self.h.sent[0].respond(400, JSON, b'{"error": {"message": "bad"}}')
        self.assertEqual(len(self.h.sent), 1)
        self.assertEqual(client.response()[0], 400)  # type: ignore[attr-defined]

    def test_circuit_opens_after_n_failures_and_closes_after_a_probe(self) -> None:
        for _ in range(2):
            self.post()
            self.h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
            self.h.sent[-1].respond(200, JSON, OK)
        self.assertEqual(self.h.metric("codexgw_circuit_state", upstream="first"), 1)  # open
        # While open, requests go straight to the fallback.
        self.post()
        self.assertEqual(host(self.h.sent[-1]), b"second.test")
        self.h.sent[-1].respond(200, JSON, OK)
        # After the cooldown one request probes the first upstream again...
        self.h.reactor.advance(30)
        self.post()
        self.assertEqual(host(self.h.sent[-1]), b"first.test")
        self.assertEqual(self.h.metric("codexgw_circuit_state", upstream="first"), 2)  # half-open
        self.h.sent[-1].respond(200, JSON, OK)
        # ...and its success closes the circuit.
        self.assertEqual(self.h.metric("codexgw_circuit_state", upstream="first"), 0)
        self.post()
        self.assertEqual(host(self.h.sent[-1]), b"first.test")

    def test_failed_probe_reopens_the_circuit(self) -> None:
        for _ in range(2):
            self.post()
            self.h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
            self.h.sent[-1].respond(200, JSON, OK)
        self.h.reactor.advance(30)
        self.post()
        self.h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
        self.h.sent[-1].respond(200, JSON, OK)
        self.assertEqual(self.h.metric("codexgw_circuit_state", upstream="first"), 1)
        self.post()
        self.assertEqual(host(self.h.sent[-1]), b"second.test")

    def test_every_circuit_open_is_503_with_retry_after(self) -> None:
        h = Harness(config({"upstream": "first"}))
        for _ in range(2):
            client = h.connect()
            client.post(CHAT, {"model": "m1", "messages": []})
            h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": []})
        status, headers, body = client.response()
        self.assertEqual(status, 503)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upstreams_cooling_down")
        self.assertEqual(headers[b"retry-after"], b"31")


class AffinityTests(SynchronousTestCase):
    def test_same_prompt_cache_key_goes_to_the_same_pool_member(self) -> None:
        h = Harness(config({"upstreams": ["first", "second", "third"]}))
        chosen = {}
        for key in ("conv-a", "conv-b", "conv-c", "conv-d"):
            for _ in range(3):
                client = h.connect()
                client.post(CHAT, {"model": "m1", "messages": [], "prompt_cache_key": key})
                chosen.setdefault(key, set()).add(host(h.sent[-1]))
                h.sent[-1].respond(200, JSON, OK)
        self.assertTrue(all(len(v) == 1 for v in chosen.values()), chosen)
        self.assertGreater(len(set().union(*chosen.values())), 1, "keys spread over the pool")

    def test_codex_session_header_is_an_affinity_key(self) -> None:
        h = Harness(config({"upstreams": ["first", "second", "third"]}))
        seen = set()
        for _ in range(4):
            client = h.connect()
            client.post(CHAT, {"model": "m1", "messages": []}, {b"session-id": b"019a-session"})
            seen.add(host(h.sent[-1]))
            h.sent[-1].respond(200, JSON, OK)
        self.assertEqual(len(seen), 1)

    def test_unhealthy_member_moves_its_conversations_elsewhere(self) -> None:
        h = Harness(config({"upstreams": ["first", "second"]}))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": [], "prompt_cache_key": "k"})
        home = host(h.sent[-1])
        h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
        other = host(h.sent[-1])
        self.assertNotEqual(home, other)
        h.sent[-1].respond(200, JSON, OK)
        self.assertEqual(client.response()[0], 200)

    def test_requests_without_a_key_take_turns(self) -> None:
        h = Harness(config({"upstreams": ["first", "second"]}))
        seen = []
        for _ in range(4):
            client = h.connect()
            client.post(CHAT, {"model": "m1", "messages": []})
            seen.append(host(h.sent[-1]))
            h.sent[-1].respond(200, JSON, OK)
        self.assertEqual(set(seen), {b"first.test", b"second.test"})


class RouteConfigTests(SynchronousTestCase):
    def test_a_route_names_one_upstream_or_a_pool(self) -> None:
        with self.assertRaises(ConfigError) as e:
            config({"upstream": "first", "upstreams": ["second"]})
        self.assertIn("exactly one of", e.exception.problems[0])

    def test_unknown_fallback_is_named(self) -> None:
        with self.assertRaises(ConfigError) as e:
            config({"upstream": "first", "fallbacks": ["nope"]})
        self.assertIn("models[0].fallbacks", e.exception.problems[0])


class UnknownModelTests(SynchronousTestCase):
    def test_model_no_upstream_serves_is_404_naming_it(self) -> None:
        h = Harness(
            parse(
                {
                    "upstreams": {
                        "a": {"base_url": "http://a/v1", "models": ["alpha"]},
                        "b": {"base_url": "http://b/v1", "models": ["beta"]},
                    },
                    "default_upstream": "a",
                },
                "t.yaml",
                {},
            )
        )
        client = h.connect()
        client.post(CHAT, {"model": "gamma", "messages": []})
        status, _, body = client.response()
        error = orjson.loads(body)["error"]
        self.assertEqual((status, error["code"], error["param"]), (404, "model_not_found", "model"))
        self.assertIn("gamma", error["message"])
        self.assertEqual(h.sent, [])
        routed = h.connect()
        routed.post(CHAT, {"model": "beta", "messages": []})
        self.assertEqual(host(h.sent[0]), b"b")

    def test_a_default_upstream_without_a_list_takes_any_model(self) -> None:
        h = Harness(parse({"upstreams": {"a": {"base_url": "http://a/v1"}}}, "t.yaml", {}))
        client = h.connect()
        client.post(CHAT, {"model": "anything", "messages": []})
        self.assertEqual(len(h.sent), 1)
