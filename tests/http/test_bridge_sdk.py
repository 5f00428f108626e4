"""
The Responses → Chat bridge as the official openai SDK sees it: a real
gateway and a scripted Chat upstream on loopback, the SDK in a thread.
Every event the gateway emits is also checked against the Open Responses
and openai models (tests/dialects/oracle.py).
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.stream.sse import SSEDecoder
from tests.dialects.oracle import check_response, check_stream
from tests.integration.test_integration import LiveGateway
from tests.paths import FIXTURES

STREAMS = os.path.join(FIXTURES, "chat_streams")


def fixture(name: str) -> bytes:
    with open(os.path.join(STREAMS, name + ".sse"), "rb") as f:
        return f.read()


def serveBytes(data: bytes, breakAfter: bool = False) -> Any:
    """A script step answering with raw SSE bytes (optionally then a dropped connection)."""

    def step(request: Request, body: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(data)
        if breakAfter:
            # Let those bytes reach the gateway first, then drop the connection.
            from twisted.internet import reactor

            transport = request.channel.transport  # type: ignore[union-attr]
            reactor.callLater(0.1, transport.abortConnection)
        else:
            request.finish()
        return NOT_DONE_YET

    return step


class BridgeSDKTests(TestCase):
    def setUp(self) -> None:
        self.live = LiveGateway(self)
        from openai import OpenAI

        self.client = OpenAI(base_url=self.live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(self.client.close)

    def script(self, data: bytes, breakAfter: bool = False) -> None:
        self.live.upstream.script.append(serveBytes(data, breakAfter))

    async def rawEvents(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The gateway's SSE answer, decoded, for the oracles."""
        response = await self.live.http.post(self.live.base + "/responses", json=payload)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        decoder = SSEDecoder()
        events = decoder.feed(await response.content()) + decoder.close()
        for event in events:
            # Codex needs the event: line to match the JSON type.
            self.assertEqual(event.event, orjson.loads(event.data)["type"])
        return [orjson.loads(e.data) for e in events]

    async def test_text_stream_through_create_stream_true(self) -> None:
        self.script(fixture("openai_text"))
        self.script(fixture("openai_text"))

        def consume() -> tuple[list[str], Any]:
            types, final = [], None
            for event in self.client.responses.create(model="m1", input="hi", stream=True):
                types.append(event.type)
                if event.type == "response.completed":
                    final = event.response
            return types, final

        types, final = await deferToThread(consume)
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertEqual(types[-1], "response.completed")
        self.assertEqual(final.status, "completed")
        self.assertTrue(final.output_text)
        self.assertIsInstance(final.usage.input_tokens, int)
        final_raw = check_stream(
            await self.rawEvents({"model": "m1", "input": "hi", "stream": True})
        )
        self.assertEqual(final_raw["output"][0]["content"][0]["text"], final.output_text)

    async def test_stream_helper_rebuilds_the_same_response(self) -> None:
        self.script(fixture("openai_parallel_tools"))

        def consume() -> tuple[Any, list[Any]]:
            done = []
            with self.client.responses.stream(model="m1", input="list files") as stream:
                for event in stream:
                    if event.type == "response.output_item.done":
                        done.append(event.item)
                return stream.get_final_response(), done

        final, done = await deferToThread(consume)
        calls = [item for item in final.output if item.type == "function_call"]
        self.assertEqual([c.name for c in calls], ["exec_command", "view_image"])
        self.assertEqual([c.call_id for c in calls], ["call_A", "call_B"])
        self.assertEqual(orjson.loads(calls[1].arguments), {"path": "/tmp/ä.png"})
        self.assertEqual(
            [i.model_dump() for i in done],
            [i.model_dump(exclude={"parsed_arguments"}) for i in final.output],
        )

    async def test_non_streamed_create_returns_the_final_object(self) -> None:
        self.script(fixture("openai_parallel_tools"))
        response = await deferToThread(self.client.responses.create, model="m1", input="list files")
        self.assertEqual(response.status, "completed")
        self.assertEqual([o.type for o in response.output], ["function_call", "function_call"])
        self.assertEqual(response.usage.input_tokens_details.cached_tokens, 64)
        self.assertTrue(
            self.live.upstream.received[0].body["stream"], "upstream is always streamed"
        )
        check_response(response.model_dump(mode="json"))

    async def test_reasoning_stream(self) -> None:
        self.script(fixture("deepseek_reasoning"))
        final = check_stream(
            await self.rawEvents({"model": "m1", "input": "think", "stream": True})
        )
        kinds = [item["type"] for item in final["output"]]
        self.assertEqual(kinds[0], "reasoning")
        self.assertIn("message", kinds)
        self.script(fixture("deepseek_reasoning"))
        response = await deferToThread(self.client.responses.create, model="m1", input="think")
        self.assertEqual(response.output[0].type, "reasoning")

    async def test_length_truncated_stream_is_incomplete(self) -> None:
        self.script(fixture("length_truncated"))
        events = await self.rawEvents({"model": "m1", "input": "long", "stream": True})
        final = check_stream(events)
        self.assertEqual(events[-1]["type"], "response.incomplete")
        self.assertEqual(final["incomplete_details"], {"reason": "max_output_tokens"})
        self.script(fixture("length_truncated"))
        response = await deferToThread(self.client.responses.create, model="m1", input="long")
        self.assertEqual(response.status, "incomplete")

    async def test_broken_upstream_stream_fails_with_a_code(self) -> None:
        partial = fixture("openai_text").split(b"\n\n")
        self.script(b"\n\n".join(partial[:3]) + b"\n\n", breakAfter=True)
        events = await self.rawEvents({"model": "m1", "input": "hi", "stream": True})
        final = check_stream(events)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(final["error"]["code"], "upstream_stream_broken")

        self.script(b"\n\n".join(partial[:3]) + b"\n\n", breakAfter=True)
        from openai import APIStatusError

        call = deferToThread(self.client.responses.create, model="m1", input="hi")
        error = await self.assertFailure(call, APIStatusError)
        self.assertEqual(error.status_code, 502)

    async def test_upstream_context_overflow_keeps_status_with_the_codex_code(self) -> None:
        def overflow(request: Request, body: Any) -> bytes:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": None,
                    }
                }
            )

        self.live.upstream.script.append(overflow)
        from openai import BadRequestError

        call = deferToThread(self.client.responses.create, model="m1", input="x", stream=True)
        error = await self.assertFailure(call, BadRequestError)
        self.assertEqual(error.status_code, 400)
        self.assertEqual(error.body["code"], "context_length_exceeded")


