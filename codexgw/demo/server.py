# -*- test-case-name: tests.test_deploy -*-
"""
The built-in offline demo model as a standalone Chat Completions server.

The gateway starts the demo itself, a child service on a private loopback
port (see L{codexgw.demo.model.DemoService}). This module serves the same
resource on an endpoint of your choosing, so that a deployment can be tried
end to end with the gateway reaching a separate upstream over the network,
as it would a real provider (C{docker-compose.yml} runs it as
C{fake-upstream})::

    python -m codexgw.demo.server --listen tcp:9000:interface=0.0.0.0

C{twistd codexgw-demo} (L{codexgw.demo.tap}) serves the same model as a
service, with twistd's logging and daemon options.

It answers C{POST /v1/chat/completions} (streamed or not) and
C{GET /v1/models} with the deterministic echo of C{codexgw-demo}. It is not
a real LLM and has no authentication: never expose it beyond a test network.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner
from twisted.protocols.policies import WrappingFactory
from twisted.python import usage

from codexgw.config import DEMO_MODEL
from codexgw.demo.model import demoResource
from codexgw.http.site import GatewaySite, closePort
from codexgw.obs.logs import textObserver

DEFAULT_LISTEN = "tcp:9000:interface=127.0.0.1"

log = Logger(namespace="codexgw.demo.server")


class Options(usage.Options):
    synopsis = "[--listen ENDPOINT]"
    longdesc = (
        "Serve the codexgw offline demo model (codexgw-demo) as a standalone "
        "Chat Completions upstream. It echoes; it is not a real LLM."
    )
    optParameters = [
        [
            "listen",
            "l",
            DEFAULT_LISTEN,
            "Twisted endpoint to listen on, e.g. tcp:9000:interface=0.0.0.0.",
        ],
    ]


class DemoUpstream:
    """
    The demo model listening on an endpoint.

    Connections are tracked so that L{stop} leaves nothing open behind it.

    @ivar port: the listening port (C{port.getHost().port} is the number
        bound, useful with C{tcp:0}).
    """

    def __init__(self, port: IListeningPort, factory: WrappingFactory) -> None:
        self.port = port
        self._factory = factory

    async def stop(self) -> None:
        """Stop listening and cut the connections still open."""
        await closePort(self.port, self._factory)


async def listen(reactor: Any, endpoint: str) -> DemoUpstream:
    """
    Serve the demo model on C{endpoint}.

    @param reactor: the reactor to listen with.
    @param endpoint: a Twisted server endpoint string
        (C{tcp:9000:interface=0.0.0.0}, C{unix:/run/demo.sock}).
    @return: the listening server, once it is bound.
    """
    factory = WrappingFactory(GatewaySite(demoResource(reactor), reactor=reactor))
    factory.noisy = False
    port: IListeningPort = await serverFromString(reactor, endpoint).listen(factory)
    return DemoUpstream(port, factory)


async def _serve(reactor: Any, endpoint: str) -> None:
    server = await listen(reactor, endpoint)
    log.info(
        "serving the offline demo model ({model}) as a Chat Completions upstream on {address}",
        model=DEMO_MODEL,
        address=server.port.getHost(),
    )
    # Until SIGTERM or SIGINT stops the reactor; react() then exits 0.
    await Deferred()


def main(argv: list[str] | None = None) -> None:
    """The C{python -m codexgw.demo.server} command line."""
    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\n{e}\n")
        raise SystemExit(2) from None
    globalLogBeginner.beginLoggingTo([textObserver()])
    react(_serve, [options["listen"]])


if __name__ == "__main__":
    main()
