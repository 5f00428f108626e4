"""
What the tests that drive real client programs share: finding a peer the
test setup installed (or installing it on demand, so a fresh checkout needs
no extra step), and collecting a child process's output.
"""

from __future__ import annotations

import os
import subprocess

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.paths import REPO


def installed(envVar: str, script: str) -> str:
    """
    The path C{scripts/test} exported in C{envVar}, else what
    C{scripts/<script>} (idempotent, locked) prints as it installs it.
    """
    found = os.environ.get(envVar)
    if found:
        return found
    out = subprocess.run(
        [os.path.join(REPO, "scripts", script)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.stdout.strip().splitlines()[-1]


class Collect(ProcessProtocol):
    """A child's stdout and stderr, and its exit code when it ends."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", -1) or 0)
