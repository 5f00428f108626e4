# -*- test-case-name: tests.stream.test_adapters -*-
"""
The contracts between a relay and what it drives, written down as
C{zope.interface}s the way twisted.web writes C{IBodyProducer}: the relay
calls nothing that is not here, and an implementation says so with
C{@implementer}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from codexgw.errors import GatewayError
from codexgw.stream.outcomes import Outcome
from codexgw.stream.sse import SSEEvent

# mypy-zope reads the signatures; methods of an Interface take no self.
# ruff: noqa: N805


class IEventAdapter(Interface):
    """
    What an L{codexgw.stream.relay.EventRelay} drives: parsed upstream SSE
    events in, the bytes the client is sent out.
    """

    done = Attribute("True once the answer has ended (a terminal event was made).")
    failed = Attribute("True when the answer ended in a failure inside a 200 stream.")
    usage = Attribute("The upstream's token usage as a dict, or None if it said none.")

    def start() -> bytes:
        """What opens the client's answer (written once the upstream answers)."""

    def event(event: SSEEvent) -> bytes:
        """
        Translate one upstream SSE event.

        @raise Exception: the event is not what the upstream's dialect sends;
            the relay then fails the stream with L{end}.
        """

    def keepalive() -> bytes:
        """Something that keeps an idle client from timing out (may be empty)."""

    def end(outcome: Outcome, message: str) -> bytes:
        """
        The upstream ended (C{outcome} a L{codexgw.stream.outcomes.Outcome}):
        what closes the client's answer properly.
        """


class IAnswer(Interface):
    """
    The part of an exchange a stream adapter may touch: the status of an
    answer not yet begun. The exchange owns the rest.
    """

    def respond(code: int, contentType: bytes) -> None:
        """Set the answer's status and content type (before its first byte)."""

    def respondWithError(code: int, contentType: bytes) -> None:
        """
        The answer, not yet begun, is an error after all (a whole answer
        whose upstream failed): counted as one, whatever the stream did.
        """

    def renderError(error: GatewayError) -> tuple[int, bytes]:
        """
        The status and body C{error} is answered with, in the client's
        dialect's shape (OpenAI's, or Anthropic's on the Messages routes).
        """


__all__ = ["IAnswer", "IEventAdapter"]
