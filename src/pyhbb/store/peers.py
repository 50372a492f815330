"""The peer repository: the official ``peer`` table (§10.4) as hbbs's PeerStore.

Usage (hbbs)::

    db = await SqliteDatabase.open(db_url, readers=max_database_connections)
    store = SqlitePeerStore(db)
    ...
    await store.close()  # this store's writes are committed; the database stays open
    await db.close()     # its owner closes it
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from pyhbb.store.base import CompactPage, CompactRow, PeerStore, StoredPeer, StoreError
from pyhbb.store.database import SqliteDatabase


class SqlitePeerStore:
    """:class:`~pyhbb.store.base.PeerStore` on the process's database, as the official
    server reads and writes its table (same columns, same ``info`` JSON).

    Writes join the database's group commit; :meth:`close` does not close the database,
    which belongs to whoever opened it.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._closed = False

    async def get(self, peer_id: str) -> StoredPeer | None:
        """The row with this id, or ``None``."""
        self._check_open()
        return await self._db.read(partial(_get, peer_id))

    async def get_many(self, peer_ids: Sequence[str]) -> dict[str, StoredPeer]:
        """The rows with these ids, by id (ids without a row are left out): one read job,
        one statement per :data:`IDS_PER_STATEMENT` ids, so that many look-ups cost about
        what one does (hbbs batches them under load)."""
        self._check_open()
        return await self._db.read(partial(_get_many, tuple(peer_ids)))

    async def scan(self, after_guid: bytes, limit: int) -> list[StoredPeer]:
        """Up to ``limit`` rows in guid order, from the first guid after ``after_guid``
        (``b""``: from the start): a whole table read page by page, each page one read job
        that walks the table in its own order (a fraction of a look-up by id per row)."""
        self._check_open()
        return await self._db.read(partial(_scan, after_guid, limit))

    async def scan_compact(self, after_guid: bytes, limit: int) -> CompactPage:
        """The page :meth:`scan` would return, as ``(id, pk, ip)`` tuples with the same
        values: SQLite cuts ``info.ip`` out of the compact JSON every writer uses, so the
        driver's own row tuples are the result (no JSON parse, no object per row)."""
        self._check_open()
        return await self._db.read(partial(_scan_compact, after_guid, limit))

    async def insert(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> None:
        """Insert a new row; raises :class:`~pyhbb.store.base.IdTaken` if the id exists."""
        self._check_open()
        await self._db.write(partial(_insert, guid, peer_id, uuid, pk, ip))

    async def update(self, guid: bytes, peer_id: str, pk: bytes, ip: str) -> None:
        """Update ``id``, ``pk`` and ``info.ip`` of the row with this guid.

        Like the official server, a guid with no row changes nothing and is no error.
        """
        self._check_open()
        await self._db.write(partial(_update, guid, peer_id, pk, ip))

    async def rename(self, guid: bytes, new_id: str) -> None:
        """Change the id of the row with this guid; raises IdTaken if it is used."""
        self._check_open()
        await self._db.write(partial(_rename, guid, new_id))

    async def count(self) -> int:
        """Number of rows."""
        self._check_open()
        return await self._db.read(_count)

    async def disabled_ids(self, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` ids of rows with ``status`` 0 (the web console's disabled
        devices; the official server never writes the column), in table order, and how
        many there are: one read job, one snapshot."""
        self._check_open()
        return await self._db.read(partial(_disabled_ids, limit))

    async def close(self) -> None:
        """Wait until every write already requested is committed; later calls raise
        :class:`StoreError`. Closing twice is harmless."""
        self._closed = True
        # The writer's queue is FIFO: once this empty job ran, every earlier one did.
        # StoreError: the database is closed already, which committed everything.
        with contextlib.suppress(StoreError):
            await self._db.write(_nothing)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the peer store is closed")


# The jobs below run on the database threads.


IDS_PER_STATEMENT = 500  # well under SQLite's limit on parameters (999 before 3.32)
_COLUMNS = "select guid, id, uuid, pk, info from peer"


def _get(peer_id: str, conn: sqlite3.Connection) -> StoredPeer | None:
    row = conn.execute(f"{_COLUMNS} where id = ?", (peer_id,)).fetchone()
    return None if row is None else _stored(*row)


def _get_many(peer_ids: tuple[str, ...], conn: sqlite3.Connection) -> dict[str, StoredPeer]:
    found: dict[str, StoredPeer] = {}
    for start in range(0, len(peer_ids), IDS_PER_STATEMENT):
        chunk = peer_ids[start : start + IDS_PER_STATEMENT]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"{_COLUMNS} where id in ({marks})", chunk):
            peer = _stored(*row)
            found[peer.id] = peer
    return found


def _scan(after_guid: bytes, limit: int, conn: sqlite3.Connection) -> list[StoredPeer]:
    rows = conn.execute(f"{_COLUMNS} where guid > ? order by guid limit ?", (after_guid, limit))
    return [_stored(*row) for row in rows]


# A row whose id is text, whose pk is a blob and whose info is the compact ``{"ip":"…"}``
# with no quote or backslash inside (what ip_from_info returns without parsing): its
# values come out of SQLite as they are. Any other row (another writer's JSON, odd types)
# gets NULL for its IP and is converted in Python, exactly as scan() converts it.
_PLAIN_ROW = (
    "typeof(id) = 'text' and typeof(pk) = 'blob' and typeof(info) = 'text'"
    """ and info glob '{"ip":"*"}' and instr(info, '\\') = 0"""
    """ and instr(substr(info, 8), '"') = length(info) - 8"""
)
_COMPACT = (
    f"select id, pk, case when {_PLAIN_ROW} then substr(info, 8, length(info) - 9) end"
    " from peer where guid > ? order by guid limit ?"
)


def _scan_compact(after_guid: bytes, limit: int, conn: sqlite3.Connection) -> CompactPage:
    # One read transaction (SqliteDatabase.read): the three statements see the same rows.
    rows: list[CompactRow] = conn.execute(_COMPACT, (after_guid, limit)).fetchall()
    if not rows:
        return CompactPage(rows, b"")
    odd = [i for i, row in enumerate(rows) if row[2] is None]
    if odd:
        raw = conn.execute(
            "select id, pk, info from peer where guid > ? order by guid limit ?",
            (after_guid, limit),
        ).fetchall()
        for i in odd:
            stored_id, pk, info = raw[i]
            rows[i] = (str(stored_id), as_bytes(pk), ip_from_info(info))
    last = conn.execute(
        "select guid from peer where guid > ? order by guid limit 1 offset ?",
        (after_guid, len(rows) - 1),
    ).fetchone()[0]
    return CompactPage(rows, as_bytes(last))


def _stored(guid: object, stored_id: object, uuid: object, pk: object, info: object) -> StoredPeer:
    return StoredPeer(
        as_bytes(guid), str(stored_id), as_bytes(uuid), as_bytes(pk), ip_from_info(info)
    )


def _count(conn: sqlite3.Connection) -> int:
    n: int = conn.execute("select count(*) from peer").fetchone()[0]
    return n


def _disabled_ids(limit: int, conn: sqlite3.Connection) -> tuple[list[str], int]:
    query = "select id from peer where status = 0 limit ?"
    ids = [str(row[0]) for row in conn.execute(query, (limit,))]
    if len(ids) < limit:
        return ids, len(ids)
    total: int = conn.execute("select count(*) from peer where status = 0").fetchone()[0]
    return ids, total


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


def _nothing(conn: sqlite3.Connection) -> None:
    """A write that changes nothing: awaiting it waits for every write queued before."""


def info_json(ip: str, previous: object = None) -> str:
    """The ``info`` text for a row: compact ``{"ip":"..."}`` as the official server writes.

    When updating, other keys of the previous object are kept (the official server
    overwrites them): Pro may store more there, and it costs us nothing to preserve it.
    """
    info = _parse_object(previous) or {}
    info["ip"] = ip
    return json.dumps(info, separators=(",", ":"), ensure_ascii=False)


def ip_from_info(info: object) -> str:
    """``info.ip``, or "" when the text is not a JSON object with a string ``ip``."""
    if isinstance(info, str) and info.startswith('{"ip":"') and info.endswith('"}'):
        text = info[7:-2]
        if '"' not in text and "\\" not in text:  # the compact form we and upstream write
            return text
    ip = (_parse_object(info) or {}).get("ip")
    return ip if isinstance(ip, str) else ""


def _parse_object(text: object) -> dict[str, object] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_bytes(value: object) -> bytes:
    """A blob column as bytes; tolerates rows where another writer stored text or NULL."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b""


if TYPE_CHECKING:  # mypy proves the class satisfies the interface hbbs programs against
    _interface: type[PeerStore] = SqlitePeerStore
