"""
Anthropic's Messages API as the upstream (C{wire_api: messages},
C{provider: anthropic}): the official openai SDK (Responses, streamed and
not, with a function tool round trip; Chat Completions) and the real Codex
CLI (a shell tool round trip) through the gateway onto
L{FakeAnthropicUpstream}, which refuses what Anthropic's API refuses. With
thinking on, the thinking block and its signature must come back on the
tool turn, carried by the client's reasoning item.

The fake itself is checked first, with the anthropic SDK as the oracle of
the wire shapes and the API's rules as the oracle of what it refuses.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from codexgw.config import parse
from codexgw.service import Gateway
from tests.fakes.anthropic_upstream import (
    API_KEY,
    Fail,
    FakeAnthropicUpstream,
    RedactedThinking,
    Text,
    Thinking,
    ToolUse,
    Turn,
    call,
    say,
)
from tests.integration.test_codex_cli import runCodex
from tests.integration.test_integration import httpClient, serve

MODEL = "claude-sonnet-4-5"


class MessagesGateway:
    """
    A gateway listening on loopback whose one upstream, C{claude}, is a
    strict fake Anthropic API (or C{upstream}, any resource) with
    C{wire_api: messages}; stopped by cleanup.

    @ivar fake: the upstream resource.
    @ivar base: the gateway's C{/v1} URL; C{root} the same without C{/v1}
        (Claude Code's and the anthropic SDK's base URL).
    """

    def __init__(
        self,
        test: TestCase,
        upstream: Any = None,
        wire_api: str = "messages",
        provider: str | None = "anthropic",
        upstreamExtra: dict[str, Any] | None = None,
        extraUpstreams: dict[str, Any] | None = None,
        **top: Any,
    ) -> None:
        self.fake = upstream if upstream is not None else FakeAnthropicUpstream()
        self.upstreamPort = serve(test, self.fake)
        settings: dict[str, Any] = {
            "base_url": f"http://127.0.0.1:{self.upstreamPort.getHost().port}/v1",
            "api_key": API_KEY,
            "wire_api": wire_api,
            "retries": {"max_attempts": 1},
            **(upstreamExtra or {}),
        }
        if provider is not None:
            settings["provider"] = provider
        config = parse(
            {
                "upstreams": {"claude": settings, **(extraUpstreams or {})},
                "default_upstream": "claude",
                "store": {"backend": "none"},
                **top,
            },
            "test.yaml",
            {},
        )
        self.gateway = Gateway(config)
        test.addCleanup(self.gateway.close)
        self.port = serve(test, self.gateway.resource)
        self.root = f"http://127.0.0.1:{self.port.getHost().port}"
        self.base = self.root + "/v1"
        self.http = httpClient(test)


def rejections(fake: FakeAnthropicUpstream) -> str:
    """What the fake refused, for assertion messages."""
    return "\n".join(f"request {i}: {status} {message}" for i, status, message in fake.rejected)


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


# -- the fake, checked against the SDK and the API's rules ----------------------


class FakeAnthropicTests(TestCase):
    """The fake speaks what the anthropic SDK parses and refuses what the API refuses."""

    timeout = 30

    def setUp(self) -> None:
        self.fake = FakeAnthropicUpstream()
        port = serve(self, self.fake)
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        self.http = httpClient(self)

    def sdk(self, apiKey: str = API_KEY) -> Any:
        from anthropic import Anthropic

        client = Anthropic(base_url=self.url, api_key=apiKey, max_retries=0, timeout=10)
        self.addCleanup(client.close)
        return client

    async def post(self, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        sent = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        response = await self.http.post(
            self.url + "/v1/messages", data=orjson.dumps(body), headers=sent
        )
        return response.code, orjson.loads(await response.content())

    async def test_sdk_reads_a_streamed_thinking_tool_turn(self) -> None:
        self.fake.script.append(
            Turn(
                (
                    Thinking("Let me look."),
                    Text("Looking."),
                    ToolUse("get_weather", {"city": "Paris"}),
                )
            )
        )
        client = self.sdk()

        def run() -> Any:
            with client.messages.stream(
                model=MODEL,
                max_tokens=4096,
                thinking={"type": "enabled", "budget_tokens": 2048},
                tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
                messages=[{"role": "user", "content": "weather?"}],
            ) as stream:
                return list(stream), stream.get_final_message()

        events, final = await deferToThread(run)
        types = [e.type for e in events]
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[-1], "message_stop")
        self.assertEqual([b.type for b in final.content], ["thinking", "text", "tool_use"])
        self.assertEqual(final.content[0].thinking, "Let me look.")
        self.assertIn(final.content[0].signature, self.fake.issued)
        self.assertEqual(final.content[2].input, {"city": "Paris"})
        self.assertEqual(final.stop_reason, "tool_use")

    async def test_sdk_error_classes(self) -> None:
        import anthropic

        self.fake.script += [
            Fail("rate_limit_error", "Number of request tokens has exceeded", retry_after="7"),
            Fail("overloaded_error", "Overloaded"),
        ]
        client = self.sdk()
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        limited = await self.assertFailure(deferToThread(create), anthropic.RateLimitError)
        self.assertEqual(limited.response.headers["retry-after"], "7")
        self.assertEqual(limited.body["error"]["type"], "rate_limit_error")
        await self.assertFailure(deferToThread(create), anthropic.OverloadedError)
        wrongKey = self.sdk("nope")
        call_ = lambda: wrongKey.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        await self.assertFailure(deferToThread(call_), anthropic.AuthenticationError)

    async def test_refuses_what_anthropic_refuses(self) -> None:
        user = {"role": "user", "content": "hi"}
        use = {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
        tools = [{"name": "t", "input_schema": {"type": "object"}}]
        thinking = {"type": "enabled", "budget_tokens": 2048}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"model": MODEL, "messages": [user]}, "max_tokens: Field required"),
            ({"model": MODEL, "max_tokens": 9, "messages": [user], "store": False}, "Extra inputs"),
            ({"model": MODEL, "max_tokens": 9, "messages": [user, user]}, "roles must alternate"),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [user, {"role": "tool", "content": "x"}],
                },
                "Input should be 'user', 'assistant' or 'system'",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
                },
                "text content blocks must be non-empty",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "tools": tools,
                    "messages": [
                        user,
                        {"role": "assistant", "content": [use]},
                        {"role": "user", "content": "go on"},
                    ],
                },
                "without `tool_result` blocks immediately after",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "tools": tools,
                    "messages": [
                        user,
                        {"role": "assistant", "content": [use]},
                        {"role": "user", "content": [dict(result, tool_use_id="toolu_2"), result]},
                    ],
                },
                "unexpected `tool_use_id`",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "tools": tools,
                    "messages": [
                        user,
                        {"role": "assistant", "content": [use]},
                        {"role": "user", "content": [{"type": "text", "text": "x"}, result]},
                    ],
                },
                "at the beginning of this message",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [user],
                    "tools": [{"type": "function", "function": {"name": "t", "parameters": {}}}],
                },
                "does not match any of the expected tags",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 4096,
                    "messages": [user],
                    "thinking": {"type": "enabled", "budget_tokens": 100},
                },
                "greater than or equal to 1024",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [
                        user,
                        {"role": "assistant", "content": [use]},
                        {"role": "user", "content": [result]},
                    ],
                },
                "must define tools",
            ),
            (
                {"model": MODEL, "max_tokens": 2048, "messages": [user], "thinking": thinking},
                "`max_tokens` must be greater than `thinking.budget_tokens`",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 4096,
                    "thinking": thinking,
                    "tools": tools,
                    "messages": [
                        user,
                        {"role": "assistant", "content": [use]},
                        {"role": "user", "content": [result]},
                    ],
                },
                "must start with a thinking block",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 4096,
                    "thinking": thinking,
                    "tools": tools,
                    "messages": [
                        user,
                        {
                            "role": "assistant",
                            "content": [
                                {"type": "thinking", "thinking": "hm", "signature": "forged"},
                                use,
                            ],
                        },
                        {"role": "user", "content": [result]},
                    ],
                },
                "Invalid `signature`",
            ),
            (
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [user],
                    "context_management": {"edits": []},
                },
                "context_management: Extra inputs are not permitted",
            ),
        ]
        for body, expected in cases:
            status, answer = await self.post(body)
            self.assertEqual(status, 400, (body, answer))
            self.assertEqual(answer["type"], "error")
            self.assertEqual(answer["error"]["type"], "invalid_request_error")
            self.assertIn(expected, answer["error"]["message"], body)
        # A beta field is taken when its beta is named.
        status, answer = await self.post(
            {
                "model": MODEL,
                "max_tokens": 9,
                "messages": [user],
                "context_management": {"edits": []},
            },
            anthropic_beta="context-management-2025-06-27",
        )
        self.assertEqual(status, 200, answer)
        # And a signed thinking block goes back fine.
        signed = {"type": "thinking", "thinking": "hm", "signature": self.fake.sign("hm")}
        status, answer = await self.post(
            {
                "model": MODEL,
                "max_tokens": 4096,
                "thinking": thinking,
                "tools": tools,
                "messages": [
                    user,
                    {"role": "assistant", "content": [signed, use]},
                    {"role": "user", "content": [result]},
                ],
            }
        )
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["type"], "message")

    async def test_missing_version_and_count_tokens(self) -> None:
        response = await self.http.post(
            self.url + "/v1/messages",
            data=orjson.dumps(
                {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            ),
            headers={"x-api-key": API_KEY},
        )
        self.assertEqual(response.code, 400)
        self.assertIn("anthropic-version", (await response.json())["error"]["message"])
        client = self.sdk()
        counted = await deferToThread(
            client.messages.count_tokens,
            model=MODEL,
            messages=[{"role": "user", "content": "hello there"}],
        )
        self.assertGreater(counted.input_tokens, 0)


# -- the openai SDK onto a Messages upstream ------------------------------------------


class OpenAISDKOntoMessagesTests(TestCase):
    timeout = 60

    def client(self, live: MessagesGateway) -> Any:
        from openai import OpenAI

        client = OpenAI(base_url=live.base, api_key="client-key", max_retries=0, timeout=15)
        self.addCleanup(client.close)
        return client

    async def test_responses_create_answers_text(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(
            Turn(
                (Text("Bonjour from Claude"),),
                input_tokens=20,
                output_tokens=4,
                cache_read_input_tokens=30,
                cache_creation_input_tokens=10,
            )
        )
        client = self.client(live)
        response = await deferToThread(
            client.responses.create,
            model=MODEL,
            instructions="Answer in French.",
            input="hello",
        )
        self.assertEqual(response.output_text, "Bonjour from Claude", rejections(live.fake))
        self.assertEqual(response.status, "completed")
        # Anthropic's input_tokens leave out cache reads and writes: the
        # Responses count has them all.
        self.assertEqual(response.usage.input_tokens, 60)
        self.assertEqual(response.usage.input_tokens_details.cached_tokens, 30)
        self.assertEqual(response.usage.output_tokens, 4)
        [sent] = live.fake.messages
        self.assertEqual(sent.headers[b"x-api-key"], API_KEY.encode())
        self.assertNotIn(b"authorization", sent.headers)
        self.assertEqual(sent.headers[b"anthropic-version"], b"2023-06-01")
        self.assertEqual(sent.path, b"/v1/messages")
        self.assertIsInstance(sent.body["max_tokens"], int)
        self.assertIn("Answer in French.", orjson.dumps(sent.body.get("system")).decode())
        self.assertEqual(sent.body["messages"][-1]["role"], "user")

    async def test_responses_stream_answers_text(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(say("Streamed ", "through ", "Messages"))
        client = self.client(live)

        def run() -> tuple[list[str], Any]:
            with client.responses.stream(model=MODEL, input="hello") as stream:
                types = [event.type for event in stream]
                return types, stream.get_final_response()

        types, final = await deferToThread(run)
        self.assertEqual(final.output_text, "Streamed through Messages", rejections(live.fake))
        self.assertEqual(types[0], "response.created")
        self.assertEqual(types[-1], "response.completed")
        self.assertIn("response.output_text.delta", types)

    async def test_function_tool_round_trip_not_streamed(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [
            call("get_weather", {"city": "Paris"}, id="toolu_weather1"),
            say("It is sunny in Paris."),
        ]
        client = self.client(live)
        first = await deferToThread(
            client.responses.create, model=MODEL, input="weather in Paris?", tools=[WEATHER]
        )
        calls = [item for item in first.output if item.type == "function_call"]
        self.assertEqual(len(calls), 1, (first.output, rejections(live.fake)))
        self.assertEqual(calls[0].name, "get_weather")
        self.assertEqual(orjson.loads(calls[0].arguments), {"city": "Paris"})
        tool = live.fake.messages[0].body["tools"][0]
        self.assertEqual(tool["name"], "get_weather")
        self.assertEqual(tool["input_schema"]["properties"], {"city": {"type": "string"}})
        second = await deferToThread(
            client.responses.create,
            model=MODEL,
            tools=[WEATHER],
            input=[
                {"role": "user", "content": "weather in Paris?"},
                *[item.model_dump(exclude_none=True) for item in first.output],
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C, sun"},
            ],
        )
        self.assertEqual(second.output_text, "It is sunny in Paris.", rejections(live.fake))
        sent = live.fake.messages[1].body["messages"]
        self.assertEqual([m["role"] for m in sent], ["user", "assistant", "user"])
        [use] = [b for b in sent[1]["content"] if b["type"] == "tool_use"]
        result = sent[2]["content"][0]
        self.assertEqual(result["type"], "tool_result")
        self.assertEqual(result["tool_use_id"], use["id"])
        self.assertIn("22C, sun", orjson.dumps(result).decode())

    async def test_streamed_tool_round_trip_with_thinking_sends_the_signature_back(self) -> None:
        live = MessagesGateway(self)
        thought = "The user wants the weather; I must call the tool."
        live.fake.script += [
            call("get_weather", {"city": "Oslo"}, thought=thought),
            Turn((Thinking("Now I can answer."), Text("Snow in Oslo."))),
        ]
        client = self.client(live)

        def turn(input: Any) -> Any:
            with client.responses.stream(
                model=MODEL,
                input=input,
                tools=[WEATHER],
                reasoning={"effort": "low", "summary": "auto"},
                include=["reasoning.encrypted_content"],
                store=False,
            ) as stream:
                for _ in stream:
                    pass
                return stream.get_final_response()

        first = await deferToThread(turn, "weather in Oslo?")
        sent = live.fake.messages[0].body
        self.assertEqual(sent.get("thinking", {}).get("type"), "enabled", sent.get("thinking"))
        self.assertLess(sent["thinking"]["budget_tokens"], sent["max_tokens"])
        kinds = [item.type for item in first.output]
        self.assertEqual(kinds, ["reasoning", "function_call"], rejections(live.fake))
        self.assertTrue(first.output[0].encrypted_content)
        callItem = first.output[1]
        second = await deferToThread(
            turn,
            [
                {"role": "user", "content": "weather in Oslo?"},
                *[item.model_dump(exclude_none=True) for item in first.output],
                {
                    "type": "function_call_output",
                    "call_id": callItem.call_id,
                    "output": "-5C, snow",
                },
            ],
        )
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        self.assertEqual(second.output_text, "Snow in Oslo.")
        assistant = live.fake.messages[1].body["messages"][1]
        self.assertEqual(assistant["content"][0]["type"], "thinking")
        self.assertEqual(assistant["content"][0]["thinking"], thought)
        self.assertEqual(live.fake.issued[assistant["content"][0]["signature"]], thought)

    async def test_previous_response_id_continues_a_thinking_tool_loop(self) -> None:
        # store: true (the openai SDK's default): the gateway keeps the turn
        # and rebuilds it for the next, thinking block and signature included.
        live = MessagesGateway(
            self, store={"backend": "sqlite", "path": os.path.abspath(self.mktemp())}
        )
        thought = "A tool call is needed."
        live.fake.script += [
            call("get_weather", {"city": "Rome"}, thought=thought),
            say("Hot in Rome."),
        ]
        client = self.client(live)
        reasoning = {"effort": "low"}
        first = await deferToThread(
            client.responses.create,
            model=MODEL,
            input="Rome?",
            tools=[WEATHER],
            reasoning=reasoning,
        )
        callItem = next(i for i in first.output if i.type == "function_call")
        second = await deferToThread(
            client.responses.create,
            model=MODEL,
            previous_response_id=first.id,
            tools=[WEATHER],
            reasoning=reasoning,
            input=[{"type": "function_call_output", "call_id": callItem.call_id, "output": "35C"}],
        )
        self.assertEqual(second.output_text, "Hot in Rome.", rejections(live.fake))
        sent = live.fake.messages[1].body["messages"]
        self.assertEqual([m["role"] for m in sent], ["user", "assistant", "user"])
        self.assertEqual(live.fake.issued.get(sent[1]["content"][0].get("signature")), thought)

    async def test_parallel_tool_calls_go_back_as_one_user_message(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [
            Turn(
                (
                    Text("Checking both."),
                    ToolUse("get_weather", {"city": "Paris"}),
                    ToolUse("get_weather", {"city": "Oslo"}),
                )
            ),
            say("Paris sunny, Oslo snowy."),
        ]
        client = self.client(live)
        first = await deferToThread(
            client.responses.create, model=MODEL, input="Paris and Oslo?", tools=[WEATHER]
        )
        calls = [item for item in first.output if item.type == "function_call"]
        self.assertEqual(
            [orjson.loads(c.arguments)["city"] for c in calls], ["Paris", "Oslo"], first.output
        )
        second = await deferToThread(
            client.responses.create,
            model=MODEL,
            tools=[WEATHER],
            input=[
                {"role": "user", "content": "Paris and Oslo?"},
                *[item.model_dump(exclude_none=True) for item in first.output],
                *[
                    {"type": "function_call_output", "call_id": c.call_id, "output": out}
                    for c, out in zip(calls, ["sun", "snow"], strict=True)
                ],
            ],
        )
        self.assertEqual(second.output_text, "Paris sunny, Oslo snowy.", rejections(live.fake))
        sent = live.fake.messages[1].body["messages"]
        self.assertEqual([m["role"] for m in sent], ["user", "assistant", "user"])
        self.assertEqual(
            [b["type"] for b in sent[2]["content"]][:2], ["tool_result", "tool_result"]
        )

    async def test_redacted_thinking_rides_back_opaque(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [
            Turn((RedactedThinking(), ToolUse("get_weather", {"city": "Lima"}))),
            say("Mild in Lima."),
        ]
        client = self.client(live)
        reasoning = {"effort": "low"}
        first = await deferToThread(
            client.responses.create,
            model=MODEL,
            input="Lima?",
            tools=[WEATHER],
            reasoning=reasoning,
            include=["reasoning.encrypted_content"],
            store=False,
        )
        self.assertEqual([i.type for i in first.output], ["reasoning", "function_call"])
        callItem = first.output[1]
        second = await deferToThread(
            client.responses.create,
            model=MODEL,
            tools=[WEATHER],
            reasoning=reasoning,
            include=["reasoning.encrypted_content"],
            store=False,
            input=[
                {"role": "user", "content": "Lima?"},
                *[item.model_dump(exclude_none=True) for item in first.output],
                {"type": "function_call_output", "call_id": callItem.call_id, "output": "18C"},
            ],
        )
        self.assertEqual(second.output_text, "Mild in Lima.", rejections(live.fake))
        block = live.fake.messages[1].body["messages"][1]["content"][0]
        self.assertEqual(block, {"type": "redacted_thinking", "data": RedactedThinking().data})

    async def test_max_tokens_stop_is_an_incomplete_response(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(Turn((Text("Cut sh"),), stop_reason="max_tokens"))
        client = self.client(live)
        response = await deferToThread(
            client.responses.create, model=MODEL, input="long story", max_output_tokens=16
        )
        self.assertEqual(response.status, "incomplete", rejections(live.fake))
        self.assertEqual(response.incomplete_details.reason, "max_output_tokens")
        self.assertEqual(live.fake.messages[0].body["max_tokens"], 16)

    async def test_overloaded_upstream_is_retried(self) -> None:
        live = MessagesGateway(
            self, upstreamExtra={"retries": {"max_attempts": 2, "backoff_base": 0.05}}
        )
        live.fake.script += [Fail("overloaded_error", "Overloaded"), say("Second time lucky")]
        client = self.client(live)
        response = await deferToThread(client.responses.create, model=MODEL, input="hi")
        self.assertEqual(response.output_text, "Second time lucky")
        self.assertEqual(len(live.fake.messages), 2)

    async def test_error_inside_the_stream_fails_the_response(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(Fail("overloaded_error", "Overloaded", in_stream=True))
        client = self.client(live)

        def run() -> list[Any]:
            events = []
            with client.responses.stream(model=MODEL, input="hi") as stream:
                for event in stream:
                    events.append(event)
            return events

        try:
            events = await deferToThread(run)
        except Exception as e:  # the helper may raise on response.failed
            self.fail(f"the stream helper raised {e!r}")
        types = [e.type for e in events]
        self.assertEqual(types[-1], "response.failed", types)
        self.assertTrue(events[-1].response.error.message)

    async def test_an_image_reaches_claude_as_a_base64_block(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(say("A single pixel."))
        client = self.client(live)
        pixel = (
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
            "hKmMIQAAAABJRU5ErkJggg=="
        )
        response = await deferToThread(
            client.responses.create,
            model=MODEL,
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64," + pixel},
                    ],
                }
            ],
        )
        self.assertEqual(response.output_text, "A single pixel.", rejections(live.fake))
        blocks = live.fake.messages[0].body["messages"][0]["content"]
        [image] = [b for b in blocks if b["type"] == "image"]
        self.assertEqual(
            image["source"], {"type": "base64", "media_type": "image/png", "data": pixel}
        )

    async def test_forced_tool_use_goes_without_thinking(self) -> None:
        # Anthropic refuses a forced tool choice with thinking on: the
        # forced choice wins.
        live = MessagesGateway(self)
        live.fake.script.append(call("get_weather", {"city": "Bern"}))
        client = self.client(live)
        response = await deferToThread(
            client.responses.create,
            model=MODEL,
            input="Bern?",
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
            reasoning={"effort": "low"},
        )
        self.assertEqual(
            [i.type for i in response.output], ["function_call"], rejections(live.fake)
        )
        sent = live.fake.messages[0].body
        self.assertEqual(sent["tool_choice"], {"type": "any", "disable_parallel_tool_use": True})
        self.assertNotEqual((sent.get("thinking") or {}).get("type"), "enabled")

    async def test_a_tool_loop_replayed_without_tools(self) -> None:
        # What a summary or compaction turn sends: the history of a tool
        # loop, and no tools this time. Anthropic refuses tool blocks
        # without tools declared.
        live = MessagesGateway(self)
        live.fake.script.append(say("Summary: it was sunny."))
        client = self.client(live)
        response = await deferToThread(
            client.responses.create,
            model=MODEL,
            input=[
                {"role": "user", "content": "weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": "call_p1",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                },
                {"type": "function_call_output", "call_id": "call_p1", "output": "sunny"},
                {"role": "user", "content": "Summarize the conversation."},
            ],
        )
        self.assertEqual(response.output_text, "Summary: it was sunny.", rejections(live.fake))
        self.assertIn("sunny", orjson.dumps(live.fake.messages[0].body["messages"]).decode())

    async def test_chat_client_with_reasoning_effort_in_a_tool_loop(self) -> None:
        # A Chat client (Cline, aider, LangChain) asks for reasoning and
        # sends back only what Chat has: content and tool_calls (and the
        # reasoning_content it was given, when its library keeps it). With
        # thinking on, Anthropic wants the signed thinking block back.
        live = MessagesGateway(self)
        live.fake.script += [
            call("get_weather", {"city": "Kyiv"}, id="toolu_kyiv", thought="Need the tool."),
            Turn((Thinking("Got it."), Text("Cold in Kyiv."))),
        ]
        client = self.client(live)
        tools = [
            {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
        ]
        question = {"role": "user", "content": "Kyiv?"}
        first = await deferToThread(
            client.chat.completions.create,
            model=MODEL,
            messages=[question],
            tools=tools,
            reasoning_effort="low",
        )
        self.assertEqual(live.fake.messages[0].body.get("thinking", {}).get("type"), "enabled")
        choice = first.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls", rejections(live.fake))
        [toolCall] = choice.message.tool_calls
        for assistant in (
            choice.message.model_dump(exclude_none=True),  # as the SDK gives it back
            {"role": "assistant", "tool_calls": [toolCall.model_dump()]},  # the bare minimum
        ):
            live.fake.script.append(say("Cold in Kyiv."))
            second = await deferToThread(
                client.chat.completions.create,
                model=MODEL,
                tools=tools,
                reasoning_effort="low",
                messages=[
                    question,
                    assistant,
                    {"role": "tool", "tool_call_id": toolCall.id, "content": "-10C"},
                ],
            )
            self.assertEqual(
                second.choices[0].message.content,
                "Cold in Kyiv.",
                (assistant, rejections(live.fake)),
            )

    async def test_upstream_errors_reach_the_sdk_as_its_exceptions(self) -> None:
        from openai import BadRequestError, RateLimitError

        live = MessagesGateway(self)
        live.fake.script += [
            Fail("rate_limit_error", "This request would exceed the rate limit", retry_after="4"),
            Fail("invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
        ]
        client = self.client(live)
        create = lambda: client.responses.create(model=MODEL, input="hi")  # noqa: E731
        limited = await self.assertFailure(deferToThread(create), RateLimitError)
        self.assertTrue(limited.response.headers.get("retry-after"))
        tooLong = await self.assertFailure(deferToThread(create), BadRequestError)
        self.assertEqual(tooLong.code, "context_length_exceeded", tooLong.body)

    async def test_chat_completions_client_onto_messages(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [
            call("get_weather", {"city": "Rome"}, id="toolu_rome"),
            say("Warm in Rome."),
        ]
        client = self.client(live)
        tools = [
            {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
        ]
        first = await deferToThread(
            client.chat.completions.create,
            model=MODEL,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Rome?"},
            ],
            tools=tools,
        )
        choice = first.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls", rejections(live.fake))
        [toolCall] = choice.message.tool_calls
        self.assertEqual(orjson.loads(toolCall.function.arguments), {"city": "Rome"})

        def streamed() -> str:
            text = ""
            for chunk in client.chat.completions.create(
                model=MODEL,
                stream=True,
                tools=tools,
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Rome?"},
                    choice.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": toolCall.id, "content": "30C"},
                ],
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
            return text

        self.assertEqual(await deferToThread(streamed), "Warm in Rome.", rejections(live.fake))
        sent = live.fake.messages[1].body
        self.assertEqual(sent["messages"][2]["content"][0]["tool_use_id"], toolCall.id)


# -- the real Codex CLI onto a Messages upstream ---------------------------------------


class CodexOntoMessagesTests(TestCase):
    timeout = 240

    async def test_shell_tool_round_trip(self) -> None:
        live = MessagesGateway(self)
        marker = "codexgw-messages-7781"
        live.fake.script += [
            call("exec_command", {"cmd": f"echo {marker}"}),
            say("The command printed ", marker, "."),
        ]
        code, message, out, err = await runCodex(self, live.base, "run echo for me")
        self.assertEqual(
            code,
            0,
            f"codex failed:\n{rejections(live.fake)}\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}",
        )
        self.assertIn(f"The command printed {marker}.", message)
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        first, second = live.fake.messages[:2]
        self.assertTrue(first.body["stream"])
        self.assertIn("exec_command", [t["name"] for t in first.body["tools"]])
        last = second.body["messages"][-1]
        self.assertEqual(last["content"][0]["type"], "tool_result")
        self.assertIn(marker, orjson.dumps(last["content"][0]).decode())

    async def test_parallel_shell_calls(self) -> None:
        # Two calls in one turn: however Codex orders calls and outputs in
        # its next input, Anthropic wants one assistant message with both
        # tool_use blocks and one user message opening with both results.
        live = MessagesGateway(self)
        a, b = "codexgw-par-1", "codexgw-par-2"
        live.fake.script += [
            Turn(
                (
                    ToolUse("exec_command", {"cmd": f"echo {a}"}),
                    ToolUse("exec_command", {"cmd": f"echo {b}"}),
                )
            ),
            say("Both ran."),
        ]
        code, message, out, err = await runCodex(self, live.base, "run both")
        self.assertEqual(
            code,
            0,
            f"codex failed:\n{rejections(live.fake)}\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}",
        )
        self.assertIn("Both ran.", message)
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        sent = live.fake.messages[1].body["messages"]
        uses = [b for b in sent[-2]["content"] if b["type"] == "tool_use"]
        results = [b for b in sent[-1]["content"] if b["type"] == "tool_result"]
        self.assertEqual(len(uses), 2)
        self.assertEqual([r["tool_use_id"] for r in results], [u["id"] for u in uses])
        self.assertIn(a, orjson.dumps(results[0]).decode())
        self.assertIn(b, orjson.dumps(results[1]).decode())

    async def test_a_rate_limit_is_waited_out(self) -> None:
        live = MessagesGateway(self)
        live.fake.script += [
            Fail(
                "rate_limit_error",
                "Number of requests has exceeded your rate limit",
                retry_after="1",
            ),
            say("after the limit"),
        ]
        # Codex counts a 429's retry against stream_max_retries.
        code, message, out, err = await runCodex(self, live.base, "hi", retries=(1, 1))
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn("after the limit", message)
        self.assertEqual(len(live.fake.messages), 2)

    async def test_compaction_in_the_middle_of_a_tool_loop(self) -> None:
        # Codex compacts (an ordinary streamed turn for a provider not named
        # OpenAI: the history, no tools, its checkpoint prompt last) when
        # the upstream reports more input than model_auto_compact_token_limit.
        live = MessagesGateway(self)
        summary = "codexgw-summary-4410: echoed the marker."
        answer = "codexgw-after-compaction-5521"
        seen: list[str] = []

        def choose(request: Any, body: Any) -> Turn:
            text = orjson.dumps(body["messages"][-1]).decode()
            if "CONTEXT CHECKPOINT COMPACTION" in text:
                seen.append("compaction")
                return say(summary)
            if "first" in seen:
                seen.append("after")
                return Turn((Text(answer),), input_tokens=200)
            seen.append("first")
            return Turn(
                (ToolUse("exec_command", {"cmd": "echo compact-me"}),), input_tokens=200_000
            )

        live.fake.script += [choose] * 8
        config = (
            'model = "m1"\nmodel_provider = "gw"\nmodel_auto_compact_token_limit = 2000\n\n'
            '[model_providers.gw]\nname = "codexgw"\n'
            f'base_url = "{live.base}"\nenv_key = "CODEXGW_KEY"\nwire_api = "responses"\n'
        )
        code, message, out, err = await runCodex(
            self, live.base, "run echo compact-me for me", configToml=config
        )
        self.assertEqual(
            code,
            0,
            f"codex failed:\n{rejections(live.fake)}\n{seen}\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}",
        )
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        self.assertEqual(seen[:2], ["first", "compaction"])
        # The turn went on from Codex's summary.
        after = live.fake.messages[seen.index("compaction") + 1].body
        self.assertIn(summary, orjson.dumps(after["messages"]).decode())
        trace = [orjson.dumps(r.body["messages"][-1]).decode()[:200] for r in live.fake.messages]
        self.assertIn(answer, message, f"{seen}\n" + "\n".join(trace))

    async def test_apply_patch_custom_tool_edits_a_file(self) -> None:
        # With a catalog entry Codex sends apply_patch as a custom
        # (freeform) tool: onto Messages it is a tool taking its text whole.
        live = MessagesGateway(
            self,
            models=[
                {
                    "match": "m1",
                    "upstream": "claude",
                    "model": MODEL,
                    "codex": {"context_window": 64000, "apply_patch": "freeform"},
                }
            ],
        )
        import json

        rendered = await (await live.http.get(live.base + "/models?format=codex")).json()
        catalog = os.path.abspath(self.mktemp())
        with open(catalog, "w") as f:
            json.dump(rendered, f)
        patch = "*** Begin Patch\n*** Add File: hello.txt\n+patched onto Claude\n*** End Patch\n"

        def patchCall(request: Any, body: Any) -> Turn:
            tool = next(t for t in body["tools"] if t["name"] == "apply_patch")
            [field] = list(tool["input_schema"]["properties"])
            return call("apply_patch", {field: patch})

        live.fake.script += [patchCall, say("Patched.")]
        work: list[str] = []
        code, message, out, err = await runCodex(
            self,
            live.base,
            "add hello.txt",
            extraArgs=["-c", f"model_catalog_json={catalog}"],
            keepWork=work,
        )
        self.assertEqual(
            code,
            0,
            f"codex failed:\n{rejections(live.fake)}\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}",
        )
        with open(os.path.join(work[0], "hello.txt")) as f:
            self.assertEqual(f.read(), "patched onto Claude\n")
        self.assertIn("Patched.", message)
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))

    async def test_shell_tool_round_trip_with_thinking(self) -> None:
        # A route with Codex metadata that reasons: Codex sends an effort,
        # the gateway turns thinking on, and the thinking block must ride
        # Codex's reasoning item back on the tool turn.
        live = MessagesGateway(
            self,
            models=[
                {
                    "match": "m1",
                    "upstream": "claude",
                    "model": MODEL,
                    "codex": {"context_window": 64000, "default_reasoning_level": "low"},
                }
            ],
        )
        import json

        rendered = await (await live.http.get(live.base + "/models?format=codex")).json()
        catalog = os.path.abspath(self.mktemp())
        with open(catalog, "w") as f:
            json.dump(rendered, f)
        marker = "codexgw-thinking-5150"
        thought = "I should run the command with the shell tool."
        live.fake.script += [
            call("exec_command", {"cmd": f"echo {marker}"}, thought=thought),
            Turn((Thinking("Done."), Text(f"It printed {marker}."))),
        ]
        code, message, out, err = await runCodex(
            self,
            live.base,
            "run echo for me",
            extraArgs=["-c", f"model_catalog_json={catalog}", "-c", "model_reasoning_effort=low"],
        )
        self.assertEqual(
            code,
            0,
            f"codex failed:\n{rejections(live.fake)}\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}",
        )
        self.assertIn(f"It printed {marker}.", message)
        # Codex shows Claude's thinking as its reasoning summary.
        self.assertIn(thought, err)
        first, second = live.fake.messages[:2]
        self.assertEqual(
            first.body.get("thinking", {}).get("type"), "enabled", first.body.get("thinking")
        )
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        assistant = second.body["messages"][-2]
        self.assertEqual(assistant["content"][0]["type"], "thinking")
        self.assertEqual(live.fake.issued.get(assistant["content"][0]["signature"]), thought)
