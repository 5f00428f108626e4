"""
Embedding the gateway in someone else's Twisted program (docs/embedding.md):
the names C{codexgw} re-exports for it, and the runnable examples in
docs/examples/, each run as a real process that a real client talks to
through the host's own site, then stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import codexgw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")
TIMEOUT = 30.0
"""Seconds an example gets to start, to answer, and to stop."""

LISTENING = re.compile(rb"listening on (\d+)")


class ExportTests(SynchronousTestCase):
    """C{codexgw} re-exports the embedding API, without importing it with the package."""

    def test_every_exported_name_is_the_defining_modules_own(self) -> None:
        from codexgw import config, service

        for name in codexgw.__all__:
            value = getattr(codexgw, name)
            if name == "__version__":
                self.assertIsInstance(value, str)
                continue
            module = config if name in ("Config", "ConfigError", "load", "parse") else service
            self.assertIs(value, getattr(module, name), name)

    def test_embedding_api_is_exported(self) -> None:
        self.assertTrue(
            {"Gateway", "GatewayService", "makeGatewayResource", "Config", "load"}
            <= set(codexgw.__all__)
        )

    def test_unknown_name_is_an_attribute_error(self) -> None:
        with self.assertRaises(AttributeError):
            codexgw.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018

    def test_submodules_still_import_from_the_package(self) -> None:
        from codexgw import config, tap

        self.assertEqual(config.__name__, "codexgw.config")
        self.assertEqual(tap.__name__, "codexgw.tap")

    def test_importing_the_package_builds_nothing(self) -> None:
        """The operator command and the pure dialects do not load the gateway's wiring."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, codexgw, codexgw.dialects.chat.stream_to_hub; "
                "print(sorted(m for m in ('codexgw.service', 'codexgw.http') "
                "if m in sys.modules))",
            ],
            env=_environ(),
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        self.assertEqual(out.stdout.strip(), b"[]", out.stderr)


def _environ(**extra: str) -> dict[str, str]:
    """The test's environment minus any codexgw settings, with this tree first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Example:
    """One example running as a process: its port, and a blocking client of it."""

    def __init__(self, case: SynchronousTestCase, argv: list[str], **env: str) -> None:
        self.case = case
        cwd = case.mktemp()
        os.makedirs(cwd)  # the gateway's response store goes here, not in the tree
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_environ(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Unbuffered: the port is read with select() and readline(), and
            # a buffered pipe would hide a second line that came in one read.
            bufsize=0,
        )
        case.addCleanup(self._kill)
        self.output = b""
        self.port = self._waitForPort()

    def _waitForPort(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                self.output += line
                m = LISTENING.search(line)
                if m:
                    return int(m.group(1))
            if self.process.poll() is not None:
                break
        self._kill()
        _, err = self.process.communicate(timeout=TIMEOUT)
        self.case.fail(f"the example printed no port; stdout {self.output!r}, stderr {err!r}")

    def get(self, path: str) -> tuple[int, bytes]:
        return self.send(urllib.request.Request(self.url(path)))

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        return self.send(request)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> tuple[int, bytes]:
        """SIGTERM, and the exit status and standard error once it has exited."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=TIMEOUT)
        self.output += out
        return self.process.returncode, err

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=TIMEOUT)


class ExampleTests(SynchronousTestCase):
    """Each example in docs/examples serves the demo model under /llm of its host's site."""

    def run_example(self, name: str, sibling: str, siblingBody: bytes) -> Example:
        example = Example(self, [sys.executable, os.path.join(EXAMPLES, name), "0"])
        self.assertServes(example, sibling, siblingBody)
        return example

    def assertServes(self, example: Example, sibling: str, siblingBody: bytes) -> None:
        status, body = example.post(
            "/llm/v1/chat/completions",
            {"model": "codexgw-demo", "messages": [{"role": "user", "content": "embedded"}]},
        )
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["object"], "chat.completion")
        self.assertIn("You said: embedded", answer["choices"][0]["message"]["content"])

        status, body = example.post(
            "/llm/v1/responses", {"model": "codexgw-demo", "input": "bridged", "stream": True}
        )
        self.assertEqual(status, 200, body)
        self.assertIn(b"event: response.completed", body)
        self.assertIn(b"You said: bridged", body)

        status, body = example.get("/llm/health/ready")
        self.assertEqual((status, json.loads(body)["status"]), (200, "ok"), body)

        # The host's own resource, beside the gateway, is the host's.
        self.assertEqual(example.get(sibling), (200, siblingBody))
        # And the gateway answers only below its mount point.
        self.assertEqual(example.get("/v1/models")[0], 404)

    def assertStopsCleanly(self, example: Example, statuses: tuple[int, ...] = (0,)) -> bytes:
        status, err = example.stop()
        self.assertIn(status, statuses, err)
        self.assertNotIn(b"Traceback", err)
        self.assertNotIn(b"Unhandled", err)
        return err

    def test_resource_under_a_hosts_site(self) -> None:
        example = self.run_example("embed_resource.py", "/hello", b"hello from the host\n")
        self.assertStopsCleanly(example)

    def test_service_under_a_hosts_application(self) -> None:
        example = self.run_example("embed_service.py", "/status", b"host is up\n")
        err = self.assertStopsCleanly(example)
        # The host's stopService drained the gateway before it closed.
        self.assertIn(b"shutting down", err.lower())

    def test_service_example_is_a_twistd_application(self) -> None:
        # Twisted installs twistd beside the interpreter of its environment.
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.assertTrue(os.path.exists(twistd), f"no twistd beside {sys.executable}")
        script = os.path.join(EXAMPLES, "embed_service.py")
        example = Example(self, [twistd, "-n", "--pidfile=", "-y", script], PORT="0")
        self.assertServes(example, "/status", b"host is up\n")
        # twistd re-raises SIGTERM once it has stopped the application.
        self.assertStopsCleanly(example, (0, -signal.SIGTERM))

    def test_every_example_is_run_here(self) -> None:
        run = {"embed_resource.py", "embed_service.py"}
        self.assertEqual(sorted(set(os.listdir(EXAMPLES)) - run - {"__pycache__"}), [])
