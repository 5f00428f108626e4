"""
The hub: the Responses API's request rules and objects.

Its error answers are OpenAI's error shape, as Chat's are, so one mapping
serves both (L{errorToGateway}).
"""

from codexgw.dialects.chat.errors import upstream_error as errorToGateway

PATH = "/responses"
"""Where a Responses upstream takes a request, after the base URL."""

__all__ = ["PATH", "errorToGateway"]
