"""
Chat clients on a Responses-only upstream, through a real gateway: the
openai SDK's chat.completions.create, streamed and not, with tools. The fake
upstream answers with Responses streams made by our own forward translator
from recorded Chat streams, so a full Chat → Responses → Chat round trip is
what the SDK sees.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.stream.adapters import encodeEvents as encode
from tests.dialects.helpers import run_fixture
from tests.integration.test_integration import LiveGateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "exec_command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
    }
]


def responsesStream(fixture: str) -> Any:
    def step(request: Request, body: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(encode(run_fixture(fixture)))
        request.finish()
        return NOT_DONE_YET

    return step


class ChatOnResponsesTests(TestCase):
    def setUp(self) -> None:
        self.live = LiveGateway(self, upstream={"wire_api": "responses"})
        from openai import OpenAI

        self.client = OpenAI(base_url=self.live.base, api_key="k", max_retries=0, timeout=20)
        self.addCleanup(self.client.close)

    async def test_streamed_text_with_usage(self) -> None:
        self.live.upstream.script.append(responsesStream("openai_text"))

        def consume() -> tuple[str, Any]:
            text, usage = "", None
            for chunk in self.client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                if chunk.usage:
                    usage = chunk.usage
            return text, usage

        text, usage = await deferToThread(consume)
        self.assertTrue(text)
        self.assertGreater(usage.total_tokens, 0)
        sent = self.live.upstream.received[0]
        self.assertEqual(sent.path, b"/v1/responses")
        self.assertEqual(sent.body["input"][0]["role"], "user")
        self.assertIs(sent.body["stream"], True)

    async def test_streamed_tool_calls(self) -> None:
        self.live.upstream.script.append(responsesStream("openai_parallel_tools"))

        def consume() -> dict[int, dict[str, str]]:
            calls: dict[int, dict[str, str]] = {}
            for chunk in self.client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "ls"}], tools=TOOLS, stream=True
            ):
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] = call.id or entry["id"]
                    if call.function:
                        entry["name"] = call.function.name or entry["name"]
                        entry["arguments"] += call.function.arguments or ""
            return calls

        calls = await deferToThread(consume)
        self.assertEqual([calls[i]["id"] for i in sorted(calls)], ["call_A", "call_B"])
        self.assertEqual(orjson.loads(calls[0]["arguments"]), {"cmd": "ls -la"})
        self.assertEqual(self.live.upstream.received[0].body["tools"][0]["name"], "exec_command")

    async def test_non_streamed_completion_with_tool_calls_and_usage(self) -> None:
        self.live.upstream.script.append(responsesStream("openai_parallel_tools"))
        completion = await deferToThread(
            self.client.chat.completions.create,
            model="m",
            messages=[{"role": "user", "content": "ls"}],
            tools=TOOLS,
        )
        message = completion.choices[0].message
        self.assertEqual(
            [c.function.name for c in message.tool_calls], ["exec_command", "view_image"]
        )
        self.assertEqual(completion.choices[0].finish_reason, "tool_calls")
        self.assertEqual(completion.usage.prompt_tokens, 120)
        self.assertEqual(completion.usage.prompt_tokens_details.cached_tokens, 64)
