"""
Gateway keys, CORS and request limits, through the whole gateway.
"""

from __future__ import annotations

import hashlib

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import ConfigError, parse
from tests.harness import Harness, makeConfig

CHAT = b"/v1/chat/completions"
JSON = {b"content-type": b"application/json"}
KEYS = {
    "auth": {
        "keys": [
            {"name": "alice", "key": "sk-alice-0123456789"},
            {
                "name": "bob",
                "sha256": hashlib.sha256(b"sk-bob-0123456789").hexdigest(),
                "models": ["small-*"],
            },
        ]
    }
}


class AuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig(KEYS))

    def call(self, headers: dict[bytes, bytes], model: str = "m1") -> tuple[int, dict]:
        client = self.h.connect()
        before = len(self.h.sent)
        client.post(CHAT, {"model": model, "messages": []}, headers)
        if len(self.h.sent) > before:
            self.h.sent[-1].respond(200, JSON, b"{}")
        status, headers_, body = client.response()
        return status, orjson.loads(body)

    def test_missing_key_is_401_in_openai_shape(self) -> None:
        status, body = self.call({})
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["type"], "authentication_error")
        self.assertEqual(body["error"]["code"], "invalid_api_key")
        self.assertEqual(self.h.sent, [])

    def test_wrong_key_is_401(self) -> None:
        status, body = self.call({b"authorization": b"Bearer sk-mallory"})
        self.assertEqual(status, 401)
        self.assertNotIn("sk-alice", orjson.dumps(body).decode())

    def test_bearer_api_key_and_x_api_key_are_all_accepted(self) -> None:
        for header in (
            {b"authorization": b"Bearer sk-alice-0123456789"},
            {b"api-key": b"sk-alice-0123456789"},
            {b"x-api-key": b"sk-alice-0123456789"},
        ):
            self.assertEqual(self.call(header)[0], 200, header)

    def test_key_given_as_its_sha256_works(self) -> None:
        self.assertEqual(
            self.call({b"authorization": b"Bearer sk-bob-0123456789"}, "small-1")[0], 200
        )

    def test_key_limited_to_some_models_gets_403_for_others(self) -> None:
        status, body = self.call({b"authorization": b"Bearer sk-bob-0123456789"}, "big-1")
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["param"], "model")

    def test_client_key_is_not_forwarded_upstream(self) -> None:
        self.call({b"authorization": b"Bearer sk-alice-0123456789"})
        self.assertIsNone(self.h.sent[0].header(b"authorization"))

    def test_models_listing_needs_a_key_and_shows_only_allowed_models(self) -> None:
        h = Harness(makeConfig(KEYS, models=["small-1", "big-1"]))
        anonymous = h.connect()
        anonymous.send(b"GET", b"/v1/models")
        self.assertEqual(anonymous.response()[0], 401)
        bob = h.connect()
        bob.send(b"GET", b"/v1/models", headers={b"authorization": b"Bearer sk-bob-0123456789"})
        self.assertEqual([m["id"] for m in bob.json()["data"]], ["small-1"])

    def test_health_needs_no_key(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/health/live")
        self.assertEqual(client.response()[0], 200)


class AuthConfigTests(SynchronousTestCase):
    def test_an_empty_key_list_with_auth_on_is_refused_not_a_wall_of_401s(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse({"auth": {"keys": []}}, "gw.yaml", {})
        self.assertIn("gw.yaml: auth.keys: at least one key is required", e.exception.problems[0])
        config = parse({"auth": {"enabled": False, "keys": []}}, "gw.yaml", {})
        self.assertFalse(config.auth_enabled)

    def test_no_auth_block_is_refused_when_listening_beyond_loopback(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse({"listen": "tcp:8080:interface=0.0.0.0"}, "gw.yaml", {})
        self.assertIn("gw.yaml: auth:", e.exception.problems[0])

    def test_auth_switched_off_explicitly_is_allowed_anywhere(self) -> None:
        config = parse({"listen": "tcp:8080", "auth": {"enabled": False}}, "gw.yaml", {})
        self.assertFalse(config.auth_enabled)
        self.assertFalse(config.auth_implicitly_off)

    def test_loopback_without_auth_runs_open(self) -> None:
        config = parse({}, "gw.yaml", {})
        self.assertFalse(config.auth_enabled)
        self.assertTrue(config.auth_implicitly_off)

    def test_key_values_never_show_in_the_config_repr(self) -> None:
        config = parse(KEYS, "gw.yaml", {})
        self.assertNotIn("sk-alice", repr(config))

    def test_key_needs_exactly_one_of_key_or_sha256(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse(
                {"auth": {"keys": [{"name": "a"}, {"name": "b", "key": "k", "sha256": "00"}]}},
                "gw.yaml",
                {},
            )
        self.assertEqual(len([p for p in e.exception.problems if "exactly one" in p]), 2)


class CORSTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(makeConfig({"cors": {"allowed_origins": ["https://app.example"]}}))

    def test_preflight_from_an_allowed_origin(self) -> None:
        client = self.h.connect()
        client.send(
            b"OPTIONS",
            CHAT,
            headers={
                b"origin": b"https://app.example",
                b"access-control-request-method": b"POST",
                b"access-control-request-headers": b"authorization, content-type",
            },
        )
        status, headers, _ = client.response()
        self.assertEqual(status, 204)
        self.assertEqual(headers[b"access-control-allow-origin"], b"https://app.example")
        self.assertIn(b"POST", headers[b"access-control-allow-methods"])
        self.assertEqual(headers[b"access-control-allow-headers"], b"authorization, content-type")
        self.assertEqual(self.h.sent, [])

    def test_preflight_from_another_origin_is_refused(self) -> None:
        client = self.h.connect()
        client.send(
            b"OPTIONS",
            CHAT,
            headers={b"origin": b"https://evil.example", b"access-control-request-method": b"POST"},
        )
        status, headers, _ = client.response()
        self.assertEqual(status, 403)
        self.assertNotIn(b"access-control-allow-origin", headers)

    def test_actual_response_carries_the_origin_and_vary(self) -> None:
        client = self.h.connect()
        client.post(CHAT, {"model": "m1", "messages": []}, {b"origin": b"https://app.example"})
        self.h.sent[0].respond(200, JSON, b"{}")
        headers = client.response()[1]
        self.assertEqual(headers[b"access-control-allow-origin"], b"https://app.example")
        self.assertEqual(headers[b"vary"], b"Origin")

    def test_wildcard_with_credentials_is_a_config_error(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse({"cors": {"allowed_origins": ["*"], "allow_credentials": True}}, "gw.yaml", {})
        self.assertIn("cors.allowed_origins", e.exception.problems[0])

    def test_wildcard_without_credentials_answers_star(self) -> None:
        h = Harness(makeConfig({"cors": {"allowed_origins": ["*"]}}))
        client = h.connect()
        client.send(
            b"OPTIONS",
            CHAT,
            headers={b"origin": b"https://x.example", b"access-control-request-method": b"POST"},
        )
        headers = client.response()[1]
        self.assertEqual(headers[b"access-control-allow-origin"], b"*")
        self.assertNotIn(b"access-control-allow-credentials", headers)


class SecurityHeaderTests(SynchronousTestCase):
    def test_api_responses_carry_security_headers_and_no_version_banner(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": []})
        h.sent[0].respond(200, JSON, b"{}")
        headers = client.response()[1]
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertEqual(headers[b"server"], b"codexgw")

    def test_oversized_body_is_refused_without_being_kept(self) -> None:
        h = Harness(makeConfig({"server": {"max_body_bytes": 1000}}))
        client = h.connect()
        client.post(CHAT, {"model": "m1", "messages": [{"role": "user", "content": "x" * 5000}]})
        status, _, body = client.response()
        self.assertEqual(status, 413)
        self.assertEqual(orjson.loads(body)["error"]["code"], "request_too_large")
        self.assertEqual(h.sent, [])
