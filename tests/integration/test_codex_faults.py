"""
The real Codex CLI against upstream faults, through the gateway.

Two promises are checked end to end, with Codex's own retries switched on:

 - a stream that breaks mid-answer never hands the client half an item, so
   the turn Codex retries carries no half answer and no torn tool call;
 - every 429 the gateway sends carries C{Retry-After} in whole seconds,
   which is what makes Codex retry it at all (counted against its
   C{stream_max_retries}), and Codex waits exactly that long before it does.

A wire tap between Codex and the gateway records the bytes the gateway sent,
so a test can read the very status lines, headers and SSE events Codex got.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from twisted.internet import reactor
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.http.site import GatewaySite
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.integration.test_codex_cli import runCodex, sse, toolCallStream
from tests.integration.test_integration import LiveGateway, until

CHAT = b"/v1/chat/completions"
LIMITED = orjson.dumps(
    {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
)


# -- the wire tap ---------------------------------------------------------


class _Tap(ProtocolWrapper):
    """Records, with the time, every write the wrapped server makes."""

    def __init__(self, factory: Any, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.sent: list[tuple[float, bytes]] = []
        factory.connections.append(self.sent)

    def write(self, data: bytes) -> None:
        self.sent.append((reactor.seconds(), data))
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        data = list(data)
        self.sent.append((reactor.seconds(), b"".join(data)))
        super().writeSequence(data)


class _TapFactory(WrappingFactory):
    protocol = _Tap

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.connections: list[list[tuple[float, bytes]]] = []


@attrs.frozen
class Answer:
    """One HTTP response as the client received it."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes
    at: float  # when its status line was written

    def events(self) -> list[dict[str, Any]]:
        """The SSE C{data:} events of the body, parsed."""
        out = []
        for block in self.body.replace(b"\r\n", b"\n").split(b"\n\n"):
            for line in block.split(b"\n"):
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    out.append(orjson.loads(line[5:]))
        return out


def _answers(writes: list[tuple[float, bytes]]) -> list[Answer]:
    """
    Split one connection's writes into responses (keep-alive puts several on
    one connection); a body cut short is kept as far as it went.
    """
    data = b"".join(chunk for _, chunk in writes)
    out: list[Answer] = []
    pos = 0
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            break
        # The time of the write holding the status line.
        seen, at = 0, writes[0][0]
        for when, chunk in writes:
            if seen + len(chunk) > pos:
                at = when
                break
            seen += len(chunk)
        lines = data[pos:head_end].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        pos = head_end + 4
        body = b""
        if headers.get(b"transfer-encoding") == b"chunked":
            while pos < len(data):
                size_end = data.find(b"\r\n", pos)
                if size_end < 0:
                    pos = len(data)
                    break
                size = int(data[pos:size_end].split(b";")[0], 16)
                pos = size_end + 2
                body += data[pos : pos + size]
                pos += size + 2
                if size == 0:
                    break
        else:
            length = int(headers.get(b"content-length", b"0"))
            body = data[pos : pos + length]
            pos += length
        out.append(Answer(status, headers, body, at))
    return out


class WireTap:
    """
    The gateway's resource served on a second loopback port, recording what
    it sends to whoever connects (here: Codex).
    """

    def __init__(self, test: TestCase, resource: Any) -> None:
        self.factory = _TapFactory(GatewaySite(resource))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}/v1"
        test.addCleanup(self._stop)

    async def _stop(self) -> None:
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()
        await until(lambda: not self.factory.protocols, timeout=2)

    def answers(self) -> list[Answer]:
        """Every response sent, in the order they were started."""
        out = [a for writes in self.factory.connections for a in _answers(writes)]
        return sorted(out, key=lambda a: a.at)


# -- upstream script steps --------------------------------------------------


def cutAfter(chunks: list[bytes]) -> Any:
    """
    A script step: stream C{chunks}, then drop the connection without ending
    the chunked body, as a crashed model server or a proxy's reset does.
    loseConnection (not abort) so the chunks written are delivered first.
    """

    def step(request: Request, body: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"".join(chunks))
        request.transport.loseConnection()
        return NOT_DONE_YET

    return step


