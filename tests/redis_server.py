"""
A real redis-server for the tests that need one: installed by
scripts/install-redis if missing, started on a free loopback port in a
temporary directory, stopped by the test's cleanup.

It can require a password, have ACL users, and listen with TLS only (a
throwaway CA and a server certificate for 127.0.0.1 and localhost, made
with C{cryptography} the way tests/upstream/test_upstream.py does).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def redisServerBinary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    out = subprocess.run(
        [os.path.join(REPO, "scripts", "install-redis")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out.stdout.strip().splitlines()[-1]


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ThrowawayCA:
    """A CA made for one test, and server certificates it signs, as PEM files in C{dir}."""

    def __init__(self, dir: str, name: str = "codexgw test CA") -> None:
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.certFile = os.path.join(dir, "ca.pem")
        with open(self.certFile, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str = "server") -> tuple[str, str]:
        """A certificate for 127.0.0.1, ::1 and localhost: (cert file, key file)."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        certFile = os.path.join(self.dir, f"{name}.pem")
        keyFile = os.path.join(self.dir, f"{name}.key")
        with open(certFile, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(keyFile, "wb") as f:
            f.write(_pem(key))
        return certFile, keyFile


class RedisServer:
    """
    One redis-server process; C{url} points at it.

    @param password: C{requirepass}: the default user's password.
    @param users: ACL users, each C{(name, password)}, allowed everything.
    @param tls: listen with TLS only, with a certificate signed by C{ca}
        (C{ca.certFile} is what a client trusts).
    """

    def __init__(
        self,
        test: Any,
        password: str | None = None,
        users: tuple[tuple[str, str], ...] = (),
        tls: bool = False,
    ) -> None:
        self.binary = redisServerBinary()
        self.dir = os.path.abspath(test.mktemp())  # redis-server changes into it
        os.makedirs(self.dir)
        self.password = password
        self.users = users
        self.ca: ThrowawayCA | None = None
        self._tlsFiles: tuple[str, str] | None = None
        if tls:
            self.ca = ThrowawayCA(os.path.join(self.dir, "pki"))
            self._tlsFiles = self.ca.issue()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.start()
        test.addCleanup(self.stop)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.ca is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _arguments(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self.dir]
        if self._tlsFiles is not None:
            assert self.ca is not None
            cert, key = self._tlsFiles
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-ca-cert-file", self.ca.certFile, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for name, password in self.users:
            args += ["--user", name, "on", f">{password}", "~*", "&*", "+@all"]
        return args

    def _answers(self) -> bool:
        """Whether the server answers a PING (NOAUTH counts: it is up)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
            if self.ca is None:
                raw.sendall(b"PING\r\n")
                reply = raw.recv(64)
            else:
                context = ssl.create_default_context(cafile=self.ca.certFile)
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def start(self) -> None:
        for _ in range(5):  # a port picked free can be taken before we bind it
            if not self.port or self.process is not None:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    self.port = s.getsockname()[1]
            self.process = subprocess.Popen(
                self._arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if self._answers():
                        return
                except OSError:
                    pass
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def connectedClients(self) -> int:
        """
        How many client connections the server has open, not counting the
        one asking (C{INFO clients}, over a connection of its own).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
            s: Any = raw
            if self.ca is not None:
                context = ssl.create_default_context(cafile=self.ca.certFile)
                s = context.wrap_socket(raw, server_hostname="127.0.0.1")
            if self.password is not None:
                s.sendall(b"AUTH %s\r\n" % self.password.encode())
                assert s.recv(64).startswith(b"+OK")
            s.sendall(b"INFO clients\r\n")
            data = b""
            while b"connected_clients:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            for line in data.split(b"\r\n"):
                if line.startswith(b"connected_clients:"):
                    return int(line.split(b":")[1]) - 1
        raise RuntimeError("no connected_clients in INFO")
