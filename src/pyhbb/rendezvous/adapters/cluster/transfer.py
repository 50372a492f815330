"""Moving peers between a ``db_v2.sqlite3`` file and the cluster directory (issue 10
item 6): ``pyhbb cluster import`` fills the directory from a single server's database;
``pyhbb cluster export`` writes the directory back into one, which is also the way back
to a single server. Imported peers are held by no node until they register again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from pyhbb.cluster.messages import BadMessage, Entry, decode_entry, encode_entry, peer_key
from pyhbb.rendezvous.adapters.cluster.connection import JS_TIMEOUT, open_buckets, replicas_for
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import as_bytes

BATCH = 256


def _rows(path: Path) -> Iterator[Entry]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute(
            "select guid, id, uuid, pk, created_at, user, status, note, info from peer"
        )
        for guid, peer_id, uuid, pk, created, user, status, note, info in cursor:
            yield Entry(
                guid=as_bytes(guid),
                id=str(peer_id),
                uuid=as_bytes(uuid),
                pk=as_bytes(pk),
                info=info if isinstance(info, str) else as_bytes(info).decode("utf-8", "replace"),
                created_at=str(created or ""),
                user=None if user is None else as_bytes(user),
                status=None if status is None else int(status),
                note=None if note is None else str(note),
            )
    finally:
        conn.close()


async def _open(urls: list[str]) -> tuple[Client, KeyValue]:
    nc = await nats.connect(servers=urls, connect_timeout=5, max_reconnect_attempts=3)
    peers, _, _ = await open_buckets(nc.jetstream(timeout=JS_TIMEOUT), replicas_for(urls))
    return nc, peers


async def import_db(path: Path, urls: list[str]) -> tuple[int, int]:
    """Create a directory entry for every row; returns (imported, already present).
    Rows whose id is already in the directory are left as the directory has them."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database file")
    nc, kv = await _open(urls)
    imported = present = 0

    async def one(entry: Entry) -> bool:
        try:
            await kv.create(peer_key(entry.id), encode_entry(entry))
        except KeyWrongLastSequenceError:
            return False
        return True

    try:
        batch: list[Entry] = []
        rows = list(_rows(path))
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            for ok in await asyncio.gather(*(one(e) for e in batch)):
                imported += ok
                present += not ok
    finally:
        await nc.close()
    return imported, present


async def export_db(path: Path, urls: list[str]) -> int:
    """Write every directory entry into ``path`` (created with the official schema if
    missing; a row with the same id or guid is replaced). Returns the number written."""
    nc, kv = await _open(urls)
    try:
        try:
            keys = list(await kv.keys())
        except nats.js.errors.NoKeysError:
            keys = []
        entries: list[Entry] = []
        for i in range(0, len(keys), BATCH):

            async def get(key: str) -> Entry | None:
                try:
                    return decode_entry((await kv.get(key)).value or b"")
                except (KeyNotFoundError, BadMessage):
                    return None

            found = await asyncio.gather(*(get(k) for k in keys[i : i + BATCH]))
            entries += [e for e in found if e is not None]
    finally:
        await nc.close()
    async with await SqliteDatabase.open(str(path)) as db:
        for i in range(0, len(entries), BATCH):
            batch = entries[i : i + BATCH]
            await db.write(partial(_write_rows, batch))
    return len(entries)


def _write_rows(entries: list[Entry], conn: sqlite3.Connection) -> None:
    for e in entries:
        conn.execute(
            "insert or replace into peer (guid, id, uuid, pk, created_at, user, status, note, "
            "info) values (?, ?, ?, ?, coalesce(nullif(?, ''), current_timestamp), ?, ?, ?, ?)",
            (e.guid, e.id, e.uuid, e.pk, e.created_at, e.user, e.status, e.note, e.info),
        )
