"""
The Responses API's WebSocket mode as the official openai SDK drives it:
C{client.responses.connect()} through a real gateway onto a scripted Chat
upstream, both on loopback, the (blocking) SDK in a thread.

Each frame the gateway sends is read raw, parsed by the SDK as its typed
event, and each turn's events are checked whole by the oracles
(tests/dialects/oracle.py), as an SSE stream of the same turn would be.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.dialects.oracle import check_event, check_response, check_stream
from tests.fakes.chat_upstream import textStream
from tests.integration.test_codex_cli import sse, toolCallStream
from tests.integration.test_integration import LiveGateway

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def readTurn(conn: Any) -> list[dict[str, Any]]:
    """
    The frames of one turn, up to its terminal event (or an C{error}
    event): each one raw JSON, also parsed by the SDK as it would be.
    """
    events: list[dict[str, Any]] = []
    while True:
        raw = conn.recv_bytes()
        event = orjson.loads(raw)
        parsed = conn.parse_event(raw)
        assert parsed.type == event["type"], (parsed.type, event)
        events.append(event)
        if event["type"] in TERMINAL:
            return events


def chats(live: LiveGateway) -> list[Any]:
    return [r for r in live.upstream.received if r.path == b"/v1/chat/completions"]


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


class ResponsesConnectTests(TestCase):
    """C{client.responses.connect()}: every turn on one socket, as the SDK speaks it."""

    timeout = 60

    def setUp(self) -> None:
        from openai import OpenAI

        self.live = LiveGateway(self)
        self.client = OpenAI(base_url=self.live.base, api_key="client-key", max_retries=0)
        self.addCleanup(self.client.close)

    def socket(self, talk: Any) -> Any:
        """Run C{talk(conn)} in a thread on one connection; its result."""

        def run() -> Any:
            with self.client.responses.connect() as conn:
                return talk(conn)

        return deferToThread(run)

    async def test_text_turn(self) -> None:
        def talk(conn: Any) -> list[dict[str, Any]]:
            conn.response.create(model="m1", input="hi", store=False)
            return readTurn(conn)

        events = await self.socket(talk)
        final = check_stream(events)
        self.assertEqual(final["status"], "completed")
        self.assertEqual(final["output"][0]["content"][0]["text"], "Hello from the fake upstream")
        [chat] = chats(self.live)
        self.assertEqual(roles(chat.body["messages"]), ["user"])
        self.assertTrue(chat.body["stream"])

    async def test_continuation_sends_the_upstream_the_whole_history(self) -> None:
        self.live.upstream.script += [
            sse(textStream(["Paris", "."])),
            sse(textStream(["About ", "2.1 million", "."])),
        ]

        def talk(conn: Any) -> list[list[dict[str, Any]]]:
            conn.response.create(model="m1", input="capital of France?", store=False)
            first = readTurn(conn)
            rid = first[-1]["response"]["id"]
            conn.response.create(
                model="m1",
                input=[{"role": "user", "content": "and its population?"}],
                previous_response_id=rid,
                store=False,
            )
            return [first, readTurn(conn)]

        first, second = await self.socket(talk)
        self.assertEqual(check_stream(first)["output"][0]["content"][0]["text"], "Paris.")
        final = check_stream(second)
        self.assertEqual(final["output"][0]["content"][0]["text"], "About 2.1 million.")
        self.assertNotEqual(final["id"], first[-1]["response"]["id"])
        one, two = chats(self.live)
        self.assertEqual(roles(one.body["messages"]), ["user"])
        messages = two.body["messages"]
        self.assertEqual(roles(messages), ["user", "assistant", "user"])
        self.assertEqual(
            [text(m) for m in messages],
            ["capital of France?", "Paris.", "and its population?"],
        )
        self.assertNotIn("previous_response_id", two.body)

    async def test_function_tool_round_trip(self) -> None:
        arguments = orjson.dumps({"city": "Paris"}).decode()
        self.live.upstream.script += [
            sse(toolCallStream("call_weather_1", "get_weather", arguments)),
            sse(textStream(["It is ", "sunny in Paris."])),
        ]
        tools = [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": False,
            }
        ]

        def talk(conn: Any) -> list[list[dict[str, Any]]]:
            conn.response.create(model="m1", input="weather in Paris?", tools=tools, store=False)
            first = readTurn(conn)
            [call] = [i for i in first[-1]["response"]["output"] if i["type"] == "function_call"]
            conn.response.create(
                model="m1",
                input=[
                    {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": '{"sky": "sunny"}',
                    }
                ],
                previous_response_id=first[-1]["response"]["id"],
                tools=tools,
                store=False,
            )
            return [first, readTurn(conn)]

        first, second = await self.socket(talk)
        [call] = check_stream(first)["output"]
        self.assertEqual(
            (call["type"], call["call_id"], call["name"], orjson.loads(call["arguments"])),
            ("function_call", "call_weather_1", "get_weather", {"city": "Paris"}),
        )
        final = check_stream(second)
        self.assertEqual(final["output"][0]["content"][0]["text"], "It is sunny in Paris.")
        _, two = chats(self.live)
        messages = two.body["messages"]
        self.assertEqual(roles(messages), ["user", "assistant", "tool"])
        [toolCall] = messages[1]["tool_calls"]
        self.assertEqual(toolCall["id"], "call_weather_1")
        self.assertEqual(toolCall["function"]["name"], "get_weather")
        self.assertEqual(orjson.loads(toolCall["function"]["arguments"]), {"city": "Paris"})
        self.assertEqual(messages[2]["tool_call_id"], "call_weather_1")
        self.assertIn("sunny", text(messages[2]))
        self.assertEqual([t["function"]["name"] for t in two.body["tools"]], ["get_weather"])

    async def test_unknown_previous_id_is_an_error_event_and_the_socket_goes_on(self) -> None:
        def talk(conn: Any) -> list[list[dict[str, Any]]]:
            conn.response.create(
                model="m1", input="go on", previous_response_id="resp_nowhere", store=False
            )
            error = readTurn(conn)
            conn.response.create(model="m1", input="hi", store=False)
            return [error, readTurn(conn)]

        error, good = await self.socket(talk)
        [event] = error
        self.assertEqual(event["type"], "error")
        # The status the same failure has on POST /v1/responses (docs/api.md).
        self.assertEqual(event["status"], 404)
        self.assertEqual(event["error"]["param"], "previous_response_id")
        self.assertEqual(event["error"]["code"], "previous_response_not_found")
        self.assertIsInstance(event["error"]["message"], str)
        self.assertEqual(check_stream(good)["status"], "completed")
        # Only the good turn reached the upstream.
        [chat] = chats(self.live)
        self.assertEqual([text(m) for m in chat.body["messages"]], ["hi"])

    async def test_warmup_reaches_no_upstream_and_the_next_turn_carries_its_input(self) -> None:
        instructions = "You are terse."
        warm = [
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": "Remember the word: kumquat."},
        ]

        def talk(conn: Any) -> list[list[dict[str, Any]]]:
            conn.response.create(
                model="m1", input=warm, instructions=instructions, generate=False, store=False
            )
            warmup = readTurn(conn)
            sent = len(chats(self.live))
            conn.response.create(
                model="m1",
                input="What was the word?",
                instructions=instructions,
                previous_response_id=warmup[-1]["response"]["id"],
                store=False,
            )
            return [warmup, [{"upstream requests during warm-up": sent}], readTurn(conn)]

        warmup, [seen], turn = await self.socket(talk)
        self.assertEqual([e["type"] for e in warmup], ["response.created", "response.completed"])
        done = warmup[-1]["response"]
        self.assertEqual((done["status"], done["output"]), ("completed", []))
        self.assertEqual(seen, {"upstream requests during warm-up": 0})
        self.assertEqual(check_stream(turn)["status"], "completed")
        # Nothing of the warm-up went anywhere but into the next turn.
        [chat] = chats(self.live)
        self.assertEqual([r.path for r in self.live.upstream.received], [b"/v1/chat/completions"])
        messages = chat.body["messages"]
        self.assertEqual(
            [text(m) for m in messages][-3:],
            ["Answer in one word.", "Remember the word: kumquat.", "What was the word?"],
        )
        self.assertEqual(roles(messages)[-1], "user")
        self.assertIn(
            instructions, [text(m) for m in messages if m["role"] in ("system", "developer")]
        )


class WarmupObjectTests(TestCase):
    timeout = 60

    async def test_warmup_events_pass_the_oracles(self) -> None:
        from openai import OpenAI

        live = LiveGateway(self)
        client = OpenAI(base_url=live.base, api_key="client-key", max_retries=0)
        self.addCleanup(client.close)

        def talk() -> list[dict[str, Any]]:
            with client.responses.connect() as conn:
                conn.response.create(model="m1", input="warm", generate=False, store=False)
                return readTurn(conn)

        warmup = await deferToThread(talk)
        self.assertEqual([e["type"] for e in warmup], ["response.created", "response.completed"])
        # There is no response.in_progress, so check_stream's opening rule
        # does not apply; each event and the final object are checked.
        for event in warmup:
            check_event(event)
        check_response(warmup[-1]["response"])


class StoredContinuationTests(TestCase):
    """A socket continuing from a stored response, then from its own turn."""

    timeout = 60

    async def test_a_turn_continuing_a_stored_response_can_itself_be_continued(self) -> None:
        from openai import OpenAI

        from tests.fakes.store import MemoryStore

        live = LiveGateway(self, store=MemoryStore())
        client = OpenAI(base_url=live.base, api_key="client-key", max_retries=0)
        self.addCleanup(client.close)
        live.upstream.script += [
            sse(textStream(["one"])),
            sse(textStream(["two"])),
            sse(textStream(["three"])),
        ]
        # Turn 1 over HTTP, stored.
        stored = await deferToThread(client.responses.create, model="m1", input="first")
        self.assertEqual(stored.output_text, "one")

        def talk() -> list[list[dict[str, Any]]]:
            with client.responses.connect() as conn:
                # Turn 2 on the socket: continues the stored one, is not stored itself.
                conn.response.create(
                    model="m1", input="second", previous_response_id=stored.id, store=False
                )
                second = readTurn(conn)
                # Turn 3 continues turn 2, "a response of this connection (stored or not)".
                conn.response.create(
                    model="m1",
                    input="third",
                    previous_response_id=second[-1]["response"]["id"],
                    store=False,
                )
                return [second, readTurn(conn)]

        second, third = await deferToThread(talk)
        self.assertEqual(check_stream(second)["output"][0]["content"][0]["text"], "two")
        self.assertEqual(
            third[-1]["type"], "response.completed", f"turn 3 was refused: {third[-1]}"
        )
        check_stream(third)
        messages = chats(live)[-1].body["messages"]
        self.assertEqual([text(m) for m in messages], ["first", "one", "second", "two", "third"])


def keyedGateway(test: TestCase, live: LiveGateway) -> str:
    """A second gateway onto C{live}'s upstream, with a key: its base URL."""
    from codexgw.config import parse
    from codexgw.service import Gateway
    from tests.integration.test_integration import serve

    config = parse(
        {
            "upstreams": {
                "main": {
                    "base_url": live.gateway.config.upstreams["main"].base_url,
                    "retries": {"max_attempts": 1},
                }
            },
            "auth": {"keys": [{"name": "team", "key": "k-team"}]},
        },
        "keyed.yaml",
        {},
    )
    gateway = Gateway(config)
    test.addCleanup(gateway.close)
    return f"http://127.0.0.1:{serve(test, gateway.resource).getHost().port}/v1"


