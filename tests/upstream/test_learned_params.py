"""
Request parameters a strict upstream refuses: found in its 400 (whatever
words its server uses), sent once more without, remembered for the upstream
and shown in C{/health}.
"""

from __future__ import annotations

from typing import Any

import orjson
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from codexgw.service import Gateway
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.learned import LIMIT, RefusedParams, refusedParameter, sendLearning
from tests.fakes.agent import FakeResponse
from tests.fakes.dialects import REFUSALS, Dialect, DialectUpstream, refusal
from tests.harness import ClientConnection, Harness, makeConfig

SENT = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
JSON = {b"content-type": b"application/json"}
SSE = {b"content-type": b"text/event-stream"}
TURN = {"model": "m", "input": "hi", "stream": True, "user": "u-1"}
OK_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


class RefusedParameterTests(SynchronousTestCase):
    def test_every_servers_words_name_the_parameter(self) -> None:
        for style in REFUSALS:
            status, body = refusal(style, "stream_options")
            self.assertEqual(refusedParameter(status, body, SENT), "stream_options", style)

    def test_other_providers_words(self) -> None:
        gemini = orjson.dumps(
            [
                {
                    "error": {
                        "code": 400,
                        "message": 'Invalid JSON payload received. Unknown name "stream_options": '
                        "Cannot find field.",
                        "status": "INVALID_ARGUMENT",
                    }
                }
            ]
        )
        groq = b'{"error": {"message": "property \'stream_options\' is unsupported"}}'
        mistral = orjson.dumps(
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "stream_options"],
                            "msg": "Extra inputs are not permitted",
                        }
                    ]
                },
            }
        )
        for status, body in ((400, gemini), (400, groq), (422, mistral)):
            self.assertEqual(refusedParameter(status, body, SENT), "stream_options", body)

    def test_only_a_top_level_key_of_what_was_sent_is_named(self) -> None:
        for style in REFUSALS:
            status, body = refusal(style, "logprobs")
            self.assertIsNone(refusedParameter(status, body, SENT), style)

    def test_a_path_inside_a_parameter_is_not_the_parameter(self) -> None:
        sent = dict(SENT, tools=[], response_format={})
        for name in ("tools[].function.strict", "response_format.json_schema.strict"):
            for style in REFUSALS:
                status, body = refusal(style, name)
                self.assertIsNone(refusedParameter(status, body, sent), (style, name))
        openai = b'{"error": {"message": "Unknown parameter: \'stream_options[0]\'."}}'
        self.assertIsNone(refusedParameter(400, openai, SENT))

    def test_what_a_request_cannot_go_without_is_never_named(self) -> None:
        for name in ("model", "messages", "stream", "tools"):
            status, body = refusal("openai-unsupported", name)
            self.assertIsNone(refusedParameter(status, body, dict(SENT, tools=[])), name)

    def test_a_bad_value_is_not_a_refused_parameter(self) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "message": "Invalid value for 'stream_options': expected an object.",
                    "type": "invalid_request_error",
                    "param": "stream_options",
                    "code": "invalid_value",
                }
            }
        )
        self.assertIsNone(refusedParameter(400, body, SENT))

    def test_only_refusal_statuses_are_looked_into(self) -> None:
        status, body = refusal("openai-unsupported", "stream_options")
        for other in (401, 404, 429, 500):
            self.assertIsNone(refusedParameter(other, body, SENT))

    def test_bodies_that_are_not_json_or_say_nothing(self) -> None:
        self.assertIsNone(refusedParameter(400, b"", SENT))
        self.assertIsNone(refusedParameter(400, b"\xff\xfe bad request", SENT))
        self.assertIsNone(refusedParameter(400, b'{"error": null}', SENT))
        self.assertEqual(
            refusedParameter(400, b"Unsupported param: stream_options", SENT), "stream_options"
        )


class RefusedParamsTests(SynchronousTestCase):
    def test_it_is_learned_once_and_logged_once(self) -> None:
        lines: list[LogEvent] = []
        globalLogPublisher.addObserver(lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, lines.append)
        refused = RefusedParams("strict")
        self.assertTrue(refused.remember("user"))
        self.assertFalse(refused.remember("user"))
        self.assertEqual(refused.names(), ["user"])
        logged = [e for e in lines if e.get("param") == "user"]
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["upstream"], "strict")

    def test_the_memory_is_bounded(self) -> None:
        refused = RefusedParams("strict")
        for n in range(LIMIT + 10):
            refused.remember(f"p{n}")
        self.assertEqual(len(refused.names()), LIMIT)

    def test_strip_leaves_a_body_with_nothing_refused_as_it_is(self) -> None:
        refused = RefusedParams("strict")
        body = dict(SENT)
        self.assertIs(refused.strip(body), body)
        refused.remember("stream_options")
        self.assertEqual(
            refused.strip(body), {k: v for k, v in SENT.items() if k != "stream_options"}
        )
        self.assertIn("stream_options", body)


