"""PROVISIONAL stand-in for branch house-store's ``SqliteDatabase`` (same contract).

The api branch needs the one-SQLite-owner interface before house-store has committed it;
this file implements that contract on the existing store threads and is to be replaced by
house-store's module when that branch is merged (take theirs on conflict).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Self, TypeVar

from pyhbb.store.base import StoreError
from pyhbb.store.schema import DEFAULT_DB_URL, connect, db_path_from_url, prepare
from pyhbb.store.workers import Reader, Request, Writer

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

__all__ = ["Conflict", "Job", "Migration", "SqliteDatabase", "StoreError"]


class Conflict(StoreError):
    """A unique constraint refused the write; ``constraint`` names it (table.column)."""

    def __init__(self, message: str, constraint: str) -> None:
        super().__init__(message)
        self.constraint = constraint


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None] | tuple[str, ...]


def _migrate(migrations: Sequence[Migration], conn: sqlite3.Connection) -> None:
    conn.execute(
        "create table if not exists pyhbb_migration (component text not null, "
        "version integer not null, name text not null, applied_at real not null, "
        "primary key (component, version))"
    )
    for m in sorted(migrations, key=lambda m: (m.component, m.version)):
        done = conn.execute(
            "select 1 from pyhbb_migration where component = ? and version = ?",
            (m.component, m.version),
        ).fetchone()
        if done:
            continue
        if callable(m.apply):
            m.apply(conn)
        else:
            for statement in m.apply:
                conn.execute(statement)
        conn.execute(
            "insert into pyhbb_migration values (?, ?, ?, ?)",
            (m.component, m.version, m.name, time.time()),
        )


class SqliteDatabase:
    """One writer thread (group commit, savepoint per job) and a reader pool."""

    def __init__(self, path: str, readers: int, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._closed = False
        self._stopped: asyncio.Future[list[Any]] | None = None
        self._reads: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._readers = [
            Reader(n, self._reads, partial(connect, path, busy_timeout=busy_timeout, create=False))
            for n in range(readers)
        ]
        self._ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._migrations: Sequence[Migration] = ()
        self._writer: Writer | None = None

    @classmethod
    async def open(
        cls,
        db_url: str = DEFAULT_DB_URL,
        *,
        readers: int = 1,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] = (),
    ) -> Self:
        db = cls(db_path_from_url(db_url), readers, busy_timeout)
        db._migrations = migrations
        loop = asyncio.get_running_loop()
        writer = db._writer = Writer(db._open_writer, Request(lambda c: None, loop, db._ready))
        for thread in (writer, *db._readers):
            thread.start()
        try:
            await db._ready
        except BaseException:
            await db.close()
            raise
        return db

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, busy_timeout=self._busy_timeout, create=True)
        try:
            prepare(conn)
            if self._migrations:
                conn.execute("begin immediate")
                try:
                    _migrate(self._migrations, conn)
                    conn.execute("commit")
                except BaseException:
                    conn.execute("rollback")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    async def read(self, job: Job[T]) -> T:
        result: T = await self._submit(self._reads, job)
        return result

    async def write(self, job: Job[T]) -> T:
        if self._writer is None:
            raise StoreError("the database is not open")
        result: T = await self._submit(self._writer.requests, job)
        return result

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._stopped is None:
                self._closed = True
                stops: list[asyncio.Future[Any]] = []
                writer = self._writer
                queues = [self._reads] * len(self._readers)
                if writer is not None:
                    queues.insert(0, writer.requests)
                for q in queues:
                    stops.append(loop.create_future())
                    q.put(Request(None, loop, stops[-1]))
                self._stopped = asyncio.gather(*stops)
        await asyncio.shield(self._stopped)

    async def _submit(self, requests: queue.SimpleQueue[Request], job: Job[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise StoreError("the database is closed")
            requests.put(Request(job, loop, future))
        try:
            return await future
        except StoreError as e:
            cause = e.__cause__
            if isinstance(cause, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(
                cause
            ):
                constraint = str(cause).split("UNIQUE constraint failed:", 1)[1].strip()
                raise Conflict(str(cause), constraint) from cause
            raise
