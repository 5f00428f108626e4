# -*- test-case-name: tests.upstream.test_upstream -*-
"""
Talking to model servers: one shared persistent connection pool, connect and
first-byte timeouts, retries, and failures turned into typed gateway errors.

Responses are returned unbuffered: the caller hands the body to a protocol
with C{deliverBody} and it streams, whatever its size.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet import error as ierror
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IConsumer, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import _WrapperException
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseNeverReceived,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IPolicyForHTTPS,
    IResponse,
)
from zope.interface import implementer

from codexgw._version import __version__
from codexgw.config import UpstreamConfig
from codexgw.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from codexgw.upstream.learned import RefusedParams
from codexgw.upstream.profiles import AZURE_LAYOUT, BUILTIN, ProviderProfile
from codexgw.upstream.retry import RetryPolicy, withRetries

log = Logger()

USER_AGENT = f"codexgw/{__version__}".encode()


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written in one go (a
    C{FileBodyProducer} would trickle it through a cooperator a reactor turn
    later: a timer per request for nothing).
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _QuietFactory(_HTTP11ClientFactory):
    # One "Starting factory" line per upstream connection is noise at scale.
    noisy = False


class _QuietPool(HTTPConnectionPool):
    _factory = _QuietFactory

    def __init__(self, reactor: Any, persistent: bool = True) -> None:
        super().__init__(reactor, persistent)  # type: ignore[no-untyped-call]


def makePool(reactor: Any, maxPersistentPerHost: int = 256) -> HTTPConnectionPool:
    """
    One pool for every upstream: persistent connections are what makes a
    relay cheap, and the per-host cap keeps a burst from opening thousands.
    """
    pool = _QuietPool(reactor, persistent=True)
    pool.maxPersistentPerHost = maxPersistentPerHost
    pool.cachedConnectionTimeout = 120
    pool.retryAutomatically = False
    return pool


@implementer(IAgentEndpointFactory)
class UpstreamEndpoints:
    """
    Where an upstream's requests connect, decided once per address.

    twisted.web's Agent builds a new L{HostnameEndpoint} for every request,
    even one that reuses a pooled connection, and that constructor
    IDNA-encodes the host name: a few percent of a relayed request in
    bench/. An upstream has one address, so its endpoint is built once; an
    IP address (a model server on this machine or the LAN) is connected to
    directly, with no name resolution in a thread.
    """

    _MAX = 16  # addresses per upstream: one in practice; a bound all the same

    def __init__(
        self,
        reactor: Any,
        connectTimeout: float | None,
        policy: IPolicyForHTTPS | None = None,
    ) -> None:
        self._reactor = reactor
        self._timeout = connectTimeout
        self._policy = policy or BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= self._MAX:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self._make(uri)
        return endpoint

    def _make(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        timeout = 30 if self._timeout is None else self._timeout
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port, timeout=timeout)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=timeout)
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint


def makeAgent(reactor: Any, pool: HTTPConnectionPool, connectTimeout: float | None) -> IAgent:
    """An Agent for one upstream: its endpoints made once, its connections pooled."""
    return Agent.usingEndpointFactory(  # type: ignore[no-any-return]
        reactor, UpstreamEndpoints(reactor, connectTimeout), pool=pool
    )


class Upstream:
    """
    One configured model server.

    @ivar config: its L{UpstreamConfig}.
    @ivar name: the config name, used in metrics and logs.
    @ivar refused: the request parameters it refused, learned from its
        answers (L{codexgw.upstream.learned}).
    """

    def __init__(
        self,
        config: UpstreamConfig,
        reactor: IReactorTime,
        pool: HTTPConnectionPool,
        agent: IAgent | None = None,
        profile: ProviderProfile | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._reactor = reactor
        if agent is None:
            agent = makeAgent(reactor, pool, config.timeouts.connect)
        # The Agent itself, not treq's HTTPClient: treq wraps every request in
        # a CookieAgent with one jar per client and a RedirectAgent. A relay
        # shared by many users must neither replay one user's upstream cookies
        # on another's request nor follow redirects on their behalf, and the
        # jar's header parsing was a sixth of the per-request cost in bench/.
        # Bodies are read by protocols (relays, L{readCapped}).
        self._agent = agent
        self.profile = profile or BUILTIN["openai"]
        headers: dict[bytes, list[bytes]] = {b"user-agent": [USER_AGENT]}
        for key, value in {**self.profile.headers, **config.headers}.items():
            headers[key.lower().encode("latin-1")] = [value.encode("latin-1")]
        if config.api_key:
            auth = self.profile.auth_prefix + config.api_key
            headers[self.profile.auth_header.lower().encode()] = [auth.encode("latin-1")]
        self._baseHeaders = headers
        self._azure = self.profile.url_layout == AZURE_LAYOUT
        self.base_url = config.base_url
        # The config's retries block is the policy itself (one type, declared once).
        self.policy: RetryPolicy = config.retries
        self.refused = RefusedParams(self.name)

    def rebind(self, base_url: str) -> None:
        """Point at another address (the demo model's port is known only once bound)."""
        self.base_url = base_url.rstrip("/")

    def url(self, path: str, model: str | None = None) -> str:
        """
        Where C{path} lives: after the base URL, or for Azure's deployment
        layout under C{/openai/deployments/{model}} with the C{api-version}.
        """
        if self._azure and model:
            return (
                f"{self.base_url}/openai/deployments/{quote(model, safe='')}{path}"
                f"?api-version={self.profile.api_version}"
            )
        return self.base_url + path

    def request(
        self,
        method: bytes,
        path: str,
        body: bytes | None = None,
        headers: dict[bytes, list[bytes]] | None = None,
        timeout: float | None = -1.0,
        model: str | None = None,
    ) -> Deferred[IResponse]:
        """
        Send a request and fire with the response as soon as its headers
        arrive; the body is left for the caller to stream.

        @param path: appended to C{base_url}, e.g. C{/chat/completions}.
        @param timeout: seconds to wait for the response headers; the
            upstream's C{first_byte} timeout when left at -1.
        @return: fires with the response, or fails with L{UpstreamTimeout} or
            L{UpstreamUnavailable}. Cancelling it aborts the upstream request.
        """
        allHeaders = dict(self._baseHeaders)
        if headers:
            allHeaders.update(headers)
        if body is not None:
            allHeaders.setdefault(b"content-type", [b"application/json"])
        if timeout == -1.0:
            timeout = self.config.timeouts.first_byte
        d: Deferred[IResponse] = self._agent.request(
            method,
            self.url(path, model).encode("ascii"),
            Headers(allHeaders),
            BytesProducer(body) if body is not None else None,
        )
        if timeout:

            def timedOut(result: IResponse | Failure, seconds: float) -> IResponse | Failure:
                # Only our own timer: a caller's cancel stays a cancellation.
                if isinstance(result, Failure):
                    return Failure(
                        UpstreamTimeout(
                            f"upstream {self.name!r} did not answer within {seconds:g} s"
                        )
                    )
                return result

            d = d.addTimeout(timeout, self._reactor, onTimeoutCancel=timedOut)

        def translate(failure: Failure) -> Failure:
            if failure.check(GatewayError):
                return failure
            if isCancellation(failure):
                # Our caller cancelled (the client left): not the upstream's
                # fault, so nothing may retry, fail over or count it.
                return Failure(CancelledError())
            if failure.check(ierror.TimeoutError):
                return Failure(
                    UpstreamTimeout(f"upstream {self.name!r} did not accept a connection in time")
                )
            return Failure(
                UpstreamUnavailable(
                    f"upstream {self.name!r} could not be reached: {describe(failure)}"
                )
            )

        d.addErrback(translate)
        return d

    def send(
        self,
        method: bytes,
        path: str,
        body: bytes | None,
        headers: dict[bytes, list[bytes]] | None,
        onRetry: Any = None,
        model: str | None = None,
    ) -> Deferred[IResponse]:
        """
        L{request}, retried per the upstream's policy while nothing has been
        relayed; for requests a client is waiting on.
        """
        policy = self.policy

        def attempt() -> Deferred[IResponse]:
            return self.request(method, path, body, headers, model=model)

        if policy.max_attempts <= 1:
            return attempt()
        return Deferred.fromCoroutine(withRetries(attempt, policy, self._reactor, onRetry))

    def get(self, path: str, timeout: float | None = None) -> Deferred[IResponse]:
        return self.request(b"GET", path, timeout=timeout)


def isCancellation(failure: Failure) -> bool:
    """
    Whether C{failure} is how twisted.web's Agent reports a request that its
    caller cancelled: C{CancelledError} itself, C{ConnectingCancelledError}
    while connecting, or C{ResponseNeverReceived([CancelledError])} (and its
    siblings) once the request was sent.
    """
    if failure.check(CancelledError, ierror.ConnectingCancelledError):
        return True
    if isinstance(failure.value, _WrapperException):
        return any(isCancellation(reason) for reason in failure.value.reasons)
    return False


def describe(failure: Failure) -> str:
    """A short, secret-free description of a connection failure."""
    if failure.check(ResponseNeverReceived):
        reasons = getattr(failure.value, "reasons", [])
        if reasons:
            return describe(reasons[0])
        return "connection closed before a response"
    if failure.check(ierror.ConnectionRefusedError):
        return "connection refused"
    if failure.check(ierror.TimeoutError):
        return "connect timed out"
    if failure.check(ierror.DNSLookupError):
        return "host name not found"
    if failure.check(ierror.ConnectionLost, ierror.ConnectionDone):
        return "connection lost"
    return failure.type.__name__ if failure.type else "error"
