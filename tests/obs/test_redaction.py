"""
No upstream secret ever reaches a client: an upstream that echoes the
request's C{Authorization} header in every kind of answer, on every route,
and the one redaction function all of them pass through.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.config import parse
from codexgw.obs.redaction import MIN_SECRET, Redactor
from codexgw.service import Gateway
from tests.harness import Harness, makeConfig
from tests.integration.test_integration import httpClient, serve

UPSTREAM_KEY = "sk-upstream-0123456789abcdefXYZ"
OTHER_UPSTREAM_KEY = "sk-resp-upstream-9876543210zyx"
GATEWAY_KEY = "gw-team-key-ABCDEFGHIJKLMNOP"
SECRETS = (UPSTREAM_KEY, OTHER_UPSTREAM_KEY, GATEWAY_KEY)


class RedactorTests(SynchronousTestCase):
    def test_a_secret_is_replaced_by_a_mark_of_the_same_length(self) -> None:
        r = Redactor([UPSTREAM_KEY])
        out = r.redact(b'{"auth": "Bearer ' + UPSTREAM_KEY.encode() + b'"}')
        self.assertNotIn(UPSTREAM_KEY.encode(), out)
        self.assertEqual(len(out), len(b'{"auth": "Bearer ') + len(UPSTREAM_KEY) + 2)
        self.assertIn(b"[redacted", orjson.loads(out)["auth"].encode())

    def test_json_escaped_forms_are_replaced_too(self) -> None:
        secret = 'sk-with/slash+and"quote'
        r = Redactor([secret])
        for form in (orjson.dumps(secret)[1:-1], orjson.dumps(secret)[1:-1].replace(b"/", b"\\/")):
            self.assertNotIn(form, r.redact(b"x " + form + b" y"))

    def test_short_values_are_not_treated_as_secrets(self) -> None:
        r = Redactor(["x" * (MIN_SECRET - 1), ""])
        self.assertFalse(r.active)
        self.assertEqual(r.redact(b"xxxxxxx"), b"xxxxxxx")

    def test_a_secret_split_across_writes_is_caught(self) -> None:
        r = Redactor([UPSTREAM_KEY])
        body = b'data: {"echo": "' + UPSTREAM_KEY.encode() + b'"}\n\n'
        for cut in range(1, len(body)):
            stream = r.stream()
            out = stream.feed(body[:cut]) + stream.feed(body[cut:]) + stream.flush()
            self.assertEqual(len(out), len(body))
            self.assertNotIn(UPSTREAM_KEY.encode(), out, cut)

    def test_nothing_is_held_back_at_a_line_end(self) -> None:
        stream = Redactor([UPSTREAM_KEY]).stream()
        self.assertEqual(stream.feed(b"data: sk-\n\n"), b"data: sk-\n\n")
        self.assertEqual(stream.feed(b"data: {}"), b"data: {}")

    def test_only_a_possible_beginning_is_held_back(self) -> None:
        stream = Redactor([UPSTREAM_KEY]).stream()
        self.assertEqual(stream.feed(b"the sk-up"), b"the ")
        self.assertEqual(stream.feed(b"str"), b"")
        self.assertEqual(stream.feed(b"cut"), b"sk-upstrcut")
        self.assertEqual(stream.feed(b" and more sk"), b" and more ")
        self.assertEqual(stream.flush(), b"sk")


class SplitKeyTests(SynchronousTestCase):
    """A key the upstream's bytes split between two reads, on the raw relay."""

    def test_a_relayed_stream_never_shows_a_key_split_across_reads(self) -> None:
        h = Harness(makeConfig(api_key=UPSTREAM_KEY))
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
        upstream = h.sent[0].respond(200, {b"content-type": b"text/event-stream"})
        key = UPSTREAM_KEY.encode()
        upstream.send(b'data: {"error": {"message": "bad Bearer ' + key[:9])
        upstream.send(key[9:] + b'"}}\n\n')
        upstream.end()
        body = client.response()[2]
        self.assertIn(b"Bearer [redacted", body)
        self.assertNotIn(key, client.raw)
        self.assertNotIn(key[9:], client.raw)

    def test_a_relayed_json_answer_keeps_its_length_and_loses_the_key(self) -> None:
        h = Harness(makeConfig(api_key=UPSTREAM_KEY))
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": []})
        answer = orjson.dumps({"error": {"message": f"invalid key Bearer {UPSTREAM_KEY}"}})
        upstream = h.sent[0].respond(
            401, {b"content-type": b"application/json"}, length=len(answer)
        )
        upstream.send(answer[:30])
        upstream.send(answer[30:])
        upstream.end()
        status, headers, body = client.response()
        self.assertEqual(status, 401)
        self.assertEqual(int(headers[b"content-length"]), len(body))
        self.assertNotIn(UPSTREAM_KEY.encode(), client.raw)
        self.assertIn("[redacted", orjson.loads(body)["error"]["message"])


