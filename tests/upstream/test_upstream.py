"""
Where upstream requests connect: endpoints are made once per address, IP
addresses skip name resolution, and C{https} upstreams speak verified TLS
(against a real TLS server on loopback, with a certificate made here).
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from codexgw.config import UpstreamConfig
from codexgw.errors import UpstreamTimeout, UpstreamUnavailable
from codexgw.http.site import GatewaySite
from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream, UpstreamEndpoints, makeAgent, makePool
from tests.fakes.agent import FakeAgent, FakeResponse
from tests.fakes.dialects import OPENAI_LIKE, DialectUpstream
from tests.integration.test_integration import until


class EndpointTests(SynchronousTestCase):
    def endpoint(self, url: bytes) -> Any:
        return UpstreamEndpoints(MemoryReactorClock(), 5).endpointForURI(URI.fromBytes(url))

    def test_ip_addresses_connect_directly_and_names_are_resolved(self) -> None:
        self.assertIsInstance(self.endpoint(b"http://127.0.0.1:9000/v1"), TCP4ClientEndpoint)
        self.assertIsInstance(self.endpoint(b"http://[::1]:9000/v1"), TCP6ClientEndpoint)
        self.assertIsInstance(self.endpoint(b"http://models.internal:9000/v1"), HostnameEndpoint)

    def test_an_address_gets_one_endpoint_for_all_its_requests(self) -> None:
        endpoints = UpstreamEndpoints(MemoryReactorClock(), 5)
        first = endpoints.endpointForURI(URI.fromBytes(b"https://api.example/v1/chat/completions"))
        again = endpoints.endpointForURI(URI.fromBytes(b"https://api.example/v1/models"))
        other = endpoints.endpointForURI(URI.fromBytes(b"https://api.example:8443/v1/models"))
        self.assertIs(first, again)
        self.assertIsNot(first, other)


def _certificate(host: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for C{host} (with the subjectAltName TLS checks)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    keyPem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem, keyPem


@implementer(IPolicyForHTTPS)
class FirstByteTimeoutTests(SynchronousTestCase):
    """The first-byte timer tells its own expiry from a caller's cancel."""

    def upstream(self) -> tuple[Upstream, FakeAgent, Clock]:
        clock = Clock()
        agent = FakeAgent()
        config = UpstreamConfig(name="main", base_url="http://127.0.0.1:9/v1")
        return Upstream(config, clock, makePool(clock), agent), agent, clock

    def test_no_headers_in_time_is_an_upstream_timeout(self) -> None:
        upstream, agent, clock = self.upstream()
        d = upstream.request(b"GET", "/models", timeout=3)
        clock.advance(3)
        self.assertTrue(agent.requests[0].cancelled)
        failure = self.failureResultOf(d, UpstreamTimeout)
        self.assertEqual(str(failure.value), "upstream 'main' did not answer within 3 s")

    def test_a_callers_cancel_is_a_cancellation_not_a_timeout(self) -> None:
        upstream, agent, clock = self.upstream()
        d = upstream.request(b"GET", "/models", timeout=3)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_an_answer_in_time_stops_the_timer(self) -> None:
        upstream, agent, clock = self.upstream()
        d = upstream.request(b"GET", "/models", timeout=3)
        response = FakeResponse(200, {}, 0)
        agent.requests[0].deferred.callback(response)
        self.assertIs(self.successResultOf(d), response)
        self.assertEqual(clock.getDelayedCalls(), [])


class _Trusting:
    def __init__(self, authority: ssl.Certificate) -> None:
        self.authority = authority

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self.authority)


class TLSUpstreamTests(TestCase):
    async def test_an_https_upstream_is_spoken_to_over_verified_tls(self) -> None:
        pem, keyPem = _certificate("localhost")
        server = ssl.PrivateCertificate.loadPEM(pem + keyPem)
        fake = DialectUpstream(OPENAI_LIKE)
        factory = WrappingFactory(GatewaySite(fake))
        port = reactor.listenSSL(0, factory, server.options(), interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            for protocol in list(factory.protocols):
                protocol.transport.abortConnection()
            await until(lambda: not factory.protocols, timeout=2)

        self.addCleanup(stop)
        base = f"https://localhost:{port.getHost().port}/v1"

        def pool() -> Any:
            # One each: a pooled connection verified for one upstream must
            # not stand in for another's handshake.
            made = makePool(reactor)
            self.addCleanup(made.closeCachedConnections)
            return made

        def upstream(authority: ssl.Certificate) -> Upstream:
            from twisted.web.client import Agent

            connections = pool()
            agent = Agent.usingEndpointFactory(
                reactor, UpstreamEndpoints(reactor, 5, _Trusting(authority)), pool=connections
            )
            config = UpstreamConfig(name="tls", base_url=base)
            return Upstream(config, reactor, connections, agent=agent)

        trusted = upstream(ssl.Certificate.loadPEM(pem))
        response = await trusted.get("/models", timeout=5)
        self.assertEqual(response.code, 200)
        self.assertIn(b"gpt-fake", await readCapped(response))

        stranger = ssl.Certificate.loadPEM(_certificate("localhost")[0])
        with self.assertRaises(UpstreamUnavailable):
            await upstream(stranger).get("/models", timeout=5)

        # What the gateway itself uses trusts the system's authorities only:
        # a self-signed upstream is refused, never spoken to in the clear.
        connections = pool()
        default = Upstream(
            UpstreamConfig(name="tls", base_url=base),
            reactor,
            connections,
            agent=makeAgent(reactor, connections, 5),
        )
        with self.assertRaises(UpstreamUnavailable):
            await default.get("/models", timeout=5)
        self.assertEqual(fake.listed, 1, "no request crossed an unverified connection")
