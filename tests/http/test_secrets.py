"""
Secrets never leave: gateway keys, upstream keys and client-presented keys
appear in no log line, no metric and no error body.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.error import ConnectionRefusedError
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from codexgw.obs.logs import jsonObserver, textObserver
from tests.harness import Harness, makeConfig

UPSTREAM_KEY = "sk-upstream-aaaaaaaaaaaaaaaa"
GATEWAY_KEY = "gwkey-bbbbbbbbbbbbbbbb"
WRONG_KEY = "sk-guess-cccccccccccccccc"
SECRETS = (UPSTREAM_KEY, GATEWAY_KEY, WRONG_KEY, "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb")


class SecretsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.text = io.StringIO()
        self.json = io.StringIO()
        self.events: list[dict[str, Any]] = []
        observers = [textObserver(self.text), jsonObserver(self.json), self.events.append]
        for observer in observers:
            globalLogPublisher.addObserver(observer)
            self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.h = Harness(
            makeConfig(
                {"auth": {"keys": [{"name": "team-a", "key": GATEWAY_KEY}]}},
                api_key=UPSTREAM_KEY,
                headers={"x-extra-auth": UPSTREAM_KEY},
            )
        )

    def test_no_secret_in_logs_metrics_or_bodies(self) -> None:
        bodies = []
        good = {b"authorization": b"Bearer " + GATEWAY_KEY.encode()}
        # A wrong key, a good one, an upstream failure, an upstream error body.
        client = self.h.connect()
        client.post(
            b"/v1/chat/completions",
            {"model": "m", "messages": []},
            {b"authorization": b"Bearer " + WRONG_KEY.encode()},
        )
        bodies.append(client.raw)
        client = self.h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": []}, good)
        self.h.sent[-1].deferred.errback(Failure(ConnectionRefusedError()))
        bodies.append(client.raw)
        client = self.h.connect()
        client.post(b"/v1/responses", {"model": "m", "input": "hi"}, good)
        self.h.sent[-1].respond(
            401,
            {b"content-type": b"application/json"},
            b'{"error": {"message": "bad key", "type": "auth"}}',
        )
        bodies.append(client.raw)
        client = self.h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": []}, good)
        self.h.sent[-1].respond(
            200, {b"content-type": b"application/json"}, b'{"usage": {"prompt_tokens": 3}}'
        )
        bodies.append(client.raw)
        metrics = self.h.connect()
        metrics.send(b"GET", b"/metrics")
        bodies.append(metrics.raw)

        self.assertIn(b'key="team-a"', metrics.raw)  # the name is there
        self.assertGreater(len(self.events), 3)
        everything = (
            self.text.getvalue()
            + self.json.getvalue()
            + repr(self.events)
            + b"".join(bodies).decode("latin-1")
        )
        for secret in SECRETS:
            self.assertNotIn(secret, everything)
