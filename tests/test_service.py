"""
Running the gateway: the twistd plugin, the service, and embedding it in a
host program as a service or a resource.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import IResource, Resource

from codexgw import tap
from codexgw.config import parse
from codexgw.service import GatewayService, makeGatewayResource, makeGatewayService
from tests.integration.test_integration import LiveGateway, httpClient, serve, until


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(base_url: str, listen: str = "tcp:0:interface=127.0.0.1") -> Any:
    return parse(
        {
            "listen": listen,
            "upstreams": {"main": {"base_url": base_url}},
            "default_upstream": "main",
        },
        "test.yaml",
        {},
    )


class PluginTests(TestCase):
    def test_twistd_finds_the_codexgw_plugin(self) -> None:
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("codexgw", makers)
        self.assertEqual(makers["codexgw"].options, tap.Options)

    def test_options_take_config_and_listen(self) -> None:
        options = tap.Options()
        options.parseOptions(
            ["--config", "conf/codexgw.yaml", "--listen", "tcp:9999:interface=127.0.0.1"]
        )
        self.assertEqual(options["config"], "conf/codexgw.yaml")
        self.assertEqual(options["listen"], "tcp:9999:interface=127.0.0.1")

    def test_bad_config_exits_with_the_problems_not_a_traceback(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("upstreams:\n  main:\n    wire_api: soap\n")
        options = tap.Options()
        options.parseOptions(["--config", path])
        import io
        import sys

        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit):
            tap.makeService(options)
        self.assertIn("upstreams.main.wire_api", err.getvalue())
        self.assertIn("upstreams.main.base_url", err.getvalue())

    def test_listen_option_beyond_loopback_needs_keys_like_the_config_would(self) -> None:
        import io
        import sys

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("upstreams:\n  main:\n    base_url: http://127.0.0.1:9/v1\n")
        options = tap.Options()
        options.parseOptions(["--config", path, "--listen", "tcp:8080:interface=0.0.0.0"])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit):
            tap.makeService(options)
        self.assertIn("auth: listening on 'tcp:8080:interface=0.0.0.0'", err.getvalue())

    async def test_make_service_listens_where_told(self) -> None:
        live = LiveGateway(self)
        port = freePort()
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"upstreams:\n  main:\n    base_url: http://127.0.0.1:{live.upstreamPort.getHost().port}/v1\n"
            )
        options = tap.Options()
        options.parseOptions(["--config", path, "--listen", f"tcp:{port}:interface=127.0.0.1"])
        service = tap.makeService(options)
        self.assertTrue(IService.providedBy(service))
        service.startService()
        self.addCleanup(service.stopService)
        http = httpClient(self)
        response = await http.get(f"http://127.0.0.1:{port}/health/live")
        self.assertEqual(response.code, 200)
        await response.content()


class DemoTests(TestCase):
    async def test_no_configuration_serves_the_offline_demo_model(self) -> None:
        service = GatewayService(parse({}, "<defaults>", {}), listen=None)
        service.startService()
        self.addCleanup(service.stopService)
        port = serve(self, service.resource)
        http = httpClient(self)
        base = f"http://127.0.0.1:{port.getHost().port}/v1"
        models = await (await http.get(base + "/models")).json()
        self.assertEqual([m["id"] for m in models["data"]], ["codexgw-demo"])
        response = await http.post(
            base + "/chat/completions",
            json={"model": "codexgw-demo", "messages": [{"role": "user", "content": "ping"}]},
        )
        body = await response.json()
        self.assertIn("offline demo model", body["choices"][0]["message"]["content"])
        self.assertIn("You said: ping", body["choices"][0]["message"]["content"])
        stream = await http.post(
            base + "/chat/completions",
            json={
                "model": "codexgw-demo",
                "stream": True,
                "messages": [{"role": "user", "content": "ping"}],
            },
        )
        text = (await stream.content()).decode()
        self.assertTrue(text.rstrip().endswith("data: [DONE]"))
        self.assertEqual(stream.headers.getRawHeaders("content-type"), ["text/event-stream"])

    def test_building_the_gateway_listens_nowhere_until_started(self) -> None:
        reactor = MemoryReactorClock()
        # No background probes: their timer runs on the global reactor.
        defaults = parse({"server": {"health_probe_interval": 0}}, "<defaults>", {})
        service = GatewayService(defaults, listen=None, reactor=reactor)
        self.assertEqual(reactor.tcpServers, [])
        demo = service.gateway.demo
        assert demo is not None
        self.assertIs(demo.parent, service)
        self.assertEqual(service.gateway.upstreams["demo"].base_url, "http://127.0.0.1:0/v1")
        service.startService()
        [(port, _, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertNotEqual(service.gateway.upstreams["demo"].base_url, "http://127.0.0.1:0/v1")

    async def test_a_gateway_embedded_as_a_resource_serves_and_closes_the_demo(self) -> None:
        resource, gateway = makeGatewayResource(parse({}, "<defaults>", {}))
        demo = gateway.demo
        assert demo is not None and demo.port is not None
        self.assertTrue(demo.running)
        port = serve(self, resource)
        http = httpClient(self)
        response = await http.post(
            f"http://127.0.0.1:{port.getHost().port}/v1/chat/completions",
            json={"model": "codexgw-demo", "messages": [{"role": "user", "content": "ping"}]},
        )
        self.assertIn("You said: ping", (await response.json())["choices"][0]["message"]["content"])
        await gateway.close()
        self.assertFalse(demo.running)
        self.assertIsNone(demo.port)


class EmbeddingTests(TestCase):
    """A host program mounts the gateway under its own site."""

    async def test_embedded_as_a_service_with_its_resource_mounted(self) -> None:
        live = LiveGateway(self)
        host = MultiService()
        gateway = makeGatewayService(
            config(f"http://127.0.0.1:{live.upstreamPort.getHost().port}/v1"), listen=None
        )
        gateway.setServiceParent(host)
        root = Resource()
        root.putChild(b"llm", gateway.resource)  # type: ignore[attr-defined]
        host.startService()
        self.addCleanup(host.stopService)
        port = serve(self, root)
        http = httpClient(self)
        response = await http.post(
            f"http://127.0.0.1:{port.getHost().port}/llm/v1/chat/completions",
            json={"model": "fake-model", "messages": []},
        )
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.json())["object"], "chat.completion")

    async def test_embedded_as_a_resource(self) -> None:
        live = LiveGateway(self)
        resource, gateway = makeGatewayResource(
            config(f"http://127.0.0.1:{live.upstreamPort.getHost().port}/v1")
        )
        self.addCleanup(gateway.close)
        self.assertTrue(IResource.providedBy(resource))
        root = Resource()
        root.putChild(b"gw", resource)
        port = serve(self, root)
        http = httpClient(self)
        response = await http.get(f"http://127.0.0.1:{port.getHost().port}/gw/health/live")
        self.assertEqual(await response.json(), {"status": "ok"})


class BackgroundProbeTests(TestCase):
    async def test_upstream_health_is_known_without_anyone_asking(self) -> None:
        live = LiveGateway(self)
        base = f"http://127.0.0.1:{live.upstreamPort.getHost().port}/v1"
        service = GatewayService(
            parse(
                {
                    "upstreams": {
                        "main": {"base_url": base},
                        "gone": {"base_url": "http://127.0.0.1:9/v1"},
                    },
                    "default_upstream": "main",
                    "server": {"health_probe_interval": 0.05},
                    "store": {"backend": "none"},
                },
                "t.yaml",
                {},
            ),
            listen=None,
        )
        service.startService()
        self.addCleanup(service.stopService)
        registry = service.gateway.metrics.registry

        def up(name: str) -> float | None:
            return registry.get_sample_value("codexgw_upstream_up", {"upstream": name})

        self.assertTrue(await until(lambda: up("main") == 1 and up("gone") == 0))
        probes = len([r for r in live.upstream.received if r.path.endswith(b"/models")])
        self.assertTrue(
            await until(
                lambda: (
                    len([r for r in live.upstream.received if r.path.endswith(b"/models")]) > probes
                )
            )
        )


class ShutdownTests(TestCase):
    async def test_stop_drains_then_ends_streams(self) -> None:
        live = LiveGateway(self)
        live.upstream.script.append(live.upstream.endless)
        service = GatewayService(
            config(f"http://127.0.0.1:{live.upstreamPort.getHost().port}/v1"),
            listen=None,
            drainTimeout=0.2,
        )
        service.startService()
        port = serve(self, service.resource)
        http = httpClient(self)
        response = await http.post(
            f"http://127.0.0.1:{port.getHost().port}/v1/chat/completions",
            json={"model": "m", "messages": [], "stream": True},
        )
        self.assertEqual(response.code, 200)
        body = response.content()
        await service.stopService()
        self.assertTrue(service.gateway.draining)
        text = (await body).decode()
        self.assertIn('"code":"shutdown"', text)


class DrainFlushTests(SynchronousTestCase):
    """After ending streams at the deadline, the drain waits for their last bytes to leave."""

    def test_the_drain_waits_for_the_terminal_event_to_be_sent(self) -> None:
        from tests.harness import Harness

        h = Harness()
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
        h.sent[0].respond(200, {b"content-type": b"text/event-stream"})
        done = h.gateway.drain(1.0)
        # The socket has not taken everything yet (what a slow client leaves
        # in a transport of the real reactor).
        client.transport.dataBuffer = b"unsent"  # type: ignore[attr-defined]
        h.reactor.advance(1.0)
        self.assertIn(b'"code":"shutdown"', client.response()[2])
        self.assertNoResult(done)
        client.transport.dataBuffer = b""  # type: ignore[attr-defined]
        h.reactor.advance(0.05)
        self.successResultOf(done)

    def test_a_client_that_never_reads_holds_the_drain_only_for_the_grace(self) -> None:
        from codexgw.service import FLUSH_GRACE
        from tests.harness import Harness

        h = Harness()
        client = h.connect()
        client.post(b"/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
        h.sent[0].respond(200, {b"content-type": b"text/event-stream"})
        done = h.gateway.drain(1.0)
        client.transport.dataBuffer = b"unsent"  # type: ignore[attr-defined]
        h.reactor.advance(1.0)
        for _ in range(int(FLUSH_GRACE / 0.05) + 2):
            h.reactor.advance(0.05)
        self.successResultOf(done)


class ListeningTests(TestCase):
    """
    The listener twistd starts: bound before privileges are dropped, a port
    that cannot be had stops startup with the reason, and stopping frees it.
    """

    def test_a_taken_port_fails_startup_with_the_reason(self) -> None:
        from twisted.internet.error import CannotListenError

        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        service = GatewayService(config("http://127.0.0.1:9/v1", f"tcp:{port}:interface=127.0.0.1"))
        self.assertRaises(CannotListenError, service.privilegedStartService)

    async def test_bound_at_privileged_start_and_freed_at_stop(self) -> None:
        port = freePort()
        listen = f"tcp:{port}:interface=127.0.0.1"
        service = GatewayService(config("http://127.0.0.1:9/v1", listen))
        service.privilegedStartService()
        # Bound already, before startService (which twistd calls after
        # giving up root).
        probe = socket.socket()
        self.addCleanup(probe.close)
        self.assertEqual(probe.connect_ex(("127.0.0.1", port)), 0)
        service.startService()
        await service.stopService()
        again = GatewayService(config("http://127.0.0.1:9/v1", listen))
        again.startService()
        await again.stopService()


class PeriodicTests(SynchronousTestCase):
    """The background health probes' schedule: now, each interval, none once stopped."""

    def test_called_at_start_then_every_interval_until_stopped(self) -> None:
        from twisted.internet.task import Clock

        from codexgw.service import _Every

        clock = Clock()
        calls: list[float] = []
        every = _Every(5, lambda: calls.append(clock.seconds()), clock)
        every.startService()
        clock.advance(5)
        clock.advance(5)
        self.assertEqual(calls, [0, 5, 10])
        every.stopService()
        clock.advance(20)
        self.assertEqual(calls, [0, 5, 10])

    def test_the_next_call_waits_for_a_slow_one(self) -> None:
        from twisted.internet.defer import Deferred
        from twisted.internet.task import Clock

        from codexgw.service import _Every

        clock = Clock()
        pending: list[Deferred[None]] = []

        def probe() -> Deferred[None]:
            pending.append(Deferred())
            return pending[-1]

        every = _Every(5, probe, clock)
        every.startService()
        clock.advance(12)
        self.assertEqual(len(pending), 1)
        pending[0].callback(None)
        clock.advance(5)
        self.assertEqual(len(pending), 2)
        every.stopService()
