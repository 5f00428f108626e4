"""
Compaction for a model on a Messages upstream: C{POST /v1/responses/compact}
and the Codex CLI's C{compaction_trigger} ask the upstream for a summary in
its own dialect, read it with its own translator, and answer with the same
sealed C{compaction} item as on a Chat upstream.
"""

from __future__ import annotations

from typing import Any

import orjson
from openresponses_types.types import CompactResource, ResponseResource
from twisted.trial.unittest import SynchronousTestCase

from codexgw.dialects.responses.compaction import DEFAULT_PROMPT, unseal_compaction
from codexgw.stream.sse import SSEDecoder
from tests.fakes import messages_upstream as anthropic
from tests.harness import Harness, makeConfig

COMPACT = b"/v1/responses/compact"
RESPONSES = b"/v1/responses"
KEY = "shared-replica-secret"
SUMMARY = "The user asked for the weather in Paris; it is sunny."
CONVERSATION: list[dict[str, Any]] = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Brief."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sun."}]},
]


def gateway() -> Harness:
    return Harness(
        makeConfig(
            {"server": {"seal_key": KEY}},
            wire_api="messages",
            provider="anthropic",
            api_key="sk-ant-upstream-0123456789",
        )
    )


class CompactOntoMessagesTests(SynchronousTestCase):
    def test_compact_asks_the_messages_upstream_and_seals_its_summary(self) -> None:
        h = gateway()
        client = h.connect()
        client.post(COMPACT, {"model": "claude-sonnet-4-5", "input": CONVERSATION})
        [sent] = h.sent
        self.assertEqual(sent.uri, b"http://upstream.test/v1/messages")
        self.assertEqual(sent.header(b"x-api-key"), b"sk-ant-upstream-0123456789")
        self.assertEqual(sent.header(b"anthropic-version"), b"2023-06-01")
        body = orjson.loads(sent.body)
        self.assertIs(body["stream"], False)
        self.assertIn(DEFAULT_PROMPT, orjson.dumps(body["messages"][-1]).decode())
        sent.respond(200, anthropic.JSON, anthropic.wholeText(SUMMARY))
        status, _, raw = client.response()
        self.assertEqual(status, 200, raw)
        answer = orjson.loads(raw)
        CompactResource.model_validate(answer)
        *kept, item = answer["output"]
        self.assertEqual([m["role"] for m in kept], ["user"])
        self.assertEqual(unseal_compaction(item["encrypted_content"], KEY.encode()), SUMMARY)
        self.assertEqual(answer["usage"]["input_tokens"], 18)

    def test_a_streamed_summary_is_read_too(self) -> None:
        h = gateway()
        client = h.connect()
        client.post(COMPACT, {"model": "claude-sonnet-4-5", "input": CONVERSATION})
        h.sent[0].respond(200, anthropic.SSE, anthropic.stream(anthropic.textEvents([SUMMARY])))
        status, _, raw = client.response()
        self.assertEqual(status, 200, raw)
        item = orjson.loads(raw)["output"][-1]
        self.assertEqual(unseal_compaction(item["encrypted_content"], KEY.encode()), SUMMARY)

    def test_an_upstream_error_keeps_its_status(self) -> None:
        h = gateway()
        client = h.connect()
        client.post(COMPACT, {"model": "claude-sonnet-4-5", "input": CONVERSATION})
        h.sent[0].respond(529, anthropic.JSON, anthropic.error("overloaded_error", "Overloaded"))
        self.assertEqual(client.response()[0], 529)

    def test_codexs_trigger_gets_one_compaction_item(self) -> None:
        h = gateway()
        client = h.connect()
        client.post(
            RESPONSES,
            {
                "model": "claude-sonnet-4-5",
                "stream": True,
                "store": False,
                "input": [*CONVERSATION, {"type": "compaction_trigger"}],
            },
        )
        h.sent[0].respond(200, anthropic.JSON, anthropic.wholeText(SUMMARY))
        status, _, raw = client.response()
        self.assertEqual(status, 200, raw)
        decoder = SSEDecoder()
        events = [orjson.loads(e.data) for e in decoder.feed(raw) + decoder.close()]
        self.assertEqual(events[-1]["type"], "response.completed")
        final = events[-1]["response"]
        ResponseResource.model_validate(final)
        [item] = final["output"]
        self.assertEqual(unseal_compaction(item["encrypted_content"], KEY.encode()), SUMMARY)
