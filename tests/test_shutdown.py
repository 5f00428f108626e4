"""
SIGTERM on a real `twistd -n codexgw` process: refuse new work, let the
stream in flight run until the drain deadline, end it with a terminal
event, exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.fakes.chat_upstream import FakeChatUpstream
from tests.integration.test_integration import httpClient, serve, until
from tests.test_service import freePort


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[Any] = Deferred()
        self.exitCode: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        self.ended.callback(None)


class SigtermTests(TestCase):
    timeout = 60

    async def test_sigterm_drains_then_ends_streams_and_exits_zero(self) -> None:
        upstream = FakeChatUpstream()
        upstream.script.append(upstream.endless)
        upstreamPort = serve(self, upstream)
        port = freePort()
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(
                f'listen: "tcp:{port}:interface=127.0.0.1"\n'
                "upstreams:\n  main:\n"
                f"    base_url: http://127.0.0.1:{upstreamPort.getHost().port}/v1\n"
                "    api_key: sk-upstream-never-logged\n"
                "server:\n  drain_timeout: 1.5\n"
            )
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        proto = _Process()
        process = reactor.spawnProcess(
            proto,
            twistd,
            [twistd, "-n", "--pidfile=", "codexgw", "--config", path],
            env=dict(os.environ),
            path=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )

        def killIfAlive() -> None:
            if proto.exitCode is None and not proto.ended.called:
                process.signalProcess("KILL")

        self.addCleanup(killIfAlive)
        http = httpClient(self)
        base = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                response = await http.get(base + "/health/live")
                await response.content()
                return response.code == 200
            except Exception:
                return False

        for _ in range(100):
            if await up():
                break
            await until(lambda: False, timeout=0.1)
        stream = await http.post(
            base + "/v1/chat/completions", json={"model": "m", "messages": [], "stream": True}
        )
        self.assertEqual(stream.code, 200)
        body = stream.content()
        self.assertTrue(await until(lambda: upstream.streams and upstream.streams[0].produced > 0))

        process.signalProcess(signal.SIGTERM)
        await until(lambda: False, timeout=0.3)
        ready = await http.get(base + "/health/ready")
        self.assertEqual(ready.code, 503)
        await ready.content()
        refused = await http.post(
            base + "/v1/chat/completions", json={"model": "m", "messages": []}
        )
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual((await refused.json())["error"]["code"], "server_shutting_down")
        self.assertFalse(proto.ended.called, "exited before the drain deadline")

        text = (await body).decode()
        self.assertTrue(text.rstrip().endswith('"code":"shutdown"}}'), text[-300:])
        await proto.ended
        self.assertEqual((proto.exitCode, proto.signal), (0, None), proto.output.decode()[-2000:])
        self.assertTrue(upstream.streams[0].stopped)
        self.assertNotIn(b"sk-upstream-never-logged", proto.output)
