"""Hostile files: a database we refuse is left exactly as it was; acceptable ones open.

Before anything is written (WAL switch, index, table, migration), the file is inspected
read-only. The refusal is one line that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhbb.store.base import StoredPeer, StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid
from tests.store.official import OFFICIAL_SCHEMA, official_db, official_insert, schema_facts

pytestmark = pytest.mark.timeout(60)


def files(directory: Path) -> dict[str, str]:
    """sha256 of every file in a directory."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def sqlite_file(path: Path, script: str, journal_mode: str = "delete") -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"pragma journal_mode = {journal_mode}")
        conn.executescript(script)
    finally:
        conn.close()  # the last connection: a WAL file is checkpointed, its side files go


OFFICIAL_NO_INDEXES = OFFICIAL_SCHEMA.split(";")[0] + ";"

# name -> (how to make the file, words the refusal must contain)
HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "text": (
        lambda p: p.write_bytes(b"this is not a database\n" * 500),
        "not an SQLite database",
    ),
    "zeros": (lambda p: p.write_bytes(b"\0" * 100), "not an SQLite database"),
    "short header": (lambda p: p.write_bytes(b"SQLite format 3\0" + b"\1" * 20), "not an SQLite"),
    "garbage after a header": (
        lambda p: p.write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 64),
        "SQLite cannot read it",
    ),
    "foreign peer (rollback journal)": (
        lambda p: sqlite_file(p, "create table peer (something_else text);"),
        "lacks the column(s) guid, id, uuid, pk, created_at, user, status, note, info",
    ),
    "foreign peer (WAL)": (
        lambda p: sqlite_file(p, "create table peer (id text, name text);", "wal"),
        "lacks the column(s) guid, uuid, pk",
    ),
    "peer without info": (
        lambda p: sqlite_file(p, OFFICIAL_SCHEMA.replace(",\n    info text not null", "")),
        "lacks the column(s) info",
    ),
    "peer keyed by id": (
        lambda p: sqlite_file(
            p,
            OFFICIAL_NO_INDEXES.replace(
                "guid blob primary key not null", "guid blob not null"
            ).replace("id varchar(100) not null", "id varchar(100) primary key not null"),
        ),
        "primary key is not guid",
    ),
    "peer with a column hbbs cannot fill": (
        lambda p: sqlite_file(
            p,
            OFFICIAL_SCHEMA.replace(
                "info text not null", "info text not null, tenant text not null"
            ),
        ),
        "requires column(s) tenant",
    ),
    "peer is a view": (
        lambda p: sqlite_file(p, "create table t (x); create view peer as select x from t;"),
        "'peer' is a view",
    ),
    "index_peer_id not unique": (
        lambda p: sqlite_file(p, OFFICIAL_NO_INDEXES + "create index index_peer_id on peer (id);"),
        "index_peer_id is not the unique index on peer (id)",
    ),
    "duplicate ids without index_peer_id": (
        lambda p: sqlite_file(
            p,
            OFFICIAL_NO_INDEXES
            + "insert into peer (guid, id, uuid, pk, info) values (x'01', 'twice', '', '', '');"
            + "insert into peer (guid, id, uuid, pk, info) values (x'02', 'twice', '', '', '');",
        ),
        "duplicate ids",
    ),
    "another application's database": (
        lambda p: sqlite_file(p, "create table users (name text); create table orders (n);", "wal"),
        "it has tables (orders, users) but no peer table",
    ),
    "bookkeeping table of someone else": (
        lambda p: sqlite_file(p, OFFICIAL_SCHEMA + "create table pyhbb_schema (x);"),
        "pyhbb_schema table is not pyhbb's",
    ),
}


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyhbb-store")]


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_refused_file_is_left_byte_for_byte(tmp_path: Path, case: str) -> None:
    make, reason = HOSTILE[case]
    path = tmp_path / "db_v2.sqlite3"
    make(path)
    before = files(tmp_path)
    assert list(before) == ["db_v2.sqlite3"]
    with pytest.raises(StoreError) as raised:
        await SqliteDatabase.open(str(path))
    message = str(raised.value)
    assert files(tmp_path) == before  # same bytes, and no -wal / -shm / -journal beside
    assert "\n" not in message
    assert message.startswith(f"database {path} refused: ")
    assert reason in message
    assert "left untouched; point DB_URL at the hbbs database" in message
    assert not store_threads()


