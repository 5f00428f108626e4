# -*- test-case-name: tests.http.test_stored -*-
"""
A response store opened on first use: a gateway that never stores a turn
creates no SQLite file and opens no Redis connection for it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from codexgw.state.store import IResponseStore, StoredResponse


@implementer(IResponseStore)
class LazyStore:
    """Opens the store C{open} makes at the first call that needs it."""

    def __init__(self, open: Callable[[], IResponseStore]) -> None:
        self._open = open
        self._store: IResponseStore | None = None

    @property
    def opened(self) -> IResponseStore | None:
        """The store, if it was opened."""
        return self._store

    def _get(self) -> IResponseStore:
        if self._store is None:
            self._store = self._open()
        return self._store

    def save(self, record: StoredResponse) -> Deferred[None]:
        return self._get().save(record)

    def get(self, id: str) -> Deferred[StoredResponse | None]:
        return self._get().get(id)

    def delete(self, id: str) -> Deferred[bool]:
        return self._get().delete(id)

    def close(self) -> Deferred[None]:
        if self._store is None:
            return succeed(None)
        return self._store.close()
