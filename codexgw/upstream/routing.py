# -*- test-case-name: tests.upstream.test_failover -*-
"""
Which upstreams serve a model, and under what name.

Exact names are a dict lookup (rule names, then the models upstreams list
in config); glob rules are tried in config order after that; anything else
goes to the default upstream unchanged, unless that upstream lists its
models, in which case the model does not exist here (404). Routing runs on
every request, so the common case costs one dict lookup.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from codexgw.config import Config, ModelRoute
from codexgw.errors import NotFound
from codexgw.upstream.failover import Candidates

_GLOB = frozenset("*?[")


class Router:
    """
    @param upstreams: the live upstream objects, by config name.
    """

    def __init__(self, config: Config, upstreams: dict[str, Any]) -> None:
        self._upstreams = upstreams
        self._default = Candidates([upstreams[config.default_upstream]], [])
        self._exact: dict[str, tuple[Candidates, str | None]] = {}
        self._globs: list[tuple[str, Candidates, str | None]] = []
        for rule in config.models:
            target = self._candidates(rule)
            if _GLOB.intersection(rule.match):
                self._globs.append((rule.match, target, rule.model))
            else:
                self._exact.setdefault(rule.match, (target, rule.model))
        for upstream in upstreams.values():
            for name in upstream.config.models:
                self._exact.setdefault(name, (Candidates([upstream], []), None))
        self._open = not upstreams[config.default_upstream].config.models
        self._cache: dict[str, tuple[Candidates, str]] = {}

    def _candidates(self, rule: ModelRoute) -> Candidates:
        up = self._upstreams
        return Candidates([up[n] for n in rule.pool], [up[n] for n in rule.fallbacks])

    def route(self, model: str) -> tuple[Candidates, str]:
        """The candidate upstreams for C{model} and the model name to send them."""
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        found = self._exact.get(model)
        if found is None:
            for pattern, target, rename in self._globs:
                if fnmatchcase(model, pattern):
                    found = (target, rename)
                    break
        if found is None and not self._open:
            raise NotFound(
                f"The model '{model}' does not exist or is not served by this gateway",
                param="model",
                code="model_not_found",
            )
        result = (self._default, model) if found is None else (found[0], found[1] or model)
        if len(self._cache) < 4096:
            self._cache[model] = result
        return result

    def aliases(self) -> list[tuple[str, Any]]:
        """Model names that rules make up (not globs): listed by C{/v1/models}."""
        return [(name, target.pool[0]) for name, (target, _) in self._exact.items()]