class KeyTests(TestCase):
    timeout = 60

    async def test_the_upgrade_needs_the_gateway_key(self) -> None:
        from openai import OpenAI

        live = LiveGateway(self)
        base = keyedGateway(self, live)

        def talk(key: str) -> Any:
            client = OpenAI(base_url=base, api_key=key, max_retries=0)
            try:
                with client.responses.connect() as conn:
                    conn.response.create(model="m1", input="hi", store=False)
                    return readTurn(conn)
            except Exception as e:
                return e
            finally:
                client.close()

        good = await deferToThread(talk, "k-team")
        self.assertEqual(check_stream(good)["status"], "completed")
        refused = await deferToThread(talk, "k-wrong")
        self.assertIsInstance(refused, Exception)
        self.assertIn("401", str(refused))
        self.assertEqual(len(chats(live)), 1, "a refused upgrade reaches no upstream")


class OrphanToolOutputTests(TestCase):
    timeout = 60

    async def test_an_output_for_no_call_is_a_400_and_forgets_what_it_continued(self) -> None:
        from openai import OpenAI

        live = LiveGateway(self)
        client = OpenAI(base_url=live.base, api_key="client-key", max_retries=0)
        self.addCleanup(client.close)

        def talk() -> list[list[dict[str, Any]]]:
            with client.responses.connect() as conn:
                conn.response.create(model="m1", input="hi", store=False)
                first = readTurn(conn)
                rid = first[-1]["response"]["id"]
                conn.response.create(
                    model="m1",
                    input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
                    previous_response_id=rid,
                    store=False,
                )
                orphan = readTurn(conn)
                # The failed continuation evicted rid: continuing from it again is unknown.
                conn.response.create(
                    model="m1", input="again", previous_response_id=rid, store=False
                )
                again = readTurn(conn)
                conn.response.create(model="m1", input="fresh", store=False)
                return [first, orphan, again, readTurn(conn)]

        first, orphan, again, fresh = await deferToThread(talk)
        check_stream(first)
        [error] = orphan
        self.assertEqual((error["type"], error["status"]), ("error", 400))
        self.assertIn("call_nope", error["error"]["message"])
        [error] = again
        self.assertEqual(error["error"]["code"], "previous_response_not_found")
        self.assertEqual(check_stream(fresh)["status"], "completed")
        # The orphan never went upstream.
        self.assertEqual(
            [[text(m) for m in c.body["messages"]] for c in chats(live)], [["hi"], ["fresh"]]
        )
