"""
The gateway as a child service of a host's own application, served by the
host's own twisted.web site under C{/llm}.

C{GatewayService(config, listen=None)} listens nowhere itself: the host
mounts C{service.resource} where it likes. Because the gateway is a child of
the host's service hierarchy, the host's C{stopService} drains it (readiness
503, new requests refused, streams in flight given C{server.drain_timeout}
seconds) and then closes it, with no shutdown code of the host's own::

    python docs/examples/embed_service.py 8000
    curl -s localhost:8000/llm/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "codexgw-demo", "messages": [{"role": "user", "content": "hi"}]}'
    curl -s localhost:8000/status

The port is the first argument (default 0: any free port); the one bound is
printed as C{listening on PORT}. SIGTERM (or Ctrl-C) stops the reactor, which
stops the application's services, the gateway among them.

The same file is a twistd application (the module-level C{application}),
listening on C{$PORT} or 8000::

    twistd -n -y docs/examples/embed_service.py
"""

import os
import sys

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface import implementer

from codexgw import GatewayService, load


@implementer(IStreamServerEndpoint)
class Announced:
    """An endpoint that prints the port it bound (so a caller of port 0 can find it)."""

    def __init__(self, endpoint):
        self._endpoint = endpoint

    def listen(self, factory):
        def announce(port):
            print(f"listening on {port.getHost().port}", flush=True)
            return port

        return self._endpoint.listen(factory).addCallback(announce)


def makeApplication(port: int) -> service.Application:
    application = service.Application("host")
    host = service.IServiceCollection(application)

    # No file and no environment: the built-in offline demo model. A real
    # host passes its config file's path (and os.environ, for ${VAR}s).
    gateway = GatewayService(load(None, {}), listen=None)
    gateway.setServiceParent(host)

    # The host's own site: its resources, with the gateway as one child.
    root = Resource()
    root.putChild(b"status", Data(b"host is up\n", "text/plain"))
    root.putChild(b"llm", gateway.resource)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    StreamServerEndpointService(Announced(endpoint), Site(root)).setServiceParent(host)
    return application


if __name__ == "__main__":
    # The gateway logs through twisted.logger, like the host: here to stderr.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    # What twistd does with an application: start its services once the
    # reactor runs, stop them (and wait for that) before it shuts down.
    application = makeApplication(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    services = service.IService(application)
    reactor.callWhenRunning(services.startService)
    reactor.addSystemEventTrigger("before", "shutdown", services.stopService)
    reactor.run()
else:
    # Loaded by twistd -y.
    application = makeApplication(int(os.environ.get("PORT", "8000")))
