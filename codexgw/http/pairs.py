# -*- test-case-name: tests.http.test_messages_bridge -*-
"""
Every pair of dialects, met through the hub: what serves a client of one
dialect from an upstream of another, built once from the spokes.

A Responses client reaches a spoke's upstream by L{Bridge}; a spoke's client
reaches a Responses upstream by L{ReverseBridge}; a client of one spoke
reaches an upstream of another by L{Bridge} with the client's spoke (its
request to the hub, then the upstream's from it; the stream the other way).
The same dialect on both sides is a relay and needs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from codexgw.dialects import HUB, Spoke
from codexgw.http.bridge import Bridge
from codexgw.http.messages import DEFAULTS, FORWARDED
from codexgw.http.reverse import ReverseBridge
from codexgw.stream.adapters import FRAMINGS
from codexgw.upstream.client import Upstream

Pair = tuple[str, str]
"""(client dialect, upstream C{wire_api})."""


def _messagesOptions(upstream: Upstream) -> dict[str, Any]:
    cap = upstream.profile.default_max_tokens
    return {"default_max_tokens": cap} if cap else {}


UPSTREAM_OPTIONS: dict[str, dict[str, Any]] = {
    "messages": dict(
        forwardHeaders=FORWARDED, defaultHeaders=DEFAULTS, requestOptions=_messagesOptions
    ),
}
"""What a Bridge onto an upstream of a dialect needs beside its spoke."""

EARLY_START = frozenset({"messages"})
"""Client dialects whose streams from a Responses upstream start, and are
kept alive with the dialect's own keep-alive events, while the upstream has
not answered (Claude Code waits on its C{ping}s)."""


def everyPair(
    spokes: Mapping[str, Spoke],
    bridge: Callable[..., Bridge],
    reverse: Callable[..., ReverseBridge],
) -> dict[Pair, Bridge | ReverseBridge]:
    """
    The bridge of every pair of distinct dialects among the hub and
    C{spokes} whose client side has a wire framing.

    @param bridge: makes a L{Bridge} given its spoke and options (the
        shared collaborators bound already).
    @param reverse: makes a L{ReverseBridge} given its spoke, framing and
        C{early} (whether to start streams early, L{EARLY_START}).
    """
    pairs: dict[Pair, Bridge | ReverseBridge] = {}
    for name, spoke in spokes.items():
        options = UPSTREAM_OPTIONS.get(name, {})
        pairs[(HUB, name)] = bridge(spoke=spoke, **options)
        if name in FRAMINGS:
            pairs[(name, HUB)] = reverse(
                spoke=spoke, framing=FRAMINGS[name], early=name in EARLY_START
            )
        for clientName, client in spokes.items():
            if clientName != name and clientName in FRAMINGS:
                pairs[(clientName, name)] = bridge(
                    spoke=spoke, client=client, framing=FRAMINGS[clientName], **options
                )
    return pairs


__all__ = ["EARLY_START", "UPSTREAM_OPTIONS", "Pair", "everyPair"]
