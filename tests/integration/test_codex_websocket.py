"""
The real Codex CLI over the Responses API's WebSocket mode: a provider with
C{supports_websockets = true}, the gateway serving C{GET /v1/responses} as a
socket, a scripted Chat upstream behind it.

With the mode on, a whole shell-tool round trip runs over one socket (the
warm-up, the turn that calls the tool, the turn that carries its output),
with no reconnect and no fallback to HTTP. With C{server.websocket: false}
the gateway answers the upgrade 426 and Codex falls back to HTTP at once,
with no reconnect loop.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from codexgw.http.websocket import ResponsesSocket, WebSocketEndpoint
from tests.fakes.chat_upstream import textStream
from tests.integration.test_codex_cli import runCodex, sse, toolCallStream
from tests.integration.test_integration import LiveGateway, until

WEBSOCKETS = "supports_websockets = true\n"
# Codex's own retry budget for a broken stream: a reconnect loop, if there
# were one, would show as "Reconnecting... n/5" lines.
RETRIES = (0, 5)


class Watch:
    """
    What the gateway saw: its access lines, each upgrade's headers, each
    frame a socket received (recorded on the way in, then served as ever),
    and the id of each response a socket completed.
    """

    def __init__(self, test: TestCase) -> None:
        self.access: list[str] = []
        self.upgrades: list[dict[bytes, bytes]] = []
        self.frames: list[dict[str, Any]] = []
        self.completed: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "codexgw.access":
                self.access.append(event["access_line"])

        globalLogPublisher.addObserver(observe)
        test.addCleanup(globalLogPublisher.removeObserver, observe)

        upgrade = WebSocketEndpoint.upgrade
        received = ResponsesSocket.textMessageReceived
        send = ResponsesSocket.sendFrame

        def recordUpgrade(endpoint: WebSocketEndpoint, request: Any) -> Any:
            self.upgrades.append(
                {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()}
            )
            return upgrade(endpoint, request)

        def recordFrame(socket: ResponsesSocket, message: str) -> None:
            self.frames.append(orjson.loads(message))
            received(socket, message)

        def recordSent(socket: ResponsesSocket, payload: bytes, kind: str) -> None:
            if kind == "response.completed":
                self.completed.append(orjson.loads(payload)["response"]["id"])
            send(socket, payload, kind)

        test.patch(WebSocketEndpoint, "upgrade", recordUpgrade)
        test.patch(ResponsesSocket, "sendFrame", recordSent)
        test.patch(ResponsesSocket, "textMessageReceived", recordFrame)

    def lines(self, start: str) -> list[str]:
        return [line for line in self.access if start in line]


def shellRoundTrip(live: LiveGateway, marker: str) -> None:
    """Script the upstream: a shell call echoing C{marker}, then the answer."""
    live.upstream.script += [
        sse(
            toolCallStream(
                "call_ws_shell", "exec_command", orjson.dumps({"cmd": f"echo {marker}"}).decode()
            )
        ),
        sse(textStream(["The command printed ", marker, "."])),
    ]


def chats(live: LiveGateway) -> list[Any]:
    return [r for r in live.upstream.received if r.path == b"/v1/chat/completions"]


class CodexWebSocketTests(TestCase):
    timeout = 240

    def assertToolResultReachedTheUpstream(self, live: LiveGateway, marker: str) -> None:
        calls = chats(live)
        self.assertEqual(len(calls), 2, "the warm-up must not reach the upstream")
        messages = calls[1].body["messages"]
        [tool] = [m for m in messages if m.get("role") == "tool"]
        self.assertEqual(tool["tool_call_id"], "call_ws_shell")
        self.assertIn(marker, str(tool["content"]))
        [assistant] = [m for m in messages if m.get("tool_calls")]
        self.assertEqual(assistant["tool_calls"][0]["function"]["name"], "exec_command")
        # The whole history went upstream: the system prompt and the user's
        # request came first, as on the first turn.
        self.assertEqual(messages[: len(calls[0].body["messages"])], calls[0].body["messages"])

    async def test_shell_tool_round_trip_over_the_socket(self) -> None:
        live = LiveGateway(self)
        watch = Watch(self)
        marker = "codexgw-ws-tool-ok-5151"
        shellRoundTrip(live, marker)
        code, message, out, err = await runCodex(
            self, live.base, "run echo for me", providerExtra=WEBSOCKETS, retries=RETRIES
        )
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn(f"The command printed {marker}.", message)
        self.assertNotIn("Reconnecting", out + err)
        self.assertNotIn("Falling back from WebSockets", out + err)
        self.assertToolResultReachedTheUpstream(live, marker)

        # One socket carried every turn; nothing was POSTed.
        [headers] = watch.upgrades
        self.assertEqual(headers[b"authorization"], b"Bearer client-key")
        self.assertIn(b"responses_websockets=", headers.get(b"openai-beta", b""))
        self.assertEqual(watch.lines("POST /v1/responses"), [])
        # The upgrade's line is written when the socket closes, which the
        # gateway may see a moment after Codex has exited.
        self.assertTrue(await until(lambda: watch.lines("GET /v1/responses 101")))
        [upgrade] = watch.lines("GET /v1/responses 101")
        self.assertIn("turns=3", upgrade)
        turns = watch.lines("WS /v1/responses")
        self.assertEqual(len(turns), 2, watch.access)  # the warm-up calls no model
        socketId = upgrade.split("socket=")[1].split()[0]
        for line in turns:
            self.assertIn(f"socket={socketId}", line)
        metric = live.gateway.metrics.registry.get_sample_value
        self.assertEqual(
            metric(
                "codexgw_websocket_frames_total", {"direction": "in", "type": "response.create"}
            ),
            3,
        )
        self.assertEqual(metric("codexgw_websocket_turns_sum"), 3)
        self.assertEqual(metric("codexgw_websockets_open"), 0)

        # What Codex sent: a warm-up (generate: false), then turns that each
        # continue the one before by id and carry only their new input.
        warmup, first, second = watch.frames
        self.assertEqual([f["type"] for f in watch.frames], ["response.create"] * 3)
        self.assertIs(warmup.get("generate"), False)
        self.assertIn(
            '"request_kind":"prewarm"', warmup["client_metadata"]["x-codex-turn-metadata"]
        )
        warmupId, firstId, _ = watch.completed
        self.assertEqual(first["previous_response_id"], warmupId)
        self.assertEqual(second["previous_response_id"], firstId)
        self.assertEqual([i["type"] for i in second["input"]], ["function_call_output"])
        # The warm-up's input (Codex's base instructions) reached the model
        # only through the turn that continued it.
        [base] = warmup["input"]
        self.assertNotIn(base, first["input"])
        self.assertEqual(
            chats(live)[0].body["messages"][0],
            {"role": "system", "content": base["content"][0]["text"]},
        )

    async def test_websocket_off_falls_back_to_http_without_a_reconnect_loop(self) -> None:
        live = LiveGateway(self, websocket=False)
        watch = Watch(self)
        marker = "codexgw-http-fallback-ok-6262"
        shellRoundTrip(live, marker)
        code, message, out, err = await runCodex(
            self, live.base, "run echo for me", providerExtra=WEBSOCKETS, retries=RETRIES
        )
        self.assertEqual(code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}")
        self.assertIn(f"The command printed {marker}.", message)
        self.assertNotIn("Reconnecting", out + err)
        self.assertToolResultReachedTheUpstream(live, marker)
        # Codex asked for the socket, was told 426 once, and went on over HTTP.
        refused = watch.lines("GET /v1/responses 426")
        self.assertEqual(len(refused), 1, watch.access)
        self.assertEqual(len(watch.lines("POST /v1/responses 200")), 2, watch.access)
        self.assertEqual(watch.lines("WS /v1/responses"), [])
        self.assertEqual(watch.frames, [])