class ReasoningRoundTripTests(TestCase):
    """
    DeepSeek/Kimi thinking need their reasoning back on tool-call turns. The
    gateway keeps no state: the reasoning rides in the reasoning item's
    encrypted_content, and the client (store: false) hands it back.
    """

    async def test_reasoning_returns_to_the_upstream_on_the_next_turn(self) -> None:
        from tests.fakes.chat_upstream import chatChunk

        live = LiveGateway(self, upstream={"provider": "deepseek"})
        first = b"".join(
            [
                chatChunk({"role": "assistant", "content": None, "reasoning_content": "I should "}),
                chatChunk({"reasoning_content": "list the files."}),
                chatChunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                            }
                        ]
                    }
                ),
                chatChunk({}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        )
        live.upstream.script.append(serveBytes(first))
        live.upstream.script.append(serveBytes(fixture("openai_text")))
        from openai import OpenAI

        client = OpenAI(base_url=live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(client.close)
        tools = [
            {
                "type": "function",
                "name": "exec_command",
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
            }
        ]
        user = {"role": "user", "content": "what is here?"}
        turn1 = await deferToThread(
            client.responses.create,
            model="m1",
            input=[user],
            tools=tools,
            store=False,
            include=["reasoning.encrypted_content"],
        )
        reasoning, call = turn1.output[0], turn1.output[1]
        self.assertEqual(reasoning.type, "reasoning")
        self.assertTrue(reasoning.encrypted_content)
        self.assertNotIn("list the files", reasoning.encrypted_content or "", "sealed, not plain")
        replay = [
            user,
            reasoning.model_dump(exclude_none=True),
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt"},
        ]
        await deferToThread(
            client.responses.create,
            model="m1",
            input=replay,
            tools=tools,
            store=False,
            include=["reasoning.encrypted_content"],
        )
        messages = live.upstream.received[1].body["messages"]
        assistant = [m for m in messages if m["role"] == "assistant"][0]
        self.assertEqual(assistant["reasoning_content"], "I should list the files.")
        self.assertEqual(assistant["tool_calls"][0]["id"], "call_1")
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "tool"])
