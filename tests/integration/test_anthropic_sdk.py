"""
The official anthropic Python SDK is the client of the gateway's
POST /v1/messages (and /v1/messages/count_tokens), unchanged but for
base_url, onto a scripted Chat Completions upstream: C{messages.create},
the C{messages.stream()} helper with a tool and C{get_final_message()},
and its error classes for what the upstream refuses. Its typed models are
the oracle of the Messages shapes the gateway emits.

The SDK is blocking; it runs in a thread. It sends its key as
C{Authorization: Bearer} and C{anthropic-version: 2026-10-21}.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET

from tests.fakes import faults
from tests.fakes.anthropic_upstream import API_KEY, Fail, say
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.integration.test_codex_cli import sse, toolCallStream
from tests.integration.test_integration import LiveGateway
from tests.integration.test_messages_upstream import MessagesGateway, rejections

MODEL = "claude-sonnet-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def chatError(code: int, message: str, type: str, **headers: str) -> Any:
    def step(request: Any, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        for k, v in headers.items():
            request.setHeader(k.replace("_", "-").encode(), v.encode())
        return orjson.dumps(
            {"error": {"message": message, "type": type, "param": None, "code": None}}
        )

    return step


class AnthropicSDKTests(TestCase):
    timeout = 60

    def client(self, root: str, **kw: Any) -> Any:
        from anthropic import Anthropic

        kw.setdefault("api_key", "client-key")
        client = Anthropic(base_url=root, max_retries=0, timeout=15, **kw)
        self.addCleanup(client.close)
        return client

    def root(self, live: LiveGateway) -> str:
        return live.base.removesuffix("/v1")

    def chats(self, live: LiveGateway) -> list[Any]:
        return [r for r in live.upstream.received if r.path == b"/v1/chat/completions"]

    async def test_messages_create(self) -> None:
        live = LiveGateway(self)  # the Chat fake's default answer, streamed or not
        client = self.client(self.root(live))
        message = await deferToThread(
            client.messages.create,
            model=MODEL,
            max_tokens=256,
            system="You are terse.",
            messages=[{"role": "user", "content": "hi"}],
        )
        self.assertEqual(message.type, "message")
        self.assertEqual(message.role, "assistant")
        self.assertEqual([b.type for b in message.content], ["text"])
        self.assertEqual(message.content[0].text, "Hello from the fake upstream")
        self.assertEqual(message.stop_reason, "end_turn")
        self.assertEqual(message.usage.input_tokens, 5)
        self.assertEqual(message.usage.output_tokens, 5)
        self.assertTrue(message.id.startswith("msg_"), message.id)
        [sent] = self.chats(live)
        self.assertEqual(sent.headers[b"authorization"], b"Bearer sk-upstream-secret")
        self.assertEqual(sent.body["model"], MODEL)
        system, user = sent.body["messages"]
        self.assertEqual(system["role"], "system")
        self.assertIn("You are terse.", orjson.dumps(system["content"]).decode())
        self.assertEqual(user["role"], "user")
        self.assertIn("hi", orjson.dumps(user["content"]).decode())
        self.assertEqual(sent.body.get("max_tokens", sent.body.get("max_completion_tokens")), 256)

    async def test_system_messages_among_the_turns(self) -> None:
        # The 2026 API (and this SDK's MessageParam) takes role "system"
        # messages in `messages`; Claude Code sends one for models it does
        # not know.
        live = LiveGateway(self)
        client = self.client(self.root(live))
        message = await deferToThread(
            client.messages.create,
            model=MODEL,
            max_tokens=64,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "Answer in French."},
            ],
        )
        self.assertEqual(message.content[0].text, "Hello from the fake upstream")
        messages = self.chats(live)[0].body["messages"]
        self.assertEqual(messages[-1]["role"], "system")
        self.assertIn("Answer in French.", orjson.dumps(messages[-1]).decode())

    async def test_stream_helper_with_a_tool_and_the_final_message(self) -> None:
        live = LiveGateway(self)
        arguments = orjson.dumps({"city": "Paris"}).decode()
        live.upstream.script += [
            sse(
                [
                    chatChunk({"role": "assistant", "content": "Let me check."}),
                    *toolCallStream("call_w1", "get_weather", arguments),
                ]
            ),
            sse(textStream(["Sunny", " in Paris."])),
        ]
        client = self.client(self.root(live))

        def turn(messages: list[Any]) -> tuple[list[str], str, Any]:
            with client.messages.stream(
                model=MODEL, max_tokens=512, tools=[WEATHER], messages=messages
            ) as stream:
                types = [event.type for event in stream]
                return types, stream.get_final_text(), stream.get_final_message()

        question = {"role": "user", "content": "Weather in Paris?"}
        types, text, final = await deferToThread(turn, [question])
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[-1], "message_stop")
        self.assertIn("input_json", types)  # the helper's event for input_json_delta
        self.assertEqual(text, "Let me check.")
        self.assertEqual(final.stop_reason, "tool_use")
        self.assertEqual([b.type for b in final.content], ["text", "tool_use"])
        use = final.content[1]
        self.assertEqual((use.name, use.input), ("get_weather", {"city": "Paris"}))
        self.assertTrue(use.id)
        tool = self.chats(live)[0].body["tools"][0]
        self.assertEqual(tool["function"]["name"], "get_weather")
        self.assertEqual(tool["function"]["parameters"], WEATHER["input_schema"])

        followUp = [
            question,
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in final.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22C, sun"}],
            },
        ]
        _, text, final = await deferToThread(turn, followUp)
        self.assertEqual(text, "Sunny in Paris.")
        self.assertEqual(final.stop_reason, "end_turn")
        messages = self.chats(live)[1].body["messages"]
        assistant = next(m for m in messages if m.get("tool_calls"))
        self.assertEqual(assistant["tool_calls"][0]["function"]["name"], "get_weather")
        [toolMessage] = [m for m in messages if m["role"] == "tool"]
        self.assertEqual(toolMessage["tool_call_id"], assistant["tool_calls"][0]["id"])
        self.assertIn("22C, sun", orjson.dumps(toolMessage["content"]).decode())

    async def test_tool_choice_reaches_the_chat_upstream(self) -> None:
        live = LiveGateway(self)
        client = self.client(self.root(live))
        for choice, expected, parallel in (
            (
                {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
                {"type": "function", "function": {"name": "get_weather"}},
                False,
            ),
            ({"type": "any"}, "required", None),
            ({"type": "none"}, "none", None),
        ):
            await deferToThread(
                client.messages.create,
                model=MODEL,
                max_tokens=16,
                tools=[WEATHER],
                tool_choice=choice,
                messages=[{"role": "user", "content": "hi"}],
            )
            sent = self.chats(live)[-1].body
            self.assertEqual(sent.get("tool_choice"), expected, choice)
            self.assertEqual(sent.get("parallel_tool_calls"), parallel, choice)

    async def test_reasoning_content_arrives_as_a_thinking_block(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(
            sse(
                [
                    chatChunk({"role": "assistant", "content": ""}),
                    chatChunk({"reasoning_content": "Two plus two "}),
                    chatChunk({"reasoning_content": "is four."}),
                    *textStream(["4"])[1:],
                ]
            )
        )
        client = self.client(self.root(live))

        def run() -> Any:
            with client.messages.stream(
                model=MODEL,
                max_tokens=4096,
                thinking={"type": "enabled", "budget_tokens": 2048},
                messages=[{"role": "user", "content": "2+2?"}],
            ) as stream:
                return stream.get_final_message()

        final = await deferToThread(run)
        self.assertEqual([b.type for b in final.content], ["thinking", "text"])
        self.assertEqual(final.content[0].thinking, "Two plus two is four.")
        self.assertIsInstance(final.content[0].signature, str)
        self.assertEqual(final.content[1].text, "4")

    async def test_rate_limited_upstream_is_a_rate_limit_error(self) -> None:
        import anthropic

        live = LiveGateway(self)
        live.upstream.script.append(
            chatError(429, "Rate limit reached", "requests", retry_after="3")
        )
        client = self.client(self.root(live))
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        error = await self.assertFailure(deferToThread(create), anthropic.RateLimitError)
        self.assertEqual(error.status_code, 429)
        self.assertTrue(error.response.headers.get("retry-after"))
        self.assertEqual(error.body["type"], "error")
        self.assertEqual(error.body["error"]["type"], "rate_limit_error")

    async def test_refused_request_is_a_bad_request_error(self) -> None:
        import anthropic

        live = LiveGateway(self)
        live.upstream.script.append(
            chatError(400, "Unrecognized request argument supplied: foo", "invalid_request_error")
        )
        client = self.client(self.root(live))
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        error = await self.assertFailure(deferToThread(create), anthropic.BadRequestError)
        self.assertEqual(error.status_code, 400)
        self.assertEqual(error.body["error"]["type"], "invalid_request_error")
        self.assertIn("foo", error.body["error"]["message"])

    async def test_upstream_outage_is_an_internal_server_error(self) -> None:
        import anthropic

        live = LiveGateway(self)
        live.upstream.script.append(faults.status(503))
        client = self.client(self.root(live))
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        error = await self.assertFailure(deferToThread(create), anthropic.InternalServerError)
        self.assertGreaterEqual(error.status_code, 500)
        self.assertEqual(error.body["type"], "error")

    async def test_cached_prompt_tokens_are_reported_as_cache_reads(self) -> None:
        live = LiveGateway(self)
        usage = {
            "prompt_tokens": 100,
            "completion_tokens": 2,
            "total_tokens": 102,
            "prompt_tokens_details": {"cached_tokens": 60},
        }
        live.upstream.script.append(
            sse(
                [
                    *textStream(["cached", " answer"], usage=False)[:-1],
                    chatChunk({}, None, choices=[], usage=usage),
                    b"data: [DONE]\n\n",
                ]
            )
        )
        client = self.client(self.root(live))

        def run() -> Any:
            with client.messages.stream(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                return stream.get_final_message()

        final = await deferToThread(run)
        self.assertEqual(final.content[0].text, "cached answer")
        # Anthropic's input_tokens leave the cache reads out.
        self.assertEqual(final.usage.cache_read_input_tokens, 60)
        self.assertEqual(final.usage.input_tokens, 40)
        self.assertEqual(final.usage.output_tokens, 2)

    async def test_images_and_error_tool_results_reach_the_chat_upstream(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(sse(textStream(["Seen."])))
        client = self.client(self.root(live))
        pixel = (
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
            "hKmMIQAAAABJRU5ErkJggg=="
        )
        await deferToThread(
            client.messages.create,
            model=MODEL,
            max_tokens=64,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_x1",
                            "name": "get_weather",
                            "input": {"city": "X"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_x1",
                            "is_error": True,
                            "content": [{"type": "text", "text": "no such city"}],
                        },
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": pixel},
                        },
                    ],
                },
            ],
        )
        messages = self.chats(live)[0].body["messages"]
        [tool] = [m for m in messages if m["role"] == "tool"]
        self.assertEqual(tool["tool_call_id"], "toolu_x1")
        self.assertIn("no such city", orjson.dumps(tool["content"]).decode())
        after = messages[messages.index(tool) + 1 :]
        self.assertEqual([m["role"] for m in after], ["user"])
        parts = after[0]["content"]
        self.assertIn(
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + pixel}},
            [
                {"type": p["type"], "image_url": {"url": p["image_url"]["url"]}}
                for p in parts
                if p.get("type") == "image_url"
            ],
        )

    async def test_a_silent_upstream_gets_pings(self) -> None:
        from twisted.internet import reactor

        live = LiveGateway(self, heartbeat_interval=0.3)
        pending: list[Any] = []
        self.addCleanup(lambda: [c.cancel() for c in pending if c.active()])

        def slow(request: Any, body: Any) -> Any:
            def answer() -> None:
                request.setHeader(b"content-type", b"text/event-stream")
                request.write(b"".join(textStream(["late"])))
                request.finish()

            pending.append(reactor.callLater(1.2, answer))
            return NOT_DONE_YET

        live.upstream.script.append(slow)
        response = await live.http.post(
            live.base + "/messages",
            data=orjson.dumps(
                {
                    "model": MODEL,
                    "max_tokens": 32,
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ),
            headers={"x-api-key": "client-key", "anthropic-version": "2023-06-01"},
        )
        self.assertEqual(response.code, 200)
        raw = (await response.content()).decode()
        events = [line[len("event: ") :] for line in raw.splitlines() if line.startswith("event: ")]
        self.assertEqual(events[0], "message_start")
        first = events.index("content_block_start")
        self.assertGreaterEqual(events[:first].count("ping"), 2, events)
        self.assertEqual(events[-1], "message_stop")

    async def test_upstream_failing_mid_stream_is_an_error_event(self) -> None:
        import anthropic

        live = LiveGateway(self)
        live.upstream.script.append(faults.sseThen(faults.FIRST, "reset"))
        client = self.client(self.root(live))

        def run() -> Any:
            with client.messages.stream(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                for _ in stream:
                    pass
                return stream.get_final_message()

        error = await self.assertFailure(deferToThread(run), anthropic.APIStatusError)
        self.assertIn(error.body["error"]["type"], ("api_error", "overloaded_error"), error.body)

    async def test_a_client_that_leaves_stops_the_upstream(self) -> None:
        from tests.integration.test_integration import until

        live = LiveGateway(self)
        live.upstream.script.append(live.upstream.endless)
        client = self.client(self.root(live))

        def readSome() -> int:
            seen = 0
            with client.messages.stream(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go on"}]
            ) as stream:
                for event in stream:
                    seen += event.type == "content_block_delta"
                    if seen >= 3:
                        break
            return seen

        self.assertEqual(await deferToThread(readSome), 3)
        self.assertTrue(await until(lambda: live.upstream.received[0].lost, timeout=5))
        self.assertTrue(await until(lambda: live.upstream.streams[0].stopped, timeout=5))

    async def test_model_names_are_routed(self) -> None:
        from tests.fakes.chat_upstream import FakeChatUpstream

        live = MessagesGateway(
            self,
            upstream=FakeChatUpstream(),
            wire_api="chat",
            provider=None,
            models=[{"match": "claude-*", "upstream": "claude", "model": "qwen3-coder"}],
        )
        client = self.client(live.root)
        message = await deferToThread(
            client.messages.create,
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
        self.assertEqual(message.content[0].text, "Hello from the fake upstream")
        self.assertEqual(message.model, "claude-haiku-4-5")
        self.assertEqual(live.fake.received[0].body["model"], "qwen3-coder")

    async def test_count_tokens(self) -> None:
        live = LiveGateway(self)
        client = self.client(self.root(live))
        counted = await deferToThread(
            client.messages.count_tokens,
            model=MODEL,
            system="You are terse.",
            tools=[WEATHER],
            messages=[{"role": "user", "content": "How is the weather in Paris today?"}],
        )
        self.assertIsInstance(counted.input_tokens, int)
        self.assertGreater(counted.input_tokens, 0)


class AnthropicSDKOntoMessagesTests(TestCase):
    """Onto a Messages upstream the SDK's requests are relayed, the key swapped."""

    timeout = 60

    def client(self, live: MessagesGateway, **kw: Any) -> Any:
        from anthropic import Anthropic

        kw.setdefault("api_key", "client-key")
        client = Anthropic(base_url=live.root, max_retries=0, timeout=15, **kw)
        self.addCleanup(client.close)
        return client

    async def test_create_and_count_tokens_are_relayed(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(say("Straight from Claude"))
        client = self.client(live)
        message = await deferToThread(
            client.messages.create,
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"anthropic-beta": "context-management-2025-06-27"},
        )
        self.assertEqual(message.content[0].text, "Straight from Claude", rejections(live.fake))
        [sent] = live.fake.messages
        self.assertEqual(sent.headers[b"x-api-key"], API_KEY.encode())
        self.assertNotIn(b"client-key", b"".join(sent.headers.values()))
        # The SDK's own version and betas, unchanged.
        self.assertEqual(sent.headers[b"anthropic-version"], b"2026-10-21")
        self.assertEqual(sent.headers[b"anthropic-beta"], b"context-management-2025-06-27")
        counted = await deferToThread(
            client.messages.count_tokens, model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        self.assertGreater(counted.input_tokens, 0)
        self.assertEqual(live.fake.rejected, [], rejections(live.fake))
        self.assertTrue(
            any(r.path.split(b"?")[0] == b"/v1/messages/count_tokens" for r in live.fake.received)
        )

    async def test_the_gateways_own_limits_answer_in_anthropics_shape(self) -> None:
        import anthropic

        live = MessagesGateway(
            self,
            auth={
                "keys": [
                    {"name": "cc", "key": "gw-key-1", "limits": {"requests_per_minute": 1}},
                    {"name": "narrow", "key": "gw-key-2", "models": ["qwen-*"]},
                ]
            },
        )
        live.fake.script.append(say("first"))
        client = self.client(live, api_key="gw-key-1")
        create = lambda c: c.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        first = await deferToThread(create, client)
        self.assertEqual(first.content[0].text, "first")
        limited = await self.assertFailure(deferToThread(create, client), anthropic.RateLimitError)
        self.assertEqual(limited.body["type"], "error")
        self.assertEqual(limited.body["error"]["type"], "rate_limit_error")
        self.assertGreaterEqual(int(limited.response.headers["retry-after"]), 1)
        denied = await self.assertFailure(
            deferToThread(create, self.client(live, api_key="gw-key-2")),
            anthropic.PermissionDeniedError,
        )
        self.assertEqual(denied.body["error"]["type"], "permission_error")
        unknown = await self.assertFailure(
            deferToThread(create, self.client(live, api_key="nope")), anthropic.AuthenticationError
        )
        self.assertEqual(unknown.body["error"]["type"], "authentication_error")
        self.assertEqual(len(live.fake.messages), 1)

    async def test_a_compatible_endpoint_gets_the_key_as_it_documents(self) -> None:
        # GLM's Anthropic endpoint takes the key as a bearer token; the
        # client's own bearer token (the gateway key) must not go along.
        live = MessagesGateway(self, provider="zhipu-anthropic")
        live.fake.script.append(say("from GLM"))
        client = self.client(live)
        message = await deferToThread(
            client.messages.create,
            model="glm-4.6",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
        self.assertEqual(message.content[0].text, "from GLM", rejections(live.fake))
        [sent] = live.fake.messages
        self.assertEqual(sent.headers[b"authorization"], b"Bearer " + API_KEY.encode())
        self.assertNotIn(b"x-api-key", sent.headers)
        self.assertNotIn(b"client-key", b"".join(sent.headers.values()))

    async def test_the_body_is_relayed_byte_for_byte(self) -> None:
        live = MessagesGateway(self)
        live.fake.script.append(say("untouched"))
        raw = (
            b'{"model":  "claude-sonnet-4-5", "max_tokens": 16,\n "messages": '
            b'[{"role": "user", "content": "h\\u00e9llo"}], "metadata": {"user_id": "u-1"}}'
        )
        response = await live.http.post(
            live.root + "/v1/messages?beta=true",
            data=raw,
            headers={
                "x-api-key": "client-key",
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
                "content-type": "application/json",
            },
        )
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.json())["content"][0]["text"], "untouched")
        self.assertEqual(live.fake.raw[-1], raw)
        [sent] = live.fake.messages
        self.assertEqual(
            sent.headers[b"anthropic-beta"], b"claude-code-20250219,interleaved-thinking-2025-05-14"
        )

    async def test_too_large_a_request_is_request_too_large(self) -> None:
        import anthropic

        live = MessagesGateway(self, server={"max_body_bytes": 4096})
        client = self.client(live)
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x" * 8000}]
        )
        error = await self.assertFailure(deferToThread(create), anthropic.APIStatusError)
        self.assertEqual(error.status_code, 413)
        self.assertEqual(error.body["error"]["type"], "request_too_large")
        self.assertEqual(live.fake.messages, [])

    async def test_an_overloaded_claude_fails_over_to_a_compatible_endpoint(self) -> None:
        # (A route's upstreams speak one wire_api: the config refuses a mix.)
        from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
        from tests.integration.test_integration import serve

        backup = FakeAnthropicUpstream(apiKey="sk-deepseek")
        backupPort = serve(self, backup).getHost().port
        live = MessagesGateway(
            self,
            extraUpstreams={
                "deepseek": {
                    "base_url": f"http://127.0.0.1:{backupPort}/v1",
                    "wire_api": "messages",
                    "provider": "deepseek-anthropic",
                    "api_key": "sk-deepseek",
                    "retries": {"max_attempts": 1},
                }
            },
            models=[
                {"match": "claude-*", "upstream": "claude", "fallbacks": ["deepseek"]},
            ],
        )
        live.fake.script.append(Fail("overloaded_error", "Overloaded"))
        backup.script.append(say("from the fallback"))
        client = self.client(live)

        def streamed() -> Any:
            with client.messages.stream(
                model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                return stream.get_final_message()

        final = await deferToThread(streamed)
        self.assertEqual(final.content[0].text, "from the fallback", rejections(backup))
        self.assertEqual(len(live.fake.messages), 1)
        [sent] = backup.messages
        self.assertEqual(sent.headers[b"x-api-key"], b"sk-deepseek")

    async def test_a_silent_upstream_times_out_in_anthropics_shape(self) -> None:
        import anthropic

        from tests.fakes import faults

        live = MessagesGateway(self, upstreamExtra={"timeouts": {"first_byte": 0.5}})
        live.fake.script.append(lambda request, body: faults.stall()(request, body))
        client = self.client(live)
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        error = await self.assertFailure(deferToThread(create), anthropic.APIStatusError)
        self.assertGreaterEqual(error.status_code, 500)
        self.assertEqual(error.body["type"], "error")
        self.assertIn(
            error.body["error"]["type"], ("api_error", "timeout_error", "overloaded_error")
        )

    async def test_the_relay_streams_as_the_upstream_does(self) -> None:
        # Each event reaches the client when the upstream sends it, not when
        # the stream ends: text shows as it is written.
        import time

        from twisted.internet import reactor

        from tests.fakes.anthropic_upstream import blockEvents, sseEvent

        live = MessagesGateway(self)
        pending: list[Any] = []
        self.addCleanup(lambda: [c.cancel() for c in pending if c.active()])

        def slow(request: Any, body: Any) -> Any:
            shell = {
                "id": "msg_slow",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            }
            events = [{"type": "message_start", "message": shell}]
            events += blockEvents(0, {"type": "text", "text": "early late"})
            request.setHeader(b"content-type", b"text/event-stream")
            for event in events[:3]:  # message_start, block start, "early"
                request.write(sseEvent(event))

            def rest() -> None:
                for event in events[3:]:
                    request.write(sseEvent(event))
                request.write(
                    sseEvent(
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": 2},
                        }
                    )
                )
                request.write(sseEvent({"type": "message_stop"}))
                request.finish()

            pending.append(reactor.callLater(1.0, rest))
            return NOT_DONE_YET

        live.fake.script.append(slow)
        client = self.client(live)

        def timed() -> list[tuple[float, str]]:
            seen = []
            with client.messages.stream(
                model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                for text in stream.text_stream:
                    seen.append((time.monotonic(), text))
            return seen

        seen = await deferToThread(timed)
        self.assertEqual("".join(t for _, t in seen), "early late")
        self.assertGreater(seen[-1][0] - seen[0][0], 0.7, seen)

    async def test_upstream_errors_keep_their_class(self) -> None:
        import anthropic

        live = MessagesGateway(self)
        live.fake.script += [
            Fail("rate_limit_error", "slow down", retry_after="2"),
            Fail("overloaded_error", "Overloaded"),
        ]
        client = self.client(live)
        create = lambda: client.messages.create(  # noqa: E731
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        limited = await self.assertFailure(deferToThread(create), anthropic.RateLimitError)
        self.assertEqual(limited.response.headers.get("retry-after"), "2")
        await self.assertFailure(deferToThread(create), anthropic.OverloadedError)
        # The SDK's own request, refused by the strict upstream, comes back a 400.
        refused = lambda: client.messages.create(  # noqa: E731
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        )
        error = await self.assertFailure(deferToThread(refused), anthropic.BadRequestError)
        self.assertIn("roles must alternate", error.body["error"]["message"])
