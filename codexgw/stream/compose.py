# -*- test-case-name: tests.http.test_messages_bridge -*-
"""
Two spokes met through the hub, as one stream translator.

A bridge between two dialects that are neither of them the hub (a Chat
client on a Messages upstream, a Messages client on a Chat upstream) is the
upstream spoke's stream to the hub followed by the client spoke's stream
from the hub: L{Composed} feeds each upstream event to the first and every
hub event that makes to the second, so any client spoke meets any upstream
spoke without a translator written for the pair.

Pure: it knows only L{IStreamTranslator}, so the relays and adapters drive
it like any other translator.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from codexgw.dialects.interfaces import IStreamTranslator

Events = list[dict[str, Any]]


@implementer(IStreamTranslator)
class Composed:
    """
    C{toHub} (upstream events to hub events) then C{fromHub} (hub events to
    the client's).

    @ivar toHub: the upstream spoke's stream translator.
    @ivar fromHub: the client spoke's stream translator.
    """

    def __init__(self, toHub: IStreamTranslator, fromHub: IStreamTranslator) -> None:
        self.toHub = toHub
        self.fromHub = fromHub

    def _through(self, events: list[dict[str, object]]) -> Events:
        out: Events = []
        client = self.fromHub
        for event in events:
            if client.done:
                break
            out.extend(client.feed(event))
        return out

    @property
    def done(self) -> bool:
        return bool(self.fromHub.done)

    @property
    def usage(self) -> Any:
        # The hub's usage (Responses names, cache reads included), which
        # token accounting reads whatever the client's dialect calls it.
        usage = self.toHub.usage
        return usage if isinstance(usage, dict) else self.fromHub.usage

    @property
    def failure(self) -> Any:
        return self.fromHub.failure or self.toHub.failure

    def start(self) -> Events:
        opening = self._through(self.toHub.start())
        return list(self.fromHub.start()) + opening

    def feed(self, chunk: dict[str, object]) -> Events:
        if self.done:
            return []
        return self._through(self.toHub.feed(chunk))

    def finish(self) -> Events:
        if self.done:
            return []
        out = self._through(self.toHub.finish())
        if not self.fromHub.done:
            out.extend(self.fromHub.finish())
        return out

    def fail(self, code: str, message: str) -> Events:
        if self.done:
            return []
        out = self._through(self.toHub.fail(code, message))
        if not self.fromHub.done:
            out.extend(self.fromHub.fail(code, message))
        return out

    def keepalive(self) -> Events:
        if self.done:
            return []
        # The hub's keep-alive may open the stream (response.created, which
        # a client's dialect may answer with its own opening); after that
        # the client's own keep-alive is what keeps it waiting.
        out = self._through(self.toHub.keepalive())
        return out + list(self.fromHub.keepalive())

    def answer(self) -> dict[str, object]:
        return self.fromHub.answer()


__all__ = ["Composed"]