def _auth(request: Request) -> str:
    return (request.getHeader(b"authorization") or b"").decode()


class EchoingUpstream(Resource):
    """
    Answers every request by echoing its C{Authorization} header (as some
    providers do in their errors), in the kind of answer the request's body
    names with C{mode:<kind>}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def render(self, request: Request) -> Any:
        raw = request.content.read() if request.content else b""
        found = re.search(rb"mode:([a-z_]+)", raw)
        mode = found.group(1).decode() if found else "json"
        auth = _auth(request)
        self.seen.append(auth)
        # And whatever gateway key a client pasted into its prompt.
        pasted = re.search(rb"gw-[A-Za-z-]+", raw)
        if pasted:
            auth += " and " + pasted.group(0).decode()
        if request.method == b"GET":
            mode = "stored"
        return getattr(self, mode)(request, auth)

    def _json(self, request: Request, status: int, payload: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps(payload)

    def _sse(self, request: Request, events: list[bytes], split: bool = False) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        body = b"".join(events)
        if not split:
            request.write(body)
            request.finish()
            return NOT_DONE_YET
        # The key split in two TCP writes, some time apart.
        cut = body.index(b"sk-") + 7
        request.write(body[:cut])

        def rest() -> None:
            if not request.finished and request.channel is not None:
                request.write(body[cut:])
                request.finish()

        reactor.callLater(0.05, rest)
        return NOT_DONE_YET

    def error(self, request: Request, auth: str) -> bytes:
        return self._json(
            request,
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {auth}",
                    "code": "invalid_api_key",
                }
            },
        )

    def json(self, request: Request, auth: str) -> bytes:
        if request.path.endswith(b"/responses"):
            return self._json(request, 200, self._response(auth))
        return self._json(
            request,
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"you sent {auth}"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    def _response(self, auth: str, status: str = "completed") -> dict[str, Any]:
        return {
            "id": "resp_echo",
            "object": "response",
            "created_at": 1,
            "status": status,
            "model": "m",
            "output": [
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": f"you sent {auth}", "annotations": []}
                    ],
                }
            ],
            "error": {"code": "x", "message": f"you sent {auth}"} if status == "failed" else None,
        }

    def sse(self, request: Request, auth: str, split: bool = False) -> Any:
        if request.path.endswith(b"/responses"):
            done = {"type": "response.completed", "response": self._response(auth)}
            delta = {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": f"you sent {auth}",
            }
            events = [
                b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                for e in (delta, done)
            ]
            return self._sse(request, events, split)
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"you sent {auth}"}}],
        }
        end = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        return self._sse(
            request,
            [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: " + orjson.dumps(end) + b"\n\n"],
            split,
        )

    def split(self, request: Request, auth: str) -> Any:
        return self.sse(request, auth, split=True)

    def sse_error(self, request: Request, auth: str) -> Any:
        if request.path.endswith(b"/responses"):
            failed = {"type": "response.failed", "response": self._response(auth, "failed")}
            error = {"type": "error", "code": "bad", "message": f"you sent {auth}"}
            return self._sse(
                request,
                [
                    b"event: error\ndata: " + orjson.dumps(error) + b"\n\n",
                    b"event: response.failed\ndata: " + orjson.dumps(failed) + b"\n\n",
                ],
            )
        error = {"error": {"message": f"upstream failed for {auth}", "type": "server_error"}}
        return self._sse(request, [b"data: " + orjson.dumps(error) + b"\n\n"])

    def stored(self, request: Request, auth: str) -> bytes:
        return self._json(request, 200, self._response(auth))


class EchoedSecretsTests(TestCase):
    """Every route, every kind of answer: no key in anything a client gets."""

    async def test_no_key_reaches_a_client_on_any_route(self) -> None:
        chat, responses = EchoingUpstream(), EchoingUpstream()
        chatPort = serve(self, chat).getHost().port
        respPort = serve(self, responses).getHost().port
        config = parse(
            {
                "upstreams": {
                    "chat": {
                        "base_url": f"http://127.0.0.1:{chatPort}/v1",
                        "api_key": UPSTREAM_KEY,
                        "retries": {"max_attempts": 1},
                    },
                    "resp": {
                        "base_url": f"http://127.0.0.1:{respPort}/v1",
                        "api_key": OTHER_UPSTREAM_KEY,
                        "wire_api": "responses",
                        "retries": {"max_attempts": 1},
                    },
                },
                "default_upstream": "chat",
                "models": [{"match": "r-*", "upstream": "resp"}],
                "auth": {"keys": [{"name": "team", "key": GATEWAY_KEY}]},
                "store": {"backend": "none"},
            },
            "test.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        base = f"http://127.0.0.1:{serve(self, gateway.resource).getHost().port}/v1"
        http = httpClient(self)
        headers = {"authorization": f"Bearer {GATEWAY_KEY}"}
        received: list[bytes] = []

        async def post(path: str, body: dict[str, Any]) -> None:
            response = await http.post(base + path, json=body, headers=headers)
            content = await response.content()
            raw = repr(list(response.headers.getAllRawHeaders())).encode() + content
            received.append(raw)

        modes = ["error", "json", "sse", "split", "sse_error"]
        for mode in modes:
            stream = mode != "json"
            text = f"mode:{mode} (my key is {GATEWAY_KEY})"
            for model in ("m", "r-m"):
                await post(
                    "/chat/completions",
                    {
                        "model": model,
                        "messages": [{"role": "user", "content": text}],
                        "stream": stream,
                    },
                )
                await post("/responses", {"model": model, "input": text, "stream": stream})
                if mode in ("error", "sse_error"):
                    await post("/responses", {"model": model, "input": text, "stream": False})
        response = await http.get(base + "/responses/resp_echo", headers=headers)
        received.append(await response.content())
        await deferLater(reactor, 0, lambda: None)

        # The upstreams did echo their keys, every time.
        self.assertEqual(set(chat.seen), {f"Bearer {UPSTREAM_KEY}"})
        self.assertEqual(set(responses.seen), {f"Bearer {OTHER_UPSTREAM_KEY}"})
        everything = b"\n".join(received)
        self.assertIn(b"[redacted", everything)
        self.assertEqual(len(received), 2 * 2 * len(modes) + 2 * 2 + 1)
        for secret in SECRETS:
            self.assertNotIn(secret.encode(), everything)
            self.assertNotIn(secret[4:].encode(), everything)


class LogTests(SynchronousTestCase):
    def test_the_log_observers_scrub_every_configured_credential(self) -> None:
        import io

        from twisted.logger import Logger

        from codexgw.obs.logs import jsonObserver, textObserver

        h = Harness(makeConfig(api_key="plainsecretvalue42"))  # no credential shape at all
        self.assertTrue(h.gateway.redactor.active)
        text, json = io.StringIO(), io.StringIO()
        log = Logger(observer=lambda e: (textObserver(text)(e), jsonObserver(json)(e)))
        log.warn("upstream said {what}", what="bad key plainsecretvalue42")
        self.assertIn("upstream said", text.getvalue())
        self.assertNotIn("plainsecretvalue42", text.getvalue() + json.getvalue())


class ConfigSecretsTests(SynchronousTestCase):
    def test_a_profiles_credential_header_is_a_secret_too(self) -> None:
        from codexgw.config import parse
        from codexgw.obs.redaction import configSecrets

        config = parse(
            {
                "profiles": {
                    "mine": {"extends": "openai", "headers": {"X-Api-Key": "profile-secret-123456"}}
                },
                "upstreams": {"main": {"base_url": "http://h/v1", "provider": "mine"}},
            },
            "t.yaml",
            {},
        )
        self.assertIn("profile-secret-123456", configSecrets(config))
        self.assertNotIn(
            b"profile-secret-123456",
            Redactor(configSecrets(config)).redact(b"echo profile-secret-123456"),
        )
