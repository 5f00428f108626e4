# -*- test-case-name: tests.test_service,tests.ops.test_cli -*-
"""
C{twistd codexgw}: command-line options and the service they make.
"""

from __future__ import annotations

import os
import signal
import sys

from twisted.application.service import IService, Service
from twisted.python import usage

from codexgw.config import ConfigError, load
from codexgw.service import GatewayService


class Options(usage.Options):
    synopsis = "[--config FILE] [--listen ENDPOINT] [--drain-timeout S]"
    longdesc = (
        "Serve the codexgw gateway. With no configuration it serves the built-in "
        "offline demo model on 127.0.0.1:8080; set CODEXGW_UPSTREAM_URL (and "
        "CODEXGW_UPSTREAM_API_KEY) or pass --config to use a real provider."
    )
    optParameters = [
        ["config", "c", None, "YAML configuration file (default: $CODEXGW_CONFIG, else built-in)."],
        [
            "listen",
            "l",
            None,
            "Twisted endpoint to listen on, e.g. tcp:8080:interface=127.0.0.1 "
            "(overrides the config's listen).",
        ],
        [
            "drain-timeout",
            None,
            None,
            "Seconds in-flight streams get to finish on shutdown "
            "(default: the config's server.drain_timeout, 30).",
            float,
        ],
    ]


class StopOnTerm(Service):
    """
    Makes SIGTERM an ordinary stop, so twistd exits 0 after the drain.

    twistd otherwise re-raises the signal once the reactor stops, and the
    process ends "killed by SIGTERM", which orchestrators count as a crash.
    Only the twistd plugin adds this: an embedding host keeps its own signals.
    """

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        from twisted.internet import reactor

        # After startup: the reactor installs its own handlers during it.
        reactor.addSystemEventTrigger("after", "startup", self._install)

    def _install(self) -> None:
        signal.signal(signal.SIGTERM, self._onTerm)

    def _onTerm(self, signum: int, frame: object) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]


def makeService(options: Options) -> IService:
    environ = dict(os.environ)
    if options["listen"]:
        # Through validation, not around it: whether the gateway may run
        # without keys depends on where it listens.
        environ["CODEXGW_LISTEN"] = options["listen"]
    try:
        config = load(options["config"], environ)
    except ConfigError as e:
        # twistd would print a traceback; an operator needs the problems.
        sys.stderr.write(f"codexgw: {e}\n")
        raise SystemExit(os.EX_CONFIG) from None
    service = GatewayService(config, drainTimeout=options["drain-timeout"])
    StopOnTerm().setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