def limited(request: Request, body: Any) -> Any:
    """A script step: 429 with a JSON error and no Retry-After at all."""
    request.setResponseCode(429)
    request.setHeader(b"content-type", b"application/json")
    return LIMITED


def stamped(times: list[float], step: Any) -> Any:
    """C{step}, noting when its request arrived."""

    def wrapped(request: Request, body: Any) -> Any:
        times.append(reactor.seconds())
        return step(request, body)

    return wrapped


def failure(answer: Answer) -> dict[str, Any]:
    """The C{response.failed} event of a stream (the test fails if none)."""
    failed = [e for e in answer.events() if e.get("type") == "response.failed"]
    assert len(failed) == 1, [e.get("type") for e in answer.events()]
    return failed[0]


def chats(live: LiveGateway) -> list[Any]:
    return [r for r in live.upstream.received if r.path == CHAT]


def codexFailed(code: int, out: str, err: str) -> str:
    return f"codex exit {code}:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}"


class BrokenStreamTests(TestCase):
    """A stream cut mid-item: Codex retries the turn and replays nothing of it."""

    timeout = 60

    async def test_text_cut_mid_answer_is_not_replayed_on_codexs_retry(self) -> None:
        live = LiveGateway(self)
        tap = WireTap(self, live.gateway.resource)
        half = "The answer is hal"
        live.upstream.script += [
            cutAfter(
                [
                    chatChunk({"role": "assistant", "content": ""}),
                    chatChunk({"content": "The answer is "}),
                    chatChunk({"content": "hal"}),
                ]
            ),
            sse(textStream(["The answer is ", "forty-two", "."])),
        ]
        code, message, out, err = await runCodex(
            self, tap.base, "what is the answer?", retries=(0, 1), timeout=30
        )
        self.assertEqual(code, 0, codexFailed(code, out, err))
        self.assertEqual(message.strip(), "The answer is forty-two.")
        # stdout is the last message; stderr the transcript Codex shows: one
        # assistant message, the whole one, after a retry.
        self.assertNotIn(half, out)
        self.assertNotIn(half, err)
        self.assertIn("Reconnecting... 1/1", err)
        self.assertEqual(err.count("\ncodex\n"), 1, err)
        self.assertIn("\ncodex\nThe answer is forty-two.\n", err)

        # What the gateway told Codex about the first attempt: the deltas it
        # had, no finished message, and a failure Codex retries.
        first, second = [a for a in tap.answers() if a.status == 200][:2]
        events = first.events()
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        self.assertEqual(deltas, half)
        done = [e for e in events if e["type"] == "response.output_item.done"]
        self.assertEqual(done, [], "an unfinished message was closed")
        failed = failure(first)["response"]
        self.assertEqual(failed["error"]["code"], "upstream_stream_broken")
        self.assertEqual(failed["output"], [])
        self.assertIn("response.completed", [e["type"] for e in second.events()])

        # The retried turn is the first one again: no assistant half answer.
        sent = chats(live)
        self.assertEqual(len(sent), 2)
        retried = sent[1].body["messages"]
        self.assertEqual(
            [m for m in retried if m.get("role") == "assistant"],
            [],
            "the half answer was replayed upstream",
        )
        self.assertNotIn(half, orjson.dumps(retried).decode())
        self.assertEqual(retried, sent[0].body["messages"])

    async def test_tool_call_cut_mid_arguments_is_not_replayed_or_run(self) -> None:
        live = LiveGateway(self)
        tap = WireTap(self, live.gateway.resource)
        marker = "codexgw-retried-tool-7171"
        torn = {
            "index": 0,
            "id": "call_torn",
            "type": "function",
            "function": {"name": "exec_command", "arguments": ""},
        }
        live.upstream.script += [
            cutAfter(
                [
                    chatChunk({"role": "assistant", "content": None, "tool_calls": [torn]}),
                    chatChunk(
                        {"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd": "ec'}}]}
                    ),
                ]
            ),
            sse(
                toolCallStream(
                    "call_whole", "exec_command", orjson.dumps({"cmd": f"echo {marker}"}).decode()
                )
            ),
            sse(textStream(["Ran it: ", marker, "."])),
        ]
        code, message, out, err = await runCodex(
            self, tap.base, "run echo for me", retries=(0, 1), timeout=30
        )
        self.assertEqual(code, 0, codexFailed(code, out, err))
        self.assertEqual(message.strip(), f"Ran it: {marker}.")
        self.assertIn("Reconnecting... 1/1", err)
        self.assertNotIn('{"cmd": "ec', out + err)

        first = [a for a in tap.answers() if a.status == 200][0]
        types = [e["type"] for e in first.events()]
        self.assertIn("response.function_call_arguments.delta", types)
        self.assertNotIn("response.function_call_arguments.done", types)
        self.assertNotIn("response.output_item.done", types)
        failed = failure(first)["response"]
        self.assertEqual(failed["error"]["code"], "upstream_stream_broken")
        self.assertEqual(failed["output"], [])

        sent = chats(live)
        self.assertEqual(len(sent), 3)
        # The retry: the first request again, no tool call, no tool output.
        retried = sent[1].body["messages"]
        self.assertEqual([m for m in retried if m.get("tool_calls")], [])
        self.assertEqual([m for m in retried if m.get("role") == "tool"], [])
        self.assertEqual(retried, sent[0].body["messages"])
        # After the whole call ran: exactly that call, its JSON intact.
        after = sent[2].body["messages"]
        calls = [c for m in after for c in m.get("tool_calls") or []]
        self.assertEqual([c["id"] for c in calls], ["call_whole"])
        self.assertEqual(orjson.loads(calls[0]["function"]["arguments"]), {"cmd": f"echo {marker}"})
        outputs = [m for m in after if m.get("role") == "tool"]
        self.assertEqual([m["tool_call_id"] for m in outputs], ["call_whole"])
        self.assertIn(marker, str(outputs[0]["content"]))
        self.assertNotIn("call_torn", orjson.dumps([r.body for r in sent]).decode())


class RateLimitTests(TestCase):
    """
    A 429 Codex can act on. What Codex 0.169.0 does with an HTTP 429 (seen
    with the probes in L{CodexOwnRetryTests}): it retries it only when
    C{Retry-After} is a whole number of seconds, waits exactly that long, and
    counts the retry against C{stream_max_retries} ("Reconnecting... 1/N"),
    not C{request_max_retries}.
    """

    timeout = 60

    async def test_codex_retries_the_gateways_429_after_its_retry_after(self) -> None:
        live = LiveGateway(self, upstream={"retries": {"max_attempts": 2, "backoff_base": 0.5}})
        tap = WireTap(self, live.gateway.resource)
        times: list[float] = []
        live.upstream.script += [
            stamped(times, limited),
            stamped(times, limited),
            stamped(times, sse(textStream(["Back", " after", " the", " wait"]))),
        ]
        code, message, out, err = await runCodex(
            self, tap.base, "hello", retries=(1, 1), timeout=30
        )
        self.assertEqual(code, 0, codexFailed(code, out, err))
        self.assertEqual(message.strip(), "Back after the wait")
        self.assertIn("Reconnecting... 1/1", err)
        self.assertEqual(len(chats(live)), 3)

        # What Codex got: the gateway's 429 (after its own two attempts)
        # saying when, then the answer.
        answers = tap.answers()
        self.assertEqual([a.status for a in answers], [429, 200])
        limit = answers[0]
        # min(backoff_max, 0.5 * 2**(2-1)) = 1 s, rounded up, at least 1.
        self.assertEqual(limit.headers.get(b"retry-after"), b"1")
        advised = int(limit.headers[b"retry-after"])
        error = orjson.loads(limit.body)["error"]
        self.assertEqual(error["code"], "rate_limit_exceeded")
        self.assertIn("try again in 1s", error["message"])

        # Codex came back no sooner than told, and not much later.
        self.assertGreaterEqual(times[2] - times[1], advised)
        waited = times[2] - limit.at
        self.assertGreaterEqual(waited, advised)
        self.assertLess(waited, advised + 1)

    async def test_upstreams_fractional_retry_after_reaches_codex_as_whole_seconds(
        self,
    ) -> None:
        # An upstream that says "Retry-After: 1.5" (legal for many proxies,
        # and what retry-after-ms users round to). Codex parses only whole
        # seconds: relayed as is, it gives up on the turn at once.
        live = LiveGateway(self)
        tap = WireTap(self, live.gateway.resource)
        times: list[float] = []

        def fractional(request: Request, body: Any) -> Any:
            request.setHeader(b"retry-after", b"1.5")
            return limited(request, body)

        live.upstream.script += [
            stamped(times, fractional),
            stamped(times, sse(textStream(["after", " one", " and", " a", " half"]))),
        ]
        code, message, out, err = await runCodex(
            self, tap.base, "hello", retries=(1, 1), timeout=30
        )
        limit = tap.answers()[0]
        said = limit.headers.get(b"retry-after")
        self.assertEqual(code, 0, f"Retry-After: {said!r}; " + codexFailed(code, out, err))
        self.assertEqual(message.strip(), "after one and a half")
        self.assertEqual(limit.status, 429)
        self.assertEqual(said, b"2")  # 1.5 rounded up: never sooner than the upstream said
        self.assertGreaterEqual(times[1] - times[0], 1.5)


class _Limit(Resource):
    """
    A Responses endpoint standing in for a gateway: 429 with the headers
    given, then a completed answer. Codex's own behaviour, probed directly.
    """

    isLeaf = True

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        super().__init__()
        self.headers = headers
        self.times: list[float] = []

    def render(self, request: Request) -> bytes:
        self.times.append(reactor.seconds())
        if len(self.times) > 1:
            request.setHeader(b"content-type", b"text/event-stream")
            return completedStream("done")
        request.setResponseCode(429)
        request.setHeader(b"content-type", b"application/json")
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return LIMITED


def completedStream(text: str) -> bytes:
    """The least Responses stream Codex accepts as a finished turn."""
    item: dict[str, Any] = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    response: dict[str, Any] = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [item],
        "usage": {
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.created",
            "response": {**response, "status": "in_progress", "output": []},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    return b"".join(
        b"event: " + str(e["type"]).encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in events
    )


class CodexOwnRetryTests(TestCase):
    """
    What Codex 0.169.0 itself does with a 429, without the gateway: why the
    gateway must always send a whole-seconds C{Retry-After}. If a Codex
    upgrade changes this, these fail first.
    """

    timeout = 60

    async def probe(
        self, headers: dict[bytes, bytes], retries: tuple[int, int]
    ) -> tuple[int, list[float], str]:
        fake = _Limit(headers)
        code, message, out, err = await runCodex(
            self, WireTap(self, fake).base, "hello", retries=retries, timeout=30
        )
        return code, fake.times, err

    async def test_a_429_without_retry_after_is_never_retried(self) -> None:
        code, times, err = await self.probe({}, retries=(4, 5))
        self.assertEqual((code, len(times)), (1, 1), err[-2000:])
        self.assertIn("exceeded retry limit, last status: 429", err)

    async def test_a_429_with_retry_after_is_retried_after_exactly_that_long(self) -> None:
        code, times, err = await self.probe({b"retry-after": b"1"}, retries=(0, 1))
        self.assertEqual((code, len(times)), (0, 2), err[-2000:])
        self.assertGreaterEqual(times[1] - times[0], 1)
        self.assertLess(times[1] - times[0], 1.5)

    async def test_request_max_retries_alone_does_not_retry_a_429(self) -> None:
        code, times, err = await self.probe({b"retry-after": b"1"}, retries=(3, 0))
        self.assertEqual((code, len(times)), (1, 1), err[-2000:])

    async def test_a_fractional_retry_after_is_not_honoured(self) -> None:
        code, times, err = await self.probe({b"retry-after": b"1.5"}, retries=(0, 1))
        self.assertEqual((code, len(times)), (1, 1), err[-2000:])
