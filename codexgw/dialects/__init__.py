"""
The pure middle: the Responses hub and one spoke per other dialect. Bytes or
dicts in, events out; no reactor, no I/O, nothing of the gateway but its
errors. L{SPOKES} names every spoke by its C{wire_api}.
"""

from codexgw.dialects.chat import CHAT
from codexgw.dialects.messages import MESSAGES
from codexgw.dialects.spoke import Spoke

HUB = "responses"
"""The hub's C{wire_api}: a pair of it and a spoke is one bridge; it with
itself (or a spoke with itself) is a raw pass-through."""

SPOKES: dict[str, Spoke] = {CHAT.name: CHAT, MESSAGES.name: MESSAGES}

__all__ = ["HUB", "SPOKES", "Spoke"]
