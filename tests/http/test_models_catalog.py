"""
C{GET /v1/models} as newer Codex versions fetch it: with a C{client_version}
query, expecting the C{{"models": [...]}} catalog, tagged with an C{ETag} and
revalidated with C{If-None-Match}.
"""

from __future__ import annotations

import hashlib

import orjson
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import parse
from codexgw.http.codex import notModified
from tests.harness import Harness

ALICE = {b"authorization": b"Bearer sk-alice-0123456789"}
BOB = {b"authorization": b"Bearer sk-bob-0123456789"}
CONFIG = {
    "store": {"backend": "none"},
    "upstreams": {
        "main": {"base_url": "http://h/v1", "wire_api": "chat", "models": ["small-coder"]}
    },
    "default_upstream": "main",
    "models": [
        {"match": "small-coder", "upstream": "main", "codex": {"context_window": 32000}},
        {"match": "big-coder", "upstream": "main", "codex": {"context_window": 128000}},
    ],
    "auth": {
        "keys": [
            {"name": "alice", "key": "sk-alice-0123456789"},
            {
                "name": "bob",
                "sha256": hashlib.sha256(b"sk-bob-0123456789").hexdigest(),
                "models": ["small-*"],
            },
        ]
    },
}


class CodexCatalogRouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(parse(CONFIG, "t.yaml", {}))

    def get(
        self, path: bytes, headers: dict[bytes, bytes] | None = None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        client = self.h.connect()
        client.send(b"GET", path, headers={**ALICE, **(headers or {})})
        return client.response()

    def test_client_version_gets_the_codex_catalog_with_an_etag(self) -> None:
        status, headers, body = self.get(b"/v1/models?client_version=0.170.0")
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(
            [m["slug"] for m in orjson.loads(body)["models"]], ["small-coder", "big-coder"]
        )
        tag = headers[b"etag"]
        self.assertTrue(tag.startswith(b'"') and tag.endswith(b'"'), tag)
        self.assertFalse(tag.startswith(b"W/"))
        # Nothing of it was asked of an upstream.
        self.assertEqual(self.h.sent, [])

    def test_the_standard_headers_are_kept(self) -> None:
        status, headers, _ = self.get(b"/v1/models?client_version=0.170.0")
        self.assertEqual(headers[b"server"], b"codexgw")
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertIn(b"x-request-id", headers)

    def test_the_same_catalog_has_the_same_etag_in_both_ways_of_asking(self) -> None:
        first = self.get(b"/v1/models?client_version=0.170.0")
        again = self.get(b"/v1/models?client_version=0.171.0")
        explicit = self.get(b"/v1/models?format=codex")
        self.assertEqual(first[1][b"etag"], again[1][b"etag"])
        self.assertEqual(first[1][b"etag"], explicit[1][b"etag"])
        self.assertEqual(first[2], explicit[2])

    def test_a_matching_if_none_match_is_304_with_no_body(self) -> None:
        tag = self.get(b"/v1/models?client_version=0.170.0")[1][b"etag"]
        status, headers, body = self.get(
            b"/v1/models?client_version=0.170.0", {b"if-none-match": tag}
        )
        self.assertEqual(status, 304)
        self.assertEqual(body, b"")
        self.assertEqual(headers[b"etag"], tag)
        self.assertNotIn(b"content-type", headers)
        self.assertEqual(headers[b"server"], b"codexgw")

    def test_304_also_for_format_codex(self) -> None:
        tag = self.get(b"/v1/models?format=codex")[1][b"etag"]
        status, _, body = self.get(b"/v1/models?format=codex", {b"if-none-match": tag})
        self.assertEqual((status, body), (304, b""))

    def test_a_stale_etag_gets_the_whole_catalog(self) -> None:
        status, headers, body = self.get(
            b"/v1/models?client_version=0.170.0", {b"if-none-match": b'"not-this-one"'}
        )
        self.assertEqual(status, 200)
        self.assertEqual(len(orjson.loads(body)["models"]), 2)
        self.assertNotEqual(headers[b"etag"], b'"not-this-one"')

    def test_each_key_has_its_own_view_and_its_own_etag(self) -> None:
        alice = self.get(b"/v1/models?client_version=0.170.0")
        client = self.h.connect()
        client.send(b"GET", b"/v1/models?client_version=0.170.0", headers=BOB)
        status, headers, body = client.response()
        self.assertEqual([m["slug"] for m in orjson.loads(body)["models"]], ["small-coder"])
        self.assertNotEqual(headers[b"etag"], alice[1][b"etag"])
        # Alice's tag does not revalidate Bob's view.
        client = self.h.connect()
        client.send(
            b"GET",
            b"/v1/models?client_version=0.170.0",
            headers={**BOB, b"if-none-match": alice[1][b"etag"]},
        )
        self.assertEqual(client.response()[0], 200)

    def test_the_catalog_still_needs_a_key(self) -> None:
        client = self.h.connect()
        client.send(b"GET", b"/v1/models?client_version=0.170.0")
        status, headers, _ = client.response()
        self.assertEqual(status, 401)
        self.assertNotIn(b"etag", headers)

    def test_without_client_version_it_is_the_openai_listing(self) -> None:
        status, headers, body = self.get(b"/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(orjson.loads(body)["data"][0]["id"], "small-coder")
        self.assertNotIn(b"etag", headers)


class NotModifiedTests(SynchronousTestCase):
    def test_lists_star_and_weak_tags_match(self) -> None:
        tag = b'"abc"'
        self.assertTrue(notModified(b'"x", "abc"', tag))
        self.assertTrue(notModified(b"*", tag))
        self.assertTrue(notModified(b'W/"abc"', tag))
        self.assertFalse(notModified(b'"abcd"', tag))
        self.assertFalse(notModified(b"abc", tag))
        self.assertFalse(notModified(None, tag))
        self.assertFalse(notModified(b"", tag))
