# -*- test-case-name: tests.test_service -*-
"""
Building the gateway, and the two ways to run it: as an C{IService} that
listens on its own endpoint, or as an C{IResource} mounted in someone else's
Twisted web server.

L{Gateway} is the composition root: it owns the connection pool, the
upstream clients, metrics, routing and health, and is the only place that
wires them together.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from codexgw.config import Config
from codexgw.demo.model import DemoService
from codexgw.dialects import HUB, SPOKES
from codexgw.dialects.chat import CHAT
from codexgw.http.auth import Authenticator
from codexgw.http.bridge import Bridge
from codexgw.http.compact import Compactor
from codexgw.http.cors import CORSResource
from codexgw.http.dispatch import Dispatcher
from codexgw.http.exchange import Proxy
from codexgw.http.limits import RequestLimits
from codexgw.http.pairs import Made, everyPair
from codexgw.http.reverse import ReverseBridge
from codexgw.http.routes import GatewayApp, Status
from codexgw.http.site import GatewaySite, Redacting, connectionCap, openFileLimit
from codexgw.http.websocket import WebSocketEndpoint, socketSettings
from codexgw.obs.logs import redactConfigured
from codexgw.obs.metrics import GatewayMetrics
from codexgw.obs.redaction import Redactor, configSecrets
from codexgw.state.lazy import LazyStore
from codexgw.state.ratelimit import IRateLimiter, MemoryRateLimiter, RedisRateLimiter
from codexgw.state.store import IResponseStore, RedisStore, SQLiteStore
from codexgw.stream.relay import SHUTDOWN
from codexgw.upstream.client import Upstream, makePool
from codexgw.upstream.failover import CircuitBreaker
from codexgw.upstream.health import HealthChecker
from codexgw.upstream.models import ModelCatalog
from codexgw.upstream.profiles import buildProfiles, dialectFor
from codexgw.upstream.routing import Router

if TYPE_CHECKING:
    from codexgw.state.redis import RedisClient

log = Logger()


class Gateway:
    """
    Everything one gateway needs, built from a L{Config}.

    @param reactor: the reactor to use; the global one when L{None}.
    @param agent: the C{IAgent} upstream requests go through; a pooled
        L{twisted.web.client.Agent} per upstream when L{None} (tests pass a
        fake to run without sockets).
    @param store: the response store to use instead of the configured one
        (a host's own, or a test's).
    @ivar resource: the root L{IResource} serving every route.
    @ivar draining: set by shutdown; readiness then answers 503.
    """

    def __init__(
        self,
        config: Config,
        reactor: Any = None,
        metrics: GatewayMetrics | None = None,
        agent: Any = None,
        store: IResponseStore | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.config = config
        self.clock = reactor
        self.reactor = reactor
        self.metrics = metrics or GatewayMetrics()
        self.pool = makePool(reactor)
        self.upstreams: dict[str, Upstream] = {}
        profiles = buildProfiles(config.profiles)
        for name, upstreamConfig in config.upstreams.items():
            upstream = Upstream(
                upstreamConfig, reactor, self.pool, agent, profiles[upstreamConfig.provider]
            )
            self.upstreams[name] = upstream
        # The demo listens once started (a child of GatewayService, or by
        # makeGatewayResource), never here: building serves nothing.
        self._demos = [u for u in self.upstreams.values() if u.config.is_demo]
        self.demo = DemoService(reactor, bound=self._demoBound) if self._demos else None
        self.router = Router(config, self.upstreams)
        self.breakers = {
            name: CircuitBreaker(
                name,
                reactor,
                config.circuit_threshold,
                config.circuit_cooldown,
                self._circuitChanged(name),
            )
            for name in self.upstreams
        }
        self.health = HealthChecker(reactor, self.upstreams, config.health_probe_interval)
        self.health.onChange = self._healthChanged
        self.catalog = ModelCatalog(
            reactor, self.upstreams, self.router.aliases(), config.models_cache_ttl
        )
        self.auth = Authenticator(config.keys, config.auth_enabled)
        self.redis: RedisClient | None = None
        if config.redis:
            # Only a gateway that uses Redis loads its client (txredisapi).
            from codexgw.state.redis import RedisClient

            self.redis = RedisClient.fromConfig(reactor, config.redis)
        self.limiter: IRateLimiter
        if config.rate_limits.backend == "redis":
            assert self.redis is not None
            self.limiter = RedisRateLimiter(
                self.redis, reactor, config.rate_limits.failure_policy, metrics=self.metrics
            )
        else:
            self.limiter = MemoryRateLimiter(reactor)
            # In-process limits cannot be unreachable; 0 would page someone.
            self.metrics.ratelimit_backend_up.set(1)
        self.limits = RequestLimits(self.limiter, config.rate_limits, self.metrics)
        self.proxy = Proxy(
            reactor,
            self.metrics,
            maxBody=config.max_body_bytes,
            heartbeat=config.heartbeat_interval,
            maxLine=config.max_sse_line_bytes,
            recordTokens=self.limits.record,
        )
        self.dispatcher = Dispatcher(self.breakers, self.metrics, self.proxy)
        self.store: IResponseStore | None = store
        if store is None and config.store.backend in ("sqlite", "redis"):
            self.store = LazyStore(self._openStore)
        if config.auth_implicitly_off:
            log.warn(
                "no auth configured: anyone who can reach {listen} may use the upstreams "
                "(loopback only; add auth.keys before listening wider)",
                listen=config.listen,
            )
        elif not config.auth_enabled:
            log.warn("auth is switched off (auth.enabled: false): every request is served")
        sealKey = _sealKey(config)
        # Every pair of dialects through the hub (pass-through pairs aside).
        self.bridges = everyPair(
            SPOKES,
            lambda **kw: Bridge(
                exchanges=self.proxy,
                dispatcher=self.dispatcher,
                store=self.store,
                metrics=self.metrics,
                clock=reactor,
                dialectFor=dialectFor,
                heartbeat=config.heartbeat_interval,
                maxLine=config.max_sse_line_bytes,
                sealKey=sealKey,
                **kw,
            ),
            lambda early, **kw: ReverseBridge(
                exchanges=self.proxy,
                dispatcher=self.dispatcher,
                clock=reactor if early else None,
                heartbeat=config.heartbeat_interval,
                **kw,
            ),
        )
        bridge, reverse = self.bridges[(HUB, CHAT.name)], self.bridges[(CHAT.name, HUB)]
        assert isinstance(bridge, Bridge) and isinstance(reverse, ReverseBridge)
        self.bridge, self.reverse = bridge, reverse
        # Compaction on every upstream dialect but the hub (which compacts itself).
        bridges = self.bridges

        def compactor(name: str) -> Compactor:
            b = bridges[(HUB, name)]
            assert isinstance(b, Bridge)
            return Compactor(bridge=b, sealKey=sealKey, prompt=config.compaction_prompt)

        self.compactors = Made(SPOKES, compactor)
        self.compactor = self.compactors[CHAT.name]
        self.redactor = Redactor(configSecrets(config))
        self.sockets = WebSocketEndpoint(
            exchanges=self.proxy,
            authenticate=self.auth.authenticate,
            authorize=lambda request, body: self.app.authorizeTurn(request, body),
            serve=lambda turn: self.app.serveTurn(turn),
            redactor=self.redactor,
            metrics=self.metrics,
            clock=reactor,
            settings=socketSettings(config),
            enabled=config.websocket,
            store=self.store,
        )
        self.app = GatewayApp(
            exchanges=self.proxy,
            auth=self.auth,
            router=self.router,
            limits=self.limits,
            dispatcher=self.dispatcher,
            store=self.store,
            bridge=self.bridge,
            reverse=self.reverse,
            catalog=self.catalog,
            status=Status(config, self.upstreams, self.health, reactor),
            metrics=self.metrics,
            storedRelay=_storedRelay(config, self.upstreams),
            compactor=self.compactor,
            compactors=self.compactors,
            bridges=self.bridges,
            sockets=self.sockets,
        )
        resource: IResource = self.app.resource()
        if config.cors.allowed_origins:
            resource = CORSResource(resource, config.cors)
        redactConfigured(self.redactor)
        self.resource: IResource = Redacting(resource, self.redactor)

    def makeSite(self, reactor: Any = None, fileLimit: int | None = None) -> GatewaySite:
        """
        A site serving this gateway: oversized bodies are refused as they
        arrive, a request has C{server.request_timeout} seconds to arrive
        whole, and at most C{server.max_connections} connections are served
        at once, fewer if the open-file limit could not hold that many.

        @param fileLimit: the open-file limit to fit; the process's own
            (C{RLIMIT_NOFILE}) when L{None}.
        """
        configured = self.config.max_connections
        limit = openFileLimit() if fileLimit is None else fileLimit
        cap = connectionCap(configured, limit)
        if cap is not None and cap < configured:
            log.info(
                "serving at most {cap} connections at once: server.max_connections is "
                "{configured}, but the open-file limit of {limit} leaves room for {cap} "
                "client connections and their upstream connections",
                cap=cap,
                configured=configured,
                limit=limit,
            )
        return GatewaySite(
            self.resource,
            reactor=reactor,
            maxBody=self.config.max_body_bytes,
            requestTimeout=self.config.request_timeout,
            maxConnections=cap,
        )

    def _demoBound(self, url: str) -> None:
        for upstream in self._demos:
            upstream.rebind(url)

    @property
    def draining(self) -> bool:
        """Set by shutdown: readiness then answers 503 and new requests are refused."""
        return self.proxy.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.proxy.draining = value

    def _openStore(self) -> IResponseStore:
        """The configured response store (opened on first use: no file until needed)."""
        sc = self.config.store
        if sc.backend == "redis":
            assert self.redis is not None
            return RedisStore(self.redis, sc.ttl, sc.max_entry_bytes)
        return SQLiteStore(self.reactor, sc.path, sc.ttl, sc.max_entry_bytes)

    def _circuitChanged(self, name: str) -> Any:
        gauge = self.metrics.circuit_state.labels(name)
        gauge.set(0)

        def changed(old: str, new: str) -> None:
            gauge.set(self.breakers[name].value)
            self.metrics.circuit_transitions.labels(name, new).inc()

        return changed

    def _healthChanged(self, name: str, state: Any) -> None:
        self.metrics.upstream_up.labels(name).set(1 if state.reachable else 0)

    def drain(self, deadline: float) -> Deferred[None]:
        """
        Stop taking new work: readiness turns 503 and in-flight streams get
        C{deadline} seconds to finish before they are ended cleanly.
        """
        self.draining = True
        # Sockets close once their turn in flight is done (1001).
        self.sockets.drain()
        idle = self.proxy.idle()
        if idle.called:
            return idle
        done: Deferred[None] = Deferred()

        ending: list[bool] = []

        def deadlineReached() -> None:
            # Streams end with a proper terminal event; a request still
            # waiting for its upstream's first byte is cut when the process
            # exits: the deadline is the operator's hard cap.
            ending.append(True)
            transports = self._endAll()
            # The terminal events are written, not yet sent: the reactor's
            # stop drops unsent bytes, so wait (briefly) for the sockets to
            # take them, or a client would see its stream cut after all.
            self._whenFlushed(transports, FLUSH_GRACE).addCallback(finished)

        def finished(_: object) -> None:
            if not done.called:
                done.callback(None)

        call = self.clock.callLater(deadline, deadlineReached)

        def quiet(_: object) -> None:
            if call.active():
                call.cancel()
            # Once streams were ended at the deadline, their flush decides.
            if not ending and not done.called:
                done.callback(None)

        idle.addCallback(quiet)
        return done

    def probeAll(self) -> None:
        """Probe every upstream now (each at most once per probe interval)."""
        for name in self.upstreams:
            self.health.probe(name)

    def _endAll(self) -> list[Any]:
        """End every relay with a terminal event; their client transports."""
        transports = []
        for relay in list(self.proxy.active):
            channel = relay.request.channel
            relay.end(SHUTDOWN)
            if channel is not None and channel.transport is not None:
                transports.append(channel.transport)
        return transports

    def _whenFlushed(self, transports: list[Any], grace: float) -> Deferred[None]:
        """Fire once every transport has sent what it holds, or after C{grace} seconds."""
        done: Deferred[None] = Deferred()
        started = self.clock.seconds()

        def pending(t: Any) -> bool:
            # A transport of this reactor buffers in dataBuffer/_tempDataBuffer
            # until the socket takes it (twisted.internet.abstract.FileDescriptor).
            if getattr(t, "disconnected", False):
                return False
            return bool(getattr(t, "dataBuffer", b"") or getattr(t, "_tempDataBuffer", None))

        def check() -> None:
            if not any(pending(t) for t in transports) or (self.clock.seconds() - started >= grace):
                done.callback(None)
            else:
                self.clock.callLater(0.05, check)

        check()
        return done

    def close(self) -> Deferred[None]:
        """Release sockets: the demo listener and pooled upstream connections."""
        self._endAll()
        self.sockets.drain()
        self.health.stop()
        waits: list[Deferred[Any]] = [self.pool.closeCachedConnections()]
        if self.store is not None:
            waits.append(self.store.close())
        if self.redis is not None:
            self.redis.close()
        if self.demo is not None and self.demo.running:
            waits.append(self.demo.stopService())
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)


FLUSH_GRACE = 2.0
"""Seconds a drain waits, after ending streams, for their last bytes to leave."""


def _storedRelay(config: Config, upstreams: dict[str, Upstream]) -> Upstream | None:
    """Where stored responses live: the default upstream if it speaks
    Responses, else the first that does."""
    default = upstreams[config.default_upstream]
    if default.config.wire_api == "responses":
        return default
    for upstream in upstreams.values():
        if upstream.config.wire_api == "responses":
            return upstream
    return None


def _sealKey(config: Config) -> bytes:
    """
    The key tokens handed to clients are sealed with (reasoning carried in
    C{encrypted_content}): C{server.seal_key}, shared by replicas, or a
    random one for this process, so a client can never hand back text the
    model did not write.
    """
    configured = getattr(config, "seal_key", None)
    if configured:
        return str(configured).encode("utf-8")
    return os.urandom(32)


class GatewayService(MultiService):
    """
    The gateway as an C{IService}.

    @param listen: a Twisted endpoint string to serve on; L{None} to serve
        nothing yourself and mount L{resource} in your own site.
    @param drainTimeout: seconds in-flight streams get on shutdown.
    """

    def __init__(
        self,
        config: Config,
        listen: str | None = "",
        reactor: Any = None,
        drainTimeout: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self.gateway = Gateway(config, reactor)
        self.resource = self.gateway.resource
        # First: bound before the health probes and the listener start.
        if self.gateway.demo is not None:
            self.gateway.demo.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.drainTimeout = config.drain_timeout if drainTimeout is None else drainTimeout
        # Upstream health is known before anyone asks: the upstream_up gauge
        # and its alert work even where nothing polls /health/ready.
        if config.health_probe_interval:
            _Every(
                config.health_probe_interval, self.gateway.probeAll, self.gateway.reactor
            ).setServiceParent(self)  # type: ignore[no-untyped-call]
        endpoint = config.listen if listen == "" else listen
        if endpoint:
            site = self.gateway.makeSite()
            _Listening(serverFromString(self.gateway.reactor, endpoint), site).setServiceParent(
                self
            )  # type: ignore[no-untyped-call]
            self._listen = endpoint

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        log.info(
            "codexgw serving; default upstream {upstream} ({wire_api})",
            upstream=self.config.default_upstream,
            wire_api=self.config.default.wire_api,
        )
        _releaseStartupMemory()

    async def _shutdown(self) -> None:
        """
        SIGTERM: readiness turns 503 and new API requests are refused with
        503 and C{Retry-After} (the listener stays up so load balancers can
        see that); requests in flight get C{drainTimeout} seconds, then
        streams are ended with a proper terminal event; twistd exits 0.
        """
        self.gateway.draining = True
        log.info(
            "shutting down: refusing new requests; {active} in flight get {deadline}s to finish",
            active=len(self.gateway.proxy.inflight),
            deadline=self.drainTimeout,
        )
        await self.gateway.drain(self.drainTimeout)
        stopped = MultiService.stopService(self)
        if stopped is not None:
            await stopped
        await self.gateway.close()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._shutdown())


class _Every(Service):
    """
    Call C{f} now and every C{interval} seconds while running.

    This and L{_Listening} are what the gateway needs of
    C{twisted.application.internet} (C{TimerService}, C{strports.service}):
    importing that module loads automat's state machines for its
    C{ClientService}, 0.45 MB of an idle gateway's 60 MB budget.
    """

    def __init__(self, interval: float, f: Any, clock: Any) -> None:
        self._interval = interval
        self._loop = LoopingCall(f)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop.start(self._interval, now=True).addErrback(
            lambda failure: log.failure("periodic call failed; stopped", failure)
        )

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()


class _Listening(Service):
    """
    Listen on C{endpoint} as C{strports.service} does: at privileged start
    (before twistd gives up root), a failure to bind raised at once so the
    process stops with it, and stopping waits for the port to close.
    """

    def __init__(self, endpoint: Any, factory: Any) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._port: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._port = self._endpoint.listen(self._factory)
        raised: list[Failure] = []
        started = False

        def failed(failure: Failure) -> None:
            if not started:
                raised.append(failure)
            elif not failure.check(CancelledError):
                log.failure("could not listen", failure)

        self._port.addErrback(failed)
        if raised:
            raised[0].raiseException()
        started = True

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self._port is None:
            self.privilegedStartService()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        waiting, self._port = self._port, None
        if waiting is None:
            return None
        # Still binding: give up; bound: close the port.
        waiting.cancel()

        def stop(port: IListeningPort | None) -> Any:
            return port.stopListening() if port is not None else None

        return waiting.addCallback(stop)


def _releaseStartupMemory() -> None:
    """
    Give the C heap back what starting took and no longer holds (config
    parsing, cattrs' generated structuring code, import-time garbage): an
    idle process is the gateway's memory floor, and glibc keeps freed
    arenas unless asked. Nothing is kept from it; elsewhere than glibc it
    is a no-op.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        # The process's own symbols: glibc's, where it is the C library.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def makeGatewayService(config: Config, listen: str | None = "", reactor: Any = None) -> IService:
    """The gateway as a service listening on C{listen} (C{config.listen} by default)."""
    return GatewayService(config, listen, reactor)


def makeGatewayResource(config: Config, reactor: Any = None) -> tuple[IResource, Gateway]:
    """
    The gateway as a resource to mount, with the L{Gateway} whose C{close()}
    the host calls at shutdown. Prefer L{makeGatewayService} with
    C{listen=None} when the host has a service hierarchy.
    """
    gateway = Gateway(config, reactor)
    if gateway.demo is not None:
        # No service hierarchy to start it: C{gateway.close()} stops it.
        gateway.demo.startService()
    return gateway.resource, gateway


__all__ = [
    "Gateway",
    "GatewayService",
    "GatewaySite",
    "Service",
    "makeGatewayResource",
    "makeGatewayService",
]
