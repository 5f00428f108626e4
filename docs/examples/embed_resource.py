"""
The gateway's resource mounted under C{/llm} of a host's own twisted.web site.

The host keeps its site, its other resources and its reactor; the gateway is
one child of its root. Run it, then ask the offline demo model through the
host::

    python docs/examples/embed_resource.py 8000
    curl -s localhost:8000/llm/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "codexgw-demo", "messages": [{"role": "user", "content": "hi"}]}'
    curl -s localhost:8000/hello

The port is the first argument (default 0: any free port); the one bound is
printed as C{listening on PORT}. SIGTERM (or Ctrl-C) stops the reactor, and
the gateway is drained and closed on the way out.
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from codexgw import load, makeGatewayResource


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else 0
    # The gateway logs through twisted.logger, like the host: here to stderr.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    # No file and no environment: the built-in offline demo model. A real
    # host passes its config file's path (and os.environ, for ${VAR}s).
    config = load(None, {})
    gateway_resource, gateway = makeGatewayResource(config)

    # The host's own site: its resources, with the gateway as one child.
    root = Resource()
    root.putChild(b"hello", Data(b"hello from the host\n", "text/plain"))
    root.putChild(b"llm", gateway_resource)
    site = Site(root)

    def shutdown():
        # Readiness turns 503 and new requests are refused; streams in flight
        # get 10 seconds to finish. Then the gateway's sockets are released
        # (its demo listener, its pooled upstream connections).
        return gateway.drain(10).addCallback(lambda _: gateway.close())

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)

    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    listening = endpoint.listen(site)
    listening.addCallback(lambda p: print(f"listening on {p.getHost().port}", flush=True))
    listening.addErrback(lambda f: (print(f.getErrorMessage(), file=sys.stderr), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
