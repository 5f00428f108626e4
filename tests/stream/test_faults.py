"""
One test per upstream fault, on real sockets: what the client receives, how
many upstream attempts were made, and that the gateway serves the next
request as if nothing happened.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import TestCase

from codexgw.stream.sse import SSEDecoder
from tests.fakes.faults import FIRST, resetBeforeFirstByte, sseThen, stall, status
from tests.integration.test_integration import LiveGateway

RETRIES = {"max_attempts": 3, "backoff_base": 0.01, "backoff_max": 0.05}


class FaultTests(TestCase):
    timeout = 60

    def gateway(self, **upstream: Any) -> LiveGateway:
        upstream.setdefault("retries", RETRIES)
        return LiveGateway(self, upstream=upstream)

    async def chat(self, live: LiveGateway, stream: bool = False) -> tuple[int, bytes]:
        response = await live.http.post(
            live.base + "/chat/completions", json={"model": "m", "messages": [], "stream": stream}
        )
        return response.code, await response.content()

    async def responsesEvents(self, live: LiveGateway) -> list[dict[str, Any]]:
        response = await live.http.post(
            live.base + "/responses", json={"model": "m", "input": "hi", "stream": True}
        )
        self.assertEqual(response.code, 200)
        decoder = SSEDecoder()
        raw = await response.content()
        return [orjson.loads(e.data) for e in decoder.feed(raw) + decoder.close()]

    async def assertStillServes(self, live: LiveGateway) -> None:
        code, body = await self.chat(live)
        self.assertEqual(code, 200)
        self.assertEqual(orjson.loads(body)["object"], "chat.completion")

    def attempts(self, live: LiveGateway) -> int:
        return sum(r.path.endswith(b"/chat/completions") for r in live.upstream.received)

    async def test_connection_refused(self) -> None:
        live = self.gateway()
        port = live.upstreamPort.getHost().port
        await live.upstreamPort.stopListening()
        code, body = await self.chat(live)
        self.assertEqual(code, 502)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upstream_unavailable")
        retries = live.gateway.metrics.registry.get_sample_value(
            "codexgw_upstream_retries_total", {"upstream": "main", "reason": "connect"}
        )
        self.assertEqual(retries, 2)  # three attempts in all
        # The upstream comes back on the same port: the gateway recovers.
        from twisted.internet import reactor
        from twisted.protocols.policies import WrappingFactory

        from codexgw.http.site import GatewaySite

        factory = WrappingFactory(GatewaySite(live.upstream))
        again = reactor.listenTCP(port, factory, interface="127.0.0.1")
        self.addCleanup(again.stopListening)
        await self.assertStillServes(live)
        for protocol in list(factory.protocols):
            protocol.transport.abortConnection()

    async def test_reset_before_the_first_byte_is_retried(self) -> None:
        live = self.gateway()
        live.upstream.script += [
            resetBeforeFirstByte(),
            resetBeforeFirstByte(),
            resetBeforeFirstByte(),
        ]
        code, body = await self.chat(live)
        self.assertEqual(code, 502)
        self.assertEqual(self.attempts(live), 3)
        await self.assertStillServes(live)

    async def test_reset_after_the_first_byte_fails_the_stream_once(self) -> None:
        live = self.gateway()
        live.upstream.script.append(sseThen(FIRST, "reset"))
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_stream_broken")
        self.assertEqual(self.attempts(live), 1)
        live.upstream.script.append(sseThen(FIRST, "reset"))
        code, body = await self.chat(live, stream=True)
        self.assertEqual(code, 200)
        self.assertIn(b'"code":"upstream_broken"', body)
        await self.assertStillServes(live)

    async def test_stall_before_the_first_byte_times_out(self) -> None:
        live = self.gateway(
            timeouts={"first_byte": 0.3}, retries={"max_attempts": 2, "backoff_base": 0.01}
        )
        live.upstream.script += [stall(), stall()]
        code, body = await self.chat(live)
        self.assertEqual(code, 504)
        self.assertEqual(orjson.loads(body)["error"]["code"], "upstream_timeout")
        self.assertEqual(self.attempts(live), 2)
        await self.assertStillServes(live)

    async def test_stall_mid_stream_hits_the_idle_timeout(self) -> None:
        live = self.gateway(timeouts={"idle": 0.4})
        live.gateway.proxy.heartbeat = 0.2
        live.gateway.bridge.heartbeat = 0.2
        live.upstream.script.append(sseThen(FIRST, "stall"))
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_idle_timeout")
        self.assertEqual(self.attempts(live), 1)
        await self.assertStillServes(live)

    async def test_429_with_retry_after_then_success(self) -> None:
        live = self.gateway()
        live.upstream.script.append(status(429, {b"retry-after": b"0.2"}))
        code, _ = await self.chat(live)
        self.assertEqual(code, 200)
        self.assertEqual(self.attempts(live), 2)

    async def test_500_then_success(self) -> None:
        live = self.gateway()
        live.upstream.script.append(status(500))
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.completed")
        self.assertEqual(self.attempts(live), 2)

    async def test_500_forever(self) -> None:
        live = self.gateway()
        live.upstream.script += [status(500)] * 3
        code, body = await self.chat(live)
        self.assertEqual(code, 500)
        self.assertEqual(orjson.loads(body)["error"]["message"], "upstream says 500")
        self.assertEqual(self.attempts(live), 3)
        await self.assertStillServes(live)

    async def test_malformed_sse(self) -> None:
        live = self.gateway()
        live.upstream.script.append(
            sseThen(b"<html><body>502 Bad Gateway</body></html>\n", "finish")
        )
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(self.attempts(live), 1)
        await self.assertStillServes(live)

    async def test_a_10mb_line(self) -> None:
        live = self.gateway()
        huge = b"data: " + b"x" * (10 * 1024 * 1024) + b"\n\n"
        live.upstream.script.append(sseThen(FIRST + huge, "finish"))
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_protocol_error")
        live.upstream.script.append(sseThen(FIRST + huge, "finish"))
        code, body = await self.chat(live, stream=True)
        self.assertIn(b'"code":"bad_stream"', body)
        self.assertLess(len(body), 6 * 1024 * 1024)
        await self.assertStillServes(live)

    async def test_invalid_utf8(self) -> None:
        live = self.gateway()
        live.upstream.script.append(
            sseThen(
                FIRST + b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n', "finish"
            )
        )
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_protocol_error")
        await self.assertStillServes(live)

    async def test_invalid_json_in_a_chunk(self) -> None:
        live = self.gateway()
        live.upstream.script.append(sseThen(FIRST + b'data: {"choices": [{"delta": \n\n', "finish"))
        events = await self.responsesEvents(live)
        self.assertEqual(events[-1]["type"], "response.failed")
        self.assertEqual(events[-1]["response"]["error"]["code"], "upstream_protocol_error")
        self.assertIn("not JSON", events[-1]["response"]["error"]["message"])
        await self.assertStillServes(live)
