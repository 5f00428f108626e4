# -*- test-case-name: tests.dialects.test_spokes -*-
"""
A spoke of the hub, as one value: the five pure parts a dialect brings.

Responses is the hub. A client of another dialect reaches a Responses
upstream through its spoke's request to the hub and stream from the hub; a
Responses client reaches an upstream of another dialect through that
spoke's request from the hub and stream to the hub. Adding a dialect is
adding a package under C{codexgw.dialects} that builds one L{Spoke}, plus a
provider profile for its upstreams; the bridges in C{codexgw.http} take a
spoke and need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from codexgw.dialects.interfaces import IStreamTranslator
from codexgw.errors import GatewayError


@attrs.frozen
class Spoke:
    """
    @ivar name: the dialect's C{wire_api} name in config (C{chat}).
    @ivar path: where its upstreams take a request, after the base URL.
    @ivar requestToHub: a client body of this dialect to the hub's request
        (an object with C{body}, C{client_stream}, C{dropped_fields}).
    @ivar streamFromHub: makes the translator of hub events to this
        dialect's stream, given what L{requestToHub} returned.
    @ivar requestFromHub: a hub request body to this dialect's, for one
        upstream's quirks (C{body}, C{client_stream}, C{dropped_tools},
        C{dropped_fields}).
    @ivar streamToHub: makes the translator of this dialect's stream to
        hub events, given what L{requestFromHub} returned.
    @ivar errorToHub: an error answer of this dialect's upstreams (status,
        body) as the gateway's error, status kept.
    @ivar wholeToEvent: one whole answer of this dialect (some upstreams
        answer C{stream: true} with plain JSON) as one stream event, so the
        stream translator needs no second code path.
    """

    name: str
    path: str
    requestToHub: Callable[..., Any]
    streamFromHub: Callable[[Any], IStreamTranslator]
    requestFromHub: Callable[..., Any]
    streamToHub: Callable[..., IStreamTranslator]
    errorToHub: Callable[[int, bytes], GatewayError]
    wholeToEvent: Callable[[object], dict[str, Any]]


__all__ = ["Spoke"]
