# -*- test-case-name: tests.upstream.test_health -*-
"""
C{GET /v1/models}: what the gateway can serve.

Models come from the config where an upstream lists them, otherwise from the
upstream's own C{/models}, cached for C{models_cache_ttl} seconds. An
upstream that fails to answer keeps its last good list (or contributes
nothing) rather than failing the whole listing. Upstreams are asked
concurrently, so silent ones cost one timeout together, not one each.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, FirstError, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from codexgw.upstream.bodies import readCapped
from codexgw.upstream.client import Upstream

log = Logger()

LISTING_LIMIT = 8 * 1024 * 1024
"""The largest model list read from an upstream (OpenRouter's is under 1 MiB)."""


def _entry(model_id: str, owner: str, created: int = 0) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


class ModelCatalog:
    def __init__(
        self,
        clock: IReactorTime,
        upstreams: dict[str, Upstream],
        aliases: list[tuple[str, Upstream]],
        ttl: float,
    ) -> None:
        self._clock = clock
        self._upstreams = upstreams
        self._aliases = aliases
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def _fetch(self, upstream: Upstream) -> Deferred[list[dict[str, Any]]]:
        """
        One upstream's models: from its config or the cache, already there,
        else asked of the upstream itself.
        """
        if upstream.config.models:
            return succeed([_entry(m, upstream.name) for m in upstream.config.models])
        now = self._clock.seconds()
        cached = self._cache.get(upstream.name)
        if cached is not None and now - cached[0] < self._ttl:
            return succeed(cached[1])
        return Deferred.fromCoroutine(self._ask(upstream, now, cached))

    async def _ask(
        self,
        upstream: Upstream,
        now: float,
        cached: tuple[float, list[dict[str, Any]]] | None,
    ) -> list[dict[str, Any]]:
        try:
            response = await upstream.get("/models", timeout=10.0)
            body = await readCapped(response, LISTING_LIMIT)
            if response.code != 200:
                raise ValueError(f"HTTP {response.code}")
            data = orjson.loads(body).get("data")
            if not isinstance(data, list):
                raise ValueError("no data list")
            models = [
                _entry(str(m["id"]), upstream.name, int(m.get("created") or 0))
                for m in data
                if isinstance(m, dict) and isinstance(m.get("id"), str)
            ]
        except CancelledError:
            raise  # the client left: not the upstream's failure
        except Exception as e:
            log.warn(
                "listing models of upstream {upstream} failed: {error}",
                upstream=upstream.name,
                error=str(e) if not hasattr(e, "message") else e.message,
            )
            return cached[1] if cached else []
        self._cache[upstream.name] = (now, models)
        return models

    async def list(self) -> dict[str, Any]:
        """
        The listing: each upstream's models in config order, first of a
        name wins, then the routing aliases. Upstreams are asked at once.
        """
        try:
            lists = await gatherResults(
                [self._fetch(u) for u in self._upstreams.values()], consumeErrors=True
            )
        except FirstError as e:
            # _fetch turns every upstream failure into a list: this is a
            # cancellation (the client left), raised as itself.
            e.subFailure.raiseException()
        seen: set[str] = set()
        data: list[dict[str, Any]] = []
        for models in lists:
            for entry in models:
                if entry["id"] not in seen:
                    seen.add(entry["id"])
                    data.append(entry)
        for alias, upstream in self._aliases:
            if alias not in seen:
                seen.add(alias)
                data.append(_entry(alias, upstream.name))
        return {"object": "list", "data": data}