def _answer(code: int, body: bytes) -> FakeResponse:
    response = FakeResponse(code, JSON, len(body))
    response.autoBody = body
    return response


class SendLearningTests(SynchronousTestCase):
    """L{sendLearning} with a scripted C{post}."""

    def setUp(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.answers: list[FakeResponse] = []
        self.retries: list[str] = []

    def post(self, raw: bytes) -> Deferred[IResponse]:
        self.posted.append(orjson.loads(raw))
        d: Deferred[IResponse] = Deferred()
        d.callback(self.answers.pop(0))
        return d

    def send(self, refused: RefusedParams, body: dict[str, Any] = SENT) -> IResponse:
        d = Deferred.fromCoroutine(
            sendLearning(refused, dict(body), self.post, lambda r, _: self.retries.append(r))
        )
        return self.successResultOf(d)

    def test_a_refused_parameter_is_sent_once_more_without(self) -> None:
        refused = RefusedParams("strict")
        self.answers = [_answer(*refusal("vllm", "stream_options")), _answer(200, b"{}")]
        response = self.send(refused)
        self.assertEqual(response.code, 200)
        self.assertEqual([("stream_options" in b) for b in self.posted], [True, False])
        self.assertEqual(refused.names(), ["stream_options"])
        self.assertEqual(self.retries, ["refused_param"])

    def test_an_error_naming_nothing_sent_is_relayed_as_it_came(self) -> None:
        refused = RefusedParams("strict")
        status, body = refusal("openai-unsupported", "logprobs")
        self.answers = [_answer(status, body)]
        response = self.send(refused)
        self.assertEqual(response.code, 400)
        self.assertEqual(self.successResultOf(readCapped(response)), body)
        self.assertEqual(len(self.posted), 1)
        self.assertEqual(refused.names(), [])

    def test_a_second_refusal_is_relayed_but_remembered(self) -> None:
        refused = RefusedParams("strict")
        status, body = refusal("pydantic", "user")
        self.answers = [_answer(*refusal("openai", "stream_options")), _answer(status, body)]
        response = self.send(refused, dict(SENT, user="u-1"))
        self.assertEqual((response.code, len(self.posted)), (422, 2))
        self.assertEqual(self.successResultOf(readCapped(response)), body)
        self.assertEqual(refused.names(), ["stream_options", "user"])

    def test_what_is_known_refused_is_not_sent_at_all(self) -> None:
        refused = RefusedParams("strict")
        refused.remember("stream_options")
        self.answers = [_answer(200, b"{}")]
        self.assertEqual(self.send(refused).code, 200)
        self.assertEqual(self.posted, [{k: v for k, v in SENT.items() if k != "stream_options"}])
        self.assertEqual(self.retries, [])


class _Served:
    """A whole gateway on a memory reactor in front of a L{DialectUpstream}."""

    def __init__(self, dialect: Dialect, **upstream: Any) -> None:
        self.fake = DialectUpstream(dialect)
        self.agent = RequestTraversalAgent(self.fake)
        config = makeConfig(**upstream)
        self.gateway = Gateway(config, MemoryReactorClock(), agent=self.agent)
        self.site = self.gateway.makeSite(self.gateway.reactor)

    def post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        client = ClientConnection(self.site)
        client.post(b"/v1/responses", body)
        for _ in range(10):
            self.agent.flush()
        status, _, raw = client.response()
        return status, raw

    def health(self) -> dict[str, Any]:
        client = ClientConnection(self.site)
        client.send(b"GET", b"/health")
        for _ in range(10):
            self.agent.flush()
        result: dict[str, Any] = client.json()["upstreams"]["main"]
        return result


class StrictUpstreamTests(SynchronousTestCase):
    """Through the gateway, against a fake strict Chat server."""

    def test_first_request_is_retried_once_without_the_field_and_succeeds(self) -> None:
        for style in REFUSALS:
            served = _Served(Dialect("strict", "m", refuses=frozenset({"user"}), refusal=style))
            status, raw = served.post(TURN)
            self.assertEqual(status, 200, style)
            self.assertIn(b"response.completed", raw, style)
            self.assertEqual([("user" in b) for b in served.fake.received], [True, False], style)

    def test_the_second_request_goes_without_it_at_once_and_health_shows_it(self) -> None:
        served = _Served(Dialect("strict", "m", refuses=frozenset({"user"})))
        self.assertEqual(served.health()["refused_params"], [])
        served.post(TURN)
        before = len(served.fake.received)
        status, _ = served.post(TURN)
        self.assertEqual(status, 200)
        self.assertEqual(len(served.fake.received), before + 1)
        self.assertNotIn("user", served.fake.received[-1])
        self.assertEqual(served.health()["refused_params"], ["user"])

    def test_a_request_is_retried_once_only_and_the_next_goes_without_both(self) -> None:
        served = _Served(
            Dialect("strict", "m", refuses=frozenset({"stream_options", "user"}), refusal="vllm")
        )
        status, _ = served.post(TURN)
        self.assertEqual(status, 400)
        self.assertEqual(len(served.fake.received), 2)
        status, _ = served.post(TURN)
        self.assertEqual(status, 200)
        self.assertEqual(len(served.fake.received), 3)
        self.assertEqual(sorted(served.health()["refused_params"]), ["stream_options", "user"])


class RelayedRefusalTests(SynchronousTestCase):
    """What is not a refusal of something sent reaches the client as the upstream said it."""

    def test_a_400_naming_a_parameter_not_sent_is_relayed_as_is(self) -> None:
        h = Harness(makeConfig())
        client = h.connect()
        client.post(b"/v1/responses", TURN)
        status, body = refusal("openai-unsupported", "logprobs")
        h.sent[0].respond(status, JSON, body)
        code, _, answer = client.response()
        self.assertEqual(code, 400)
        self.assertEqual(len(h.sent), 1)
        error = orjson.loads(answer)["error"]
        self.assertIn("logprobs", error["message"])
        self.assertEqual(error["param"], "logprobs")

    def test_the_retry_is_neither_a_failover_nor_a_breaker_failure(self) -> None:
        h = Harness(
            makeConfig(
                {
                    "upstreams": {
                        "main": {
                            "base_url": "http://a.test/v1",
                            "wire_api": "chat",
                            "retries": {"max_attempts": 1},
                        },
                        "spare": {
                            "base_url": "http://b.test/v1",
                            "wire_api": "chat",
                            "retries": {"max_attempts": 1},
                        },
                    },
                    "models": [{"match": "m", "upstream": "main", "fallbacks": ["spare"]}],
                }
            )
        )
        client = h.connect()
        client.post(b"/v1/responses", TURN)
        h.sent[0].respond(*_status_json(refusal("openai", "user")))
        self.assertEqual(len(h.sent), 2)
        self.assertTrue(h.sent[1].uri.startswith(b"http://a.test/"))
        self.assertNotIn("user", orjson.loads(h.sent[1].body))
        h.sent[1].respond(200, SSE, OK_STREAM)
        self.assertEqual(client.response()[0], 200)
        self.assertIn(b"response.completed", client.response()[2])
        self.assertEqual(h.gateway.breakers["main"].failures, 0)
        self.assertIsNone(h.metric("codexgw_failovers_total", upstream="main", reason="400"))
        self.assertEqual(
            h.metric("codexgw_upstream_retries_total", upstream="main", reason="refused_param"), 1
        )


def _status_json(answer: tuple[int, bytes]) -> tuple[int, dict[bytes, bytes], bytes]:
    return answer[0], JSON, answer[1]


class NewRequestFieldsTests(SynchronousTestCase):
    """
    Fields Codex keeps adding to its requests are not sent to a Chat
    upstream that has no use for them: a strict one answers at once.
    """

    NEW = {
        "prompt_cache_options": {"retention": "24h"},
        "prompt_cache_key": "thread-1",
        "service_tier": "priority",
        "stream_options": {"include_obfuscation": False},
        "client_metadata": {"x-codex-turn": "1"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "truncation": "auto",
    }

    def test_a_strict_upstream_answers_a_codex_request_with_new_fields_at_once(self) -> None:
        # Chat has stream_options of its own (include_usage), which is sent.
        refuses = (frozenset(self.NEW) - {"stream_options"}) | {"reasoning", "input"}
        served = _Served(Dialect("strict", "m", refuses=refuses, refusal="pydantic"))
        body = dict(
            TURN,
            **self.NEW,
            reasoning={"summary": "auto", "context": "all"},
            input=[
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "hi", "cache_control": {"type": "x"}}
                    ],
                }
            ],
        )
        status, raw = served.post(body)
        self.assertEqual(status, 200, raw)
        [sent] = served.fake.received
        self.assertEqual(set(sent) & refuses, set())
        self.assertEqual(
            sent["messages"],
            [{"role": "user", "content": "hi"}],  # cache_control left behind
        )
        self.assertEqual(sent["stream_options"], {"include_usage": True})
        self.assertEqual(served.health()["refused_params"], [])
