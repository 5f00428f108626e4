# -*- test-case-name: tests.state.test_store -*-
"""
Stored responses, so C{previous_response_id} works against upstreams that
remember nothing (Chat Completions).

Each record holds one turn: the final response object, the input items that
turn added, the id of the turn before it, and the gateway key that made it
(only that key may see it). A conversation is rebuilt by walking the chain,
so storage grows with the turns, not with their square.

Two stores behind one interface: SQLite in a data directory (the default: no
server to run; its blocking calls run on one thread of their own, never the
reactor's) and Redis for replicas sharing state. Entries expire after a TTL;
SQLite drops expired rows a few at a time on writes, Redis by itself, so no
sweep ever stalls a request.

A store that cannot do its job (Redis away or too slow, a SQLite file that
cannot be opened, written or read) fails the call with
L{codexgw.errors.StoreUnavailable}, a 503 the client may retry: never with
the backend's own exception, which would be a gateway bug (500).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from codexgw.errors import StoreUnavailable
from codexgw.state.rediserrors import RedisError, RedisUnavailable

if TYPE_CHECKING:
    from codexgw.state.redis import RedisClient


@attrs.frozen
class StoredResponse:
    id: str
    owner: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    previous_id: str | None = None

    def dumps(self) -> bytes:
        return orjson.dumps(attrs.asdict(self))

    @classmethod
    def loads(cls, data: bytes) -> StoredResponse:
        """
        A record from its stored bytes.

        @raise StoreUnavailable: the bytes are not a record (a corrupt entry).
        """
        try:
            return cls(**orjson.loads(data))
        except (ValueError, TypeError) as e:
            raise StoreUnavailable(f"unreadable stored record: {e}") from None


class StoreFull(Exception):
    """An entry is larger than the configured cap."""


class IResponseStore(Interface):
    """
    Where bridged turns are kept. Every call fails with
    L{StoreUnavailable} when the backend cannot serve it.
    """

    def save(record: StoredResponse) -> Deferred[None]:
        """Keep C{record} for the TTL. @raise StoreFull: over the size cap."""

    def get(id: str) -> Deferred[StoredResponse | None]:
        """The record, or L{None} when unknown or expired."""

    def delete(id: str) -> Deferred[bool]:
        """Forget a record; whether it existed."""

    def close() -> Deferred[None]:
        """Release files, threads and connections."""


@implementer(IResponseStore)
class SQLiteStore:
    """
    @param path: the database file, created (with its directory) if absent.
        It is opened on the store's thread at the first call, not here: a
        file that cannot be opened (a directory not writable, a corrupt
        database) fails each call with L{StoreUnavailable}, and the next
        call tries again, so fixing the file needs no restart.
    """

    def __init__(self, reactor: Any, path: str, ttl: float, maxBytes: int) -> None:
        self.reactor = reactor
        self.path = path
        self.ttl = ttl
        self.maxBytes = maxBytes
        self._pool = ThreadPool(1, 1, name="codexgw-sqlite")
        # Daemon: a store its owner forgot to close must not keep the process alive.
        self._pool.threadFactory = functools.partial(threading.Thread, daemon=True)  # type: ignore[assignment]
        self._pool.start()
        self._closed = False
        # Used only on the pool's one thread.
        self._db: Any = None

    def _open(self) -> Any:
        """The connection, opened (and the schema made) on first use."""
        if self._db is not None:
            return self._db
        import sqlite3  # here: a gateway that stores nothing need not load it

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # WAL with synchronous=NORMAL: a commit is one append, durable
            # across a process restart (what the store promises); an fsync
            # per write halved bridged throughput in bench/.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS responses "
                "(id TEXT PRIMARY KEY, expires REAL NOT NULL, data BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)")
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _run(self, f: Any, *args: Any) -> Deferred[Any]:
        """Run C{f(db, *args)} on the store's thread; its failures are L{StoreUnavailable}."""
        import sqlite3

        def call() -> Any:
            try:
                return f(self._open(), *args)
            except (sqlite3.Error, OSError) as e:
                raise StoreUnavailable(f"SQLite {self.path}: {type(e).__name__}: {e}") from None

        return deferToThreadPool(self.reactor, self._pool, call)

    def save(self, record: StoredResponse) -> Deferred[None]:
        data = record.dumps()
        if len(data) > self.maxBytes:
            return Deferred.fromCoroutine(_raise(StoreFull(f"{len(data)} bytes")))

        def write(db: Any) -> None:
            now = time.time()
            db.execute("BEGIN")  # one transaction, so one commit per save
            try:
                db.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                    (record.id, now + self.ttl, data),
                )
                db.execute(
                    "DELETE FROM responses WHERE id IN "
                    "(SELECT id FROM responses WHERE expires < ? LIMIT 50)",
                    (now,),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        return self._run(write)

    def get(self, id: str) -> Deferred[StoredResponse | None]:
        def read(db: Any) -> StoredResponse | None:
            row = db.execute(
                "SELECT data FROM responses WHERE id = ? AND expires >= ?", (id, time.time())
            ).fetchone()
            return StoredResponse.loads(row[0]) if row else None

        return self._run(read)

    def delete(self, id: str) -> Deferred[bool]:
        def remove(db: Any) -> bool:
            return bool(db.execute("DELETE FROM responses WHERE id = ?", (id,)).rowcount > 0)

        return self._run(remove)

    def close(self) -> Deferred[None]:
        if self._closed:
            return succeed(None)
        self._closed = True

        def shut() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        d = deferToThreadPool(self.reactor, self._pool, shut)
        d.addBoth(lambda _: self._pool.stop())
        return d


@implementer(IResponseStore)
class RedisStore:
    """Records as Redis strings with a TTL: every replica sees every turn."""

    def __init__(
        self, client: RedisClient, ttl: float, maxBytes: int, prefix: str = "codexgw:resp:"
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.maxBytes = maxBytes
        self.prefix = prefix

    async def _execute(self, *args: Any) -> Any:
        # While Redis is away the client fails at once (no connection
        # attempt per call) and logs the outage itself, once; the store only
        # turns it into a 503.
        try:
            return await self.client.execute(*args)
        except RedisUnavailable as e:
            raise StoreUnavailable(str(e)) from None  # it names Redis and where
        except RedisError as e:
            raise StoreUnavailable(f"Redis: {e}") from None

    async def _save(self, record: StoredResponse) -> None:
        data = record.dumps()
        if len(data) > self.maxBytes:
            raise StoreFull(f"{len(data)} bytes")
        await self._execute("SET", self.prefix + record.id, data, "PX", int(self.ttl * 1000))

    def save(self, record: StoredResponse) -> Deferred[None]:
        return Deferred.fromCoroutine(self._save(record))

    async def _get(self, id: str) -> StoredResponse | None:
        data = await self._execute("GET", self.prefix + id)
        return StoredResponse.loads(data) if data else None

    def get(self, id: str) -> Deferred[StoredResponse | None]:
        return Deferred.fromCoroutine(self._get(id))

    async def _delete(self, id: str) -> bool:
        return bool(await self._execute("DEL", self.prefix + id))

    def delete(self, id: str) -> Deferred[bool]:
        return Deferred.fromCoroutine(self._delete(id))

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(_none())


async def _raise(error: Exception) -> None:
    raise error


async def _none() -> None:
    return None
