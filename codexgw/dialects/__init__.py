"""
The pure middle: the Responses hub and one spoke per other dialect. Bytes or
dicts in, events out; no reactor, no I/O, nothing of the gateway but its
errors. L{SPOKES} names every spoke by its C{wire_api}.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from codexgw.dialects.spoke import Spoke

HUB = "responses"
"""The hub's C{wire_api}: a pair of it and a spoke is one bridge; it with
itself (or a spoke with itself) is a raw pass-through."""


class Spokes(Mapping[str, Spoke]):
    """
    The spokes by C{wire_api}, each imported the first time it is asked
    for: a gateway that meets no Messages client or upstream never loads
    the Anthropic dialect (a third of a megabyte of its idle memory).

    @param where: each spoke's C{module:attribute}.
    """

    def __init__(self, where: Mapping[str, str]) -> None:
        self._where = dict(where)
        self._loaded: dict[str, Spoke] = {}

    def __getitem__(self, name: str) -> Spoke:
        spoke = self._loaded.get(name)
        if spoke is None:
            module, _, attribute = self._where[name].partition(":")
            spoke = self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return spoke

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


SPOKES = Spokes(
    {"chat": "codexgw.dialects.chat:CHAT", "messages": "codexgw.dialects.messages:MESSAGES"}
)

__all__ = ["HUB", "SPOKES", "Spoke", "Spokes"]