async def test_refused_live_wal_database_keeps_its_data(tmp_path: Path) -> None:
    # A running foreign application: its latest rows are only in the -wal file.
    live = tmp_path / "live.sqlite3"
    conn = sqlite3.connect(live, isolation_level=None)
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma wal_autocheckpoint = 0")
    conn.execute("create table peer (id text, name text)")
    conn.execute("insert into peer values ('a', 'b')")
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{live}{suffix}", copy / f"db.sqlite3{suffix}")
    conn.close()
    before = files(copy)
    with pytest.raises(StoreError, match="lacks the column"):
        await SqliteDatabase.open(str(copy / "db.sqlite3"))
    after = files(copy)
    assert after.keys() == before.keys()
    # Not checkpointed into the main file; the -shm is SQLite's shared index, which any
    # reader updates, so only the database and its log are compared.
    for name in ("db.sqlite3", "db.sqlite3-wal"):
        assert after[name] == before[name]


async def test_a_clean_wal_database_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "db_v2.sqlite3"
    official = official_db(path)
    guid = official_insert(official, "123456", "192.0.2.1")
    official.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_v2.sqlite3"]
    async with await SqliteDatabase.open(str(path)) as db:
        assert await SqlitePeerStore(db).get("123456") == StoredPeer(
            guid, "123456", b"uuid-of-123456", b"\x01" * 32, "192.0.2.1"
        )


async def test_a_peer_table_without_indexes_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "db_v2.sqlite3"
    sqlite_file(path, OFFICIAL_NO_INDEXES)
    async with await SqliteDatabase.open(str(path)) as db:
        await SqlitePeerStore(db).insert(new_guid(), "123456", b"u", PK, "192.0.2.1")
    official = tmp_path / "official.sqlite3"
    official_db(official).close()
    assert schema_facts(path) == schema_facts(official)


CRASH_IN_TRANSACTION = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("pragma cache_size = 1")  # spill changed pages to the file before commit
conn.execute("begin")
for n in range(300):
    conn.execute(
        "insert into peer (guid, id, uuid, pk, info) values (?, ?, x'', zeroblob(5000), '{}')",
        (os.urandom(16), f"uncommitted-{n}"),
    )
os._exit(0)  # dies mid-transaction: the -journal is hot
"""


async def test_a_hot_journal_is_rolled_back_then_accepted(tmp_path: Path) -> None:
    path = tmp_path / "db_v2.sqlite3"
    official = official_db(path, journal_mode="delete")
    guid = official_insert(official, "committed", "192.0.2.1")
    official.close()
    subprocess.run([sys.executable, "-c", CRASH_IN_TRANSACTION, str(path)], check=True)
    journal = tmp_path / "db_v2.sqlite3-journal"
    assert journal.exists() and journal.stat().st_size > 0
    async with await SqliteDatabase.open(str(path)) as db:
        store = SqlitePeerStore(db)
        assert await store.count() == 1
        assert (await store.get("committed")) == StoredPeer(
            guid, "committed", b"uuid-of-committed", b"\x01" * 32, "192.0.2.1"
        )


async def test_a_database_locked_at_start_is_reported_as_locked_not_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db_v2.sqlite3"
    official_db(path, journal_mode="delete").close()
    before = files(tmp_path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("begin exclusive")  # rollback-journal mode: even readers must wait
        with pytest.raises(StoreError) as raised:
            await SqliteDatabase.open(str(path), busy_timeout=0.2)
        other.execute("rollback")
    finally:
        other.close()
    message = str(raised.value)
    assert "another process kept it locked for 0.2 s" in message
    assert "refused" not in message
    assert files(tmp_path) == before
    async with await SqliteDatabase.open(str(path)) as db:  # once released, it opens
        assert await SqlitePeerStore(db).count() == 0
