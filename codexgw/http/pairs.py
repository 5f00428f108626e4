# -*- test-case-name: tests.http.test_pairs,tests.http.test_messages_bridge -*-
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

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from codexgw.dialects import HUB, Spoke
from codexgw.http.bridge import Bridge
from codexgw.http.reverse import ReverseBridge
from codexgw.stream.adapters import FRAMINGS
from codexgw.upstream.client import Upstream

Pair = tuple[str, str]
"""(client dialect, upstream C{wire_api})."""


def _messagesOptions(upstream: Upstream) -> dict[str, Any]:
    cap = upstream.profile.default_max_tokens
    return {"default_max_tokens": cap} if cap else {}


def upstreamOptions(name: str) -> dict[str, Any]:
    """What a Bridge onto an upstream of dialect C{name} needs beside its spoke."""
    if name == "messages":
        # The Messages route's header tables, with the rest of it, only
        # once a Messages pair is wanted.
        from codexgw.http.messages import DEFAULTS, FORWARDED

        return dict(
            forwardHeaders=FORWARDED, defaultHeaders=DEFAULTS, requestOptions=_messagesOptions
        )
    return {}


EARLY_START = frozenset({"messages"})
"""Client dialects whose streams from a Responses upstream start, and are
kept alive with the dialect's own keep-alive events, while the upstream has
not answered (Claude Code waits on its C{ping}s)."""


class Made(Mapping[Any, Any]):
    """
    One value a key of C{keys}, made by C{make} the first time it is asked
    for, then kept: a dialect's bridges and compactor exist, and its spoke
    is imported, only once a call needs them.
    """

    def __init__(self, keys: Iterable[Any], make: Callable[[Any], Any]) -> None:
        self._keys = tuple(keys)
        self._make = make
        self._made: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        if key not in self._made:
            if key not in self._keys:
                raise KeyError(key)
            self._made[key] = self._make(key)
        return self._made[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class Pairs(Made):
    """
    The bridge of every pair of distinct dialects among the hub and the
    spokes whose client side has a wire framing (a L{Made}: each bridge,
    and its spokes, only once asked for).

    @param bridge: makes a L{Bridge} given its spoke and options (the
        shared collaborators bound already).
    @param reverse: makes a L{ReverseBridge} given its spoke, framing and
        C{early} (whether to start streams early, L{EARLY_START}).
    """

    def __init__(
        self,
        spokes: Mapping[str, Spoke],
        bridge: Callable[..., Bridge],
        reverse: Callable[..., ReverseBridge],
    ) -> None:
        self._spokes = spokes
        self._bridge = bridge
        self._reverse = reverse
        # The pairs are known from the names alone: nothing is imported yet.
        keys: list[Pair] = []
        for name in spokes:
            keys.append((HUB, name))
            if name in FRAMINGS:
                keys.append((name, HUB))
            keys += [(c, name) for c in spokes if c != name and c in FRAMINGS]
        super().__init__(keys, lambda pair: self._pair(*pair))

    def _pair(self, client: str, upstream: str) -> Bridge | ReverseBridge:
        if client == HUB:
            return self._bridge(spoke=self._spokes[upstream], **upstreamOptions(upstream))
        if upstream == HUB:
            return self._reverse(
                spoke=self._spokes[client], framing=FRAMINGS[client], early=client in EARLY_START
            )
        return self._bridge(
            spoke=self._spokes[upstream],
            client=self._spokes[client],
            framing=FRAMINGS[client],
            **upstreamOptions(upstream),
        )


def everyPair(
    spokes: Mapping[str, Spoke],
    bridge: Callable[..., Bridge],
    reverse: Callable[..., ReverseBridge],
) -> Pairs:
    """The bridges of every pair of dialects (see L{Pairs}), made as asked for."""
    return Pairs(spokes, bridge, reverse)


__all__ = ["EARLY_START", "Made", "Pair", "Pairs", "everyPair", "upstreamOptions"]
