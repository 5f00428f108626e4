# -*- test-case-name: tests.test_embedding -*-
"""
codexgw: a Twisted gateway between OpenAI's Responses API and Chat Completions.

The names users may rely on when embedding the gateway in their own Twisted
program are re-exported here; everything else is private to its module
(docs/embedding.md shows both ways to embed it)::

    from codexgw import GatewayService, load

    service = GatewayService(load(None), listen=None)
    service.setServiceParent(application)
    root.putChild(b"llm", service.resource)

They are imported on first use, not with the package: every
C{import codexgw.<anything>} runs this file first, and the operator command
(C{python -m codexgw}), the pure dialects and the demo server must not pay
for (or depend on) the whole gateway being built from L{codexgw.service}.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from codexgw._version import __version__

if TYPE_CHECKING:
    from codexgw.config import Config, ConfigError, load, parse
    from codexgw.service import (
        Gateway,
        GatewayService,
        makeGatewayResource,
        makeGatewayService,
    )

# Each public name and the module that defines it.
_EXPORTS = {
    "Gateway": "codexgw.service",
    "GatewayService": "codexgw.service",
    "makeGatewayResource": "codexgw.service",
    "makeGatewayService": "codexgw.service",
    "Config": "codexgw.config",
    "ConfigError": "codexgw.config",
    "load": "codexgw.config",
    "parse": "codexgw.config",
}

__all__ = [
    "Config",
    "ConfigError",
    "Gateway",
    "GatewayService",
    "__version__",
    "load",
    "makeGatewayResource",
    "makeGatewayService",
    "parse",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cached: later lookups are plain attribute reads.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
