# -*- test-case-name: tests.stream.test_adapters -*-
"""
What every spoke of the hub provides, as contracts.

Responses is the hub. A spoke is one other dialect, and it brings pure,
reactor-free parts: its request to the hub's and back, its stream to the
hub's events and back, and its errors. A bridge is a client spoke composed
with an upstream spoke through the hub; the relays drive any stream
translator through L{IStreamTranslator} without knowing the dialect.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

# ruff: noqa: N805


class IStreamTranslator(Interface):
    """
    A state machine turning one parsed upstream stream into the events (or
    chunks) of the client's dialect, one upstream event at a time.

    Each method returns the client-dialect objects to send, in order; after
    a terminal one (L{finish}, L{fail}, or an event that ends the stream)
    L{done} is true and every method returns nothing more.
    """

    done = Attribute("True once the client's stream has ended.")
    usage = Attribute("The token usage of the answer so far, as a dict, or None.")
    failure = Attribute("C{{code, message}} when the answer failed, else None.")

    def start() -> list[dict[str, object]]:
        """What opens the client's stream (nothing, for dialects without a preamble)."""

    def feed(chunk: dict[str, object]) -> list[dict[str, object]]:
        """
        One parsed upstream event.

        @raise Exception: the event has the wrong shape; the caller then
            calls L{fail}, which returns first whatever this chunk had made.
        """

    def finish() -> list[dict[str, object]]:
        """The upstream ended cleanly."""

    def fail(code: str, message: str) -> list[dict[str, object]]:
        """
        The upstream broke, timed out or erred: end the stream as failed.
        Items still streaming are abandoned, never closed as if whole.
        """

    def keepalive() -> list[dict[str, object]]:
        """Real events that keep an idle client from timing out (may be none)."""

    def answer() -> dict[str, object]:
        """Everything so far as the client dialect's one whole answer object."""


__all__ = ["IStreamTranslator"]
