"""
The contracts between relays, adapters and the dialects' translators hold
for every implementation, and the two adapters serve both bridges.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from codexgw.dialects.chat.dialect import ChatDialect
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.request_to_hub import chat_to_responses
from codexgw.dialects.chat.stream_from_hub import ResponsesToChat
from codexgw.dialects.chat.stream_to_hub import ChatToResponses
from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.errors import GatewayError, error_body
from codexgw.stream.adapters import (
    CHAT_SSE,
    RESPONSES_SSE,
    StreamingAdapter,
    WholeAnswerAdapter,
)
from codexgw.stream.interfaces import IAnswer, IEventAdapter
from codexgw.stream.outcomes import Outcome
from codexgw.stream.sse import SSEDecoder, SSEEvent


def hubTranslator() -> ChatToResponses:
    return ChatToResponses(
        responses_to_chat({"model": "m", "input": "hi", "stream": True}, ChatDialect()), model="m"
    )


def chatTranslator() -> ResponsesToChat:
    return ResponsesToChat(
        chat_to_responses({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    )


@implementer(IAnswer)
class Answer:
    def __init__(self) -> None:
        self.said: list[tuple[str, int, bytes]] = []

    def respond(self, code: int, contentType: bytes) -> None:
        self.said.append(("respond", code, contentType))

    def respondWithError(self, code: int, contentType: bytes) -> None:
        self.said.append(("error", code, contentType))

    def renderError(self, error: GatewayError) -> tuple[int, bytes]:
        return error.status, error_body(error)


def event(payload: dict[str, Any]) -> SSEEvent:
    return SSEEvent(orjson.dumps(payload).decode())


class ContractTests(SynchronousTestCase):
    def test_both_translators_provide_the_stream_translator_contract(self) -> None:
        for translator in (hubTranslator(), chatTranslator()):
            self.assertTrue(verifyObject(IStreamTranslator, translator))

    def test_both_adapters_provide_the_event_adapter_contract(self) -> None:
        adapters = [
            StreamingAdapter(hubTranslator(), RESPONSES_SSE),
            StreamingAdapter(chatTranslator(), CHAT_SSE),
            WholeAnswerAdapter(hubTranslator(), Answer()),
            WholeAnswerAdapter(chatTranslator(), Answer()),
        ]
        for adapter in adapters:
            self.assertTrue(verifyObject(IEventAdapter, adapter))

    def test_every_failure_outcome_says_what_and_how_it_failed(self) -> None:
        for outcome in Outcome.iterconstants():
            self.assertTrue(outcome.value)
            if outcome not in (Outcome.COMPLETE, Outcome.ERROR, Outcome.UPSTREAM_ERROR):
                self.assertTrue(outcome.message, outcome)
            if outcome not in (
                Outcome.COMPLETE,
                Outcome.CLIENT_GONE,
                Outcome.ERROR,
                Outcome.UPSTREAM_ERROR,
            ):
                self.assertTrue(outcome.failureCode, outcome)


class FramingTests(SynchronousTestCase):
    def test_a_chat_stream_that_ends_says_done_and_one_that_breaks_does_not(self) -> None:
        adapter = StreamingAdapter(chatTranslator(), CHAT_SSE)
        out = adapter.event(event({"type": "response.output_text.delta", "delta": "Hi"}))
        out += adapter.end(Outcome.COMPLETE, "")
        self.assertTrue(out.endswith(b"data: [DONE]\n\n"))
        broken = StreamingAdapter(chatTranslator(), CHAT_SSE)
        cut = broken.event(event({"type": "response.output_text.delta", "delta": "Hi"}))
        cut += broken.end(Outcome.UPSTREAM_BROKEN, Outcome.UPSTREAM_BROKEN.message)
        self.assertNotIn(b"[DONE]", cut)
        last = SSEDecoder().feed(cut)[-1]
        self.assertEqual(orjson.loads(last.data)["error"]["code"], "upstream_stream_broken")

    def test_a_responses_stream_fails_with_the_outcomes_code(self) -> None:
        adapter = StreamingAdapter(hubTranslator(), RESPONSES_SSE)
        out = adapter.start() + adapter.end(Outcome.IDLE_TIMEOUT, "silent")
        events = [orjson.loads(e.data) for e in SSEDecoder().feed(out)]
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_idle_timeout")
        self.assertTrue(adapter.failed)


class WholeAnswerTests(SynchronousTestCase):
    def test_a_whole_answer_that_failed_is_a_502_in_openais_shape(self) -> None:
        for translator in (hubTranslator(), chatTranslator()):
            answer = Answer()
            adapter = WholeAnswerAdapter(translator, answer)
            body = adapter.end(Outcome.UPSTREAM_BROKEN, "cut")
            self.assertEqual(answer.said, [("error", 502, b"application/json")])
            error = orjson.loads(body)["error"]
            self.assertEqual((error["code"], error["message"]), ("upstream_stream_broken", "cut"))

    def test_a_whole_answer_is_the_dialects_answer_object(self) -> None:
        answer = Answer()
        adapter = WholeAnswerAdapter(chatTranslator(), answer)
        adapter.event(event({"type": "response.output_text.delta", "delta": "Hi"}))
        body = orjson.loads(adapter.end(Outcome.COMPLETE, ""))
        self.assertEqual(answer.said, [("respond", 200, b"application/json")])
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["choices"][0]["message"]["content"], "Hi")
