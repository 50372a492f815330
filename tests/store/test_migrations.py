"""Migrations: each step once, in order, in its own transaction; newer versions refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pyhbb.store.base import StoreError
from pyhbb.store.database import Migration, SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid

pytestmark = pytest.mark.timeout(120)

MIGRATE_CHILD = Path(__file__).with_name("migrate_child.py")

API = [
    Migration("api", 1, "users", ("create table api_user (name text primary key)",)),
    Migration("api", 2, "user email", ("alter table api_user add column email text",)),
    Migration(
        "api",
        3,
        "first user",
        ("insert into api_user (name, email) values ('admin', 'admin@example.org')",),
    ),
]


# contextlib.closing: "with connect()" only ends a transaction; the connection itself
# would stay open (keeping the -wal file) until the cyclic GC happens to collect it.
def recorded(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("select component, version from pyhbb_schema"))


def tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {name for (name,) in conn.execute("select name from sqlite_schema")}


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file in the database's directory."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.iterdir())
    }


async def test_a_step_is_applied_once_and_reopening_is_a_no_op(db_path: Path) -> None:
    calls: list[int] = []

    def create_book(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("create table api_book (id integer primary key, name text)")

    steps = [Migration("api", 1, "address books", create_book)]
    async with await SqliteDatabase.open(str(db_path), migrations=steps) as db:
        assert db.write_transactions == 1
        await db.write(lambda conn: conn.execute("insert into api_book (name) values ('b')"))
    assert calls == [1]
    assert recorded(db_path) == {"api": 1}
    before = snapshot(db_path)
    async with await SqliteDatabase.open(str(db_path), migrations=steps) as db:
        assert db.write_transactions == 0  # nothing was written
        assert await db.read(lambda conn: conn.execute("select name from api_book").fetchall()) == [
            ("b",)
        ]
    assert calls == [1]
    assert snapshot(db_path) == before


async def test_new_steps_apply_in_order_each_in_its_own_transaction(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await SqliteDatabase.open(str(db_path), migrations=API[:1]):
        pass
    with caplog.at_level(logging.INFO, logger="pyhbb.store"):
        async with await SqliteDatabase.open(str(db_path), migrations=API) as db:
            assert db.write_transactions == 2
            rows = await db.read(lambda conn: conn.execute("select * from api_user").fetchall())
            assert rows == [("admin", "admin@example.org")]
    applied = [r.getMessage() for r in caplog.records if "applied migration" in r.getMessage()]
    assert applied == [
        "database: applied migration api 2 (user email)",
        "database: applied migration api 3 (first user)",
    ]
    assert recorded(db_path) == {"api": 3}


async def test_components_are_versioned_apart(db_path: Path) -> None:
    audit = [Migration("audit", n, f"step {n}", ()) for n in (1, 2, 3, 4, 5)]
    async with await SqliteDatabase.open(str(db_path), migrations=[*API[:2], *audit]):
        pass
    assert recorded(db_path) == {"api": 2, "audit": 5}
    # A process that only knows "api" (hbbs knows none) is not bothered by "audit".
    async with await SqliteDatabase.open(str(db_path), migrations=API) as db:
        assert db.write_transactions == 1
    async with await SqliteDatabase.open(str(db_path)) as db:
        await SqlitePeerStore(db).insert(new_guid(), "123456", b"u", PK, "10.0.0.1")
    assert recorded(db_path) == {"api": 3, "audit": 5}


async def test_a_database_migrated_by_a_newer_pyhbb_is_refused_untouched(db_path: Path) -> None:
    async with await SqliteDatabase.open(str(db_path), migrations=API):
        pass
    before = snapshot(db_path)
    with pytest.raises(StoreError) as raised:
        await SqliteDatabase.open(str(db_path), migrations=API[:2])
    message = str(raised.value)
    assert "version 3, newer than this pyhbb knows (version 2)" in message
    assert "\n" not in message
    assert snapshot(db_path) == before
    async with await SqliteDatabase.open(str(db_path)):  # hbbs, which knows no "api"
        pass


async def test_a_failing_step_is_undone_and_the_peer_table_stays_usable(db_path: Path) -> None:
    guid = new_guid()
    async with await SqliteDatabase.open(str(db_path), migrations=API[:1]) as db:
        await SqlitePeerStore(db).insert(guid, "kept", b"u", PK, "10.0.0.1")

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("create table api_group (name text)")
        conn.execute("insert into api_user (name) values ('half')")
        raise RuntimeError("step 2 has a bug")

    broken = [API[0], Migration("api", 2, "groups", half_done)]
    with pytest.raises(StoreError, match=r"migration api 2 \(groups\) failed.*step 2 has a bug"):
        await SqliteDatabase.open(str(db_path), migrations=broken)
    bad_sql = [API[0], Migration("api", 2, "typo", ("create tabel api_group (name text)",))]
    with pytest.raises(StoreError, match=r"migration api 2 \(typo\) failed.*syntax error"):
        await SqliteDatabase.open(str(db_path), migrations=bad_sql)
    assert recorded(db_path) == {"api": 1}
    assert "api_group" not in tables(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("select count(*) from api_user").fetchone() == (0,)
    async with await SqliteDatabase.open(str(db_path)) as db:  # hbbs still runs
        store = SqlitePeerStore(db)
        assert (await store.get("kept")) is not None
        await store.insert(new_guid(), "new", b"u", PK, "10.0.0.2")
        assert await store.count() == 2
    async with await SqliteDatabase.open(str(db_path), migrations=API) as db:  # fixed code
        assert db.write_transactions == 2
    assert recorded(db_path) == {"api": 3}


async def test_a_step_that_commits_is_refused(db_path: Path) -> None:
    def commits(conn: sqlite3.Connection) -> None:
        conn.execute("create table api_early (x)")
        conn.commit()

    with pytest.raises(StoreError, match="not authorized"):
        await SqliteDatabase.open(str(db_path), migrations=[Migration("api", 1, "x", commits)])
    assert "api_early" not in tables(db_path)


def test_concurrent_open_from_several_processes_applies_a_step_once(tmp_path: Path) -> None:
    db_path = tmp_path / "db_v2.sqlite3"  # does not exist yet: they also race to create it
    start = tmp_path / "start"
    repo = Path(__file__).parents[2]
    children = [
        subprocess.Popen(
            [sys.executable, str(MIGRATE_CHILD), str(db_path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=repo,
        )
        for _ in range(3)
    ]
    start.touch()
    reports = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    assert [r.get("error") for r in reports] == [None] * 3
    # Exactly one child applied the step; the others found it done under the write lock.
    assert sorted(len(r["applied"]) for r in reports) == [0, 0, 1]
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("select pid from api_once").fetchall()
        assert conn.execute("select count(*) from peer").fetchone() == (0,)
    assert len(rows) == 1
    assert recorded(db_path) == {"api": 1}
