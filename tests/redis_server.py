"""
A real redis-server for the tests that need one: installed by
scripts/install-redis if missing, started on a free loopback port in a
temporary directory, stopped by the test's cleanup.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any

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


class RedisServer:
    """One redis-server process; C{url} points at it."""

    def __init__(self, test: Any) -> None:
        self.binary = redisServerBinary()
        self.dir = test.mktemp()
        os.makedirs(self.dir)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.start()
        test.addCleanup(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):  # a port picked free can be taken before we bind it
            if not self.port or self.process is not None:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    self.port = s.getsockname()[1]
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return
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
        process = None
        self.process = process
        self.start()
