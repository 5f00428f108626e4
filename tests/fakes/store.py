"""
A response store in a dict, for tests on a memory clock: it answers at once,
so no thread (SQLite's) or server (Redis) is needed.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from codexgw.state.store import IResponseStore, StoredResponse


@implementer(IResponseStore)
class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, StoredResponse] = {}

    def save(self, record: StoredResponse) -> Deferred[None]:
        self.records[record.id] = record
        return succeed(None)

    def get(self, id: str) -> Deferred[StoredResponse | None]:
        return succeed(self.records.get(id))

    def delete(self, id: str) -> Deferred[bool]:
        return succeed(self.records.pop(id, None) is not None)

    def close(self) -> Deferred[None]:
        return succeed(None)
