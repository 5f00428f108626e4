"""
codexgw: a Twisted gateway between OpenAI's Responses API and Chat Completions.

The names users may rely on when embedding the gateway in their own Twisted
program are re-exported here; everything else is private to its module.
"""

from codexgw._version import __version__

__all__ = ["__version__"]
