"""The SQLite peer store: the official ``db_v2.sqlite3`` file, never blocking the loop.

Usage (hbbs)::

    store = await SqlitePeerStore.open(db_url, readers=max_database_connections)
    ...
    await store.close()  # on shutdown: every write already requested is committed first
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from pyhbb.store.base import PeerStore, StoredPeer, StoreError
from pyhbb.store.schema import (
    DEFAULT_DB_URL,
    as_bytes,
    connect,
    db_path_from_url,
    info_json,
    ip_from_info,
    prepare,
)
from pyhbb.store.workers import Job, Reader, Request, Writer


class SqlitePeerStore:
    """:class:`~pyhbb.store.base.PeerStore` on SQLite, compatible with the official server.

    One writer thread (group commit, ``synchronous=FULL``: an awaited write is on disk)
    and ``readers`` reader threads, each with its own connection; WAL mode lets reads
    proceed while the writer commits. Create it with :meth:`open`.
    """

    def __init__(self, path: str, *, readers: int, busy_timeout: float) -> None:
        """Prefer :meth:`open`, which also waits until the database is usable."""
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()  # makes "closed?" and "enqueue" one step
        self._closed = False
        self._stopped: asyncio.Future[list[Any]] | None = None
        self._reads: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._readers = [
            Reader(n, self._reads, partial(connect, path, busy_timeout=busy_timeout, create=False))
            for n in range(readers)
        ]
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[Any] = loop.create_future()
        self._writer = Writer(self._open_writer, Request(_check, loop, self._ready))
        for thread in (self._writer, *self._readers):
            thread.start()

    @classmethod
    async def open(
        cls, db_url: str = DEFAULT_DB_URL, *, readers: int = 1, busy_timeout: float = 5.0
    ) -> Self:
        """Open (creating file and schema if missing) the database named by ``DB_URL``.

        ``readers`` is the read pool size (hbbs passes MAX_DATABASE_CONNECTIONS);
        ``busy_timeout`` is how long a statement waits for a lock held by another
        process. Raises :class:`StoreError` if the database cannot be used at all.
        A read-only database opens: reads work and writes raise StoreError.
        """
        store = cls(db_path_from_url(db_url), readers=readers, busy_timeout=busy_timeout)
        try:
            await store._ready
        except BaseException:
            await store.close()
            raise
        return store

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, busy_timeout=self._busy_timeout, create=True)
        try:
            prepare(conn)  # again on every reopen: recreates a schema dropped meanwhile
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def write_transactions(self) -> int:
        """How many write transactions were committed (group commit makes this < writes)."""
        return self._writer.transactions

    async def get(self, peer_id: str) -> StoredPeer | None:
        """The row with this id, or ``None``."""
        row: StoredPeer | None = await self._submit(self._reads, partial(_get, peer_id))
        return row

    async def insert(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> None:
        """Insert a new row; raises :class:`IdTaken` if the id exists."""
        await self._submit(self._writer.requests, partial(_insert, guid, peer_id, uuid, pk, ip))

    async def update(self, guid: bytes, peer_id: str, pk: bytes, ip: str) -> None:
        """Update ``id``, ``pk`` and ``info.ip`` of the row with this guid.

        Like the official server, a guid with no row changes nothing and is no error.
        """
        await self._submit(self._writer.requests, partial(_update, guid, peer_id, pk, ip))

    async def rename(self, guid: bytes, new_id: str) -> None:
        """Change the id of the row with this guid; raises :class:`IdTaken` if it is used."""
        await self._submit(self._writer.requests, partial(_rename, guid, new_id))

    async def count(self) -> int:
        """Number of rows."""
        n: int = await self._submit(self._reads, _count)
        return n

    async def close(self) -> None:
        """Commit every write already requested, then close connections and end threads.

        Later calls raise :class:`StoreError`; closing twice is harmless.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._stopped is None:
                self._closed = True
                stops: list[asyncio.Future[Any]] = []
                # FIFO queues: each stop request comes after every job already queued.
                for q in (self._writer.requests, *[self._reads] * len(self._readers)):
                    stops.append(loop.create_future())
                    q.put(Request(None, loop, stops[-1]))
                self._stopped = asyncio.gather(*stops)
        await asyncio.shield(self._stopped)
        for thread in (self._writer, *self._readers):
            thread.join()  # immediate: each thread's last act was to report it stopped

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _submit(self, requests: queue.SimpleQueue[Request], job: Job) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise StoreError("the peer store is closed")
            requests.put(Request(job, loop, future))
        return await future


# The jobs below run on the store threads.


def _check(conn: sqlite3.Connection) -> None:
    """Setup job: opening the writer connection already created and checked the schema."""


def _get(peer_id: str, conn: sqlite3.Connection) -> StoredPeer | None:
    row = conn.execute(
        "select guid, id, uuid, pk, info from peer where id = ?", (peer_id,)
    ).fetchone()
    if row is None:
        return None
    guid, stored_id, uuid, pk, info = row
    return StoredPeer(
        as_bytes(guid), str(stored_id), as_bytes(uuid), as_bytes(pk), ip_from_info(info)
    )


def _count(conn: sqlite3.Connection) -> int:
    n: int = conn.execute("select count(*) from peer").fetchone()[0]
    return n


def _insert(
    guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str, conn: sqlite3.Connection
) -> None:
    # created_at comes from the column default, as with the official server.
    conn.execute(
        "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
        (guid, peer_id, uuid, pk, info_json(ip)),
    )


def _update(guid: bytes, peer_id: str, pk: bytes, ip: str, conn: sqlite3.Connection) -> None:
    row = conn.execute("select info from peer where guid = ?", (guid,)).fetchone()
    if row is None:
        return
    conn.execute(
        "update peer set id = ?, pk = ?, info = ? where guid = ?",
        (peer_id, pk, info_json(ip, row[0]), guid),
    )


def _rename(guid: bytes, new_id: str, conn: sqlite3.Connection) -> None:
    conn.execute("update peer set id = ? where guid = ?", (new_id, guid))


if TYPE_CHECKING:  # mypy proves the class satisfies the interface hbbs programs against
    _interface: type[PeerStore] = SqlitePeerStore
