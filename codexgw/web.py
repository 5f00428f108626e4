# -*- test-case-name: tests.test_service -*-
"""
The twisted.web L{Site} the gateway (and its demo model) serve with.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource
from twisted.web.server import Site


class GatewaySite(Site):
    """
    A Site without twisted.web's own access log (the gateway writes one
    structured line per request instead) and without tracebacks in bodies.
    """

    noisy = False
    displayTracebacks = False

    def __init__(self, resource: IResource, reactor: Any = None) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]

    def log(self, request: Any) -> None:
        pass
