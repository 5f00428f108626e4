# -*- test-case-name: tests.test_config -*-
"""
Configuration: YAML with C{${ENV}} interpolation and environment overrides,
validated once at start into frozen value objects.

Every key is declared once, in L{codexgw.config.schema} (its metadata's
vocabulary is L{codexgw.config.meta}); structuring with cattrs
(L{codexgw.config.structure}), the key list, defaults and environment
variables (L{codexgw.config.reference}) derive from it;
L{codexgw.config.load} reads a file and L{codexgw.config.checks} checks what
spans keys. Every problem is reported with the file,
the dotted key and what was expected, all at once. This module re-exports
what the rest of the gateway uses.
"""

from __future__ import annotations

from codexgw.config.keys import ApiKey, Limits, digest
from codexgw.config.load import load, parse
from codexgw.config.problems import ConfigError, Problem
from codexgw.config.reference import ENVIRONMENT, SECTIONS, defaults, keyPaths
from codexgw.config.schema import (
    DEFAULT_LISTEN,
    DEMO_MODEL,
    DEMO_UPSTREAM,
    WIRE_APIS,
    CodexModel,
    Config,
    CorsConfig,
    ModelRoute,
    RateLimitConfig,
    RedisConfig,
    Retries,
    StoreConfig,
    Timeouts,
    UpstreamConfig,
    demo_upstream,
)
from codexgw.config.validators import isLoopback

KeyLimits = Limits
"""The name this package exported a key's limits by; the same type."""

__all__ = [
    "DEFAULT_LISTEN",
    "DEMO_MODEL",
    "DEMO_UPSTREAM",
    "ENVIRONMENT",
    "SECTIONS",
    "WIRE_APIS",
    "ApiKey",
    "CodexModel",
    "Config",
    "ConfigError",
    "CorsConfig",
    "KeyLimits",
    "Limits",
    "ModelRoute",
    "Problem",
    "RateLimitConfig",
    "RedisConfig",
    "Retries",
    "StoreConfig",
    "Timeouts",
    "UpstreamConfig",
    "defaults",
    "demo_upstream",
    "digest",
    "isLoopback",
    "keyPaths",
    "load",
    "parse",
]
