# -*- test-case-name: tests.test_deploy -*-
"""
C{twistd codexgw-demo}: the offline demo model, alone, as a Chat Completions
upstream on an endpoint; the command-line options and the service they make.

    twistd -n codexgw-demo --listen tcp:8081:interface=127.0.0.1

It is the same L{DemoService} the gateway runs as a child on a private
loopback port when its config names the demo upstream. It is not a real LLM
and has no authentication: never expose it beyond a test network.
"""

from __future__ import annotations

from twisted.application.service import IService

from codexgw.demo import server
from codexgw.demo.model import DemoService

DEFAULT_LISTEN = "tcp:8081:interface=127.0.0.1"


class Options(server.Options):
    """The standalone server's options (C{python -m codexgw.demo.server}), its own default."""

    optParameters = [
        [
            "listen",
            "l",
            DEFAULT_LISTEN,
            "Twisted endpoint to listen on, e.g. tcp:8081:interface=0.0.0.0.",
        ],
    ]


def makeService(options: Options) -> IService:
    """The demo model listening on C{--listen}."""
    from twisted.internet import reactor

    return DemoService(reactor, options["listen"])
