"""SqliteDatabase: one writer shared by every repository, jobs, errors and snapshots."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest

from pyhbb.store.base import Conflict, IdTaken, StoreError
from pyhbb.store.database import Migration, SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid, started, write_lock

pytestmark = pytest.mark.timeout(60)

NOTES = Migration(
    "note",
    1,
    "notes with unique titles",
    (
        "create table note_item (id integer primary key, title text not null unique, body text)",
        "create unique index note_item_body on note_item (lower(body))",
    ),
)


class NoteRepository:
    """A second repository, as the API service would add: plain jobs on the database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def add(self, title: str, body: str | None = None) -> int:
        return await self._db.write(partial(_add_note, title, body))

    async def titles(self) -> list[str]:
        return await self._db.read(_titles)


def _add_note(title: str, body: str | None, conn: sqlite3.Connection) -> int:
    cursor = conn.execute("insert into note_item (title, body) values (?, ?)", (title, body))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _titles(conn: sqlite3.Connection) -> list[str]:
    return [title for (title,) in conn.execute("select title from note_item order by id")]


def _count(table: str, conn: sqlite3.Connection) -> int:
    n: int = conn.execute(f"select count(*) from {table}").fetchone()[0]
    return n


async def test_two_repositories_share_one_writer_and_one_group_commit(db_path: Path) -> None:
    async with await SqliteDatabase.open(
        str(db_path), readers=2, busy_timeout=60, migrations=[NOTES]
    ) as db:
        peers, notes = SqlitePeerStore(db), NoteRepository(db)
        writers = [t for t in threading.enumerate() if t.name == "pyhbb-store-writer"]
        assert len(writers) == 1
        before = db.write_transactions
        with write_lock(db_path):  # everything queues up behind another process's lock
            tasks = await started(
                *(peers.insert(new_guid(), f"peer-{i}", b"u", PK, "10.0.0.1") for i in range(50)),
                *(notes.add(f"note-{i}", f"body {i}") for i in range(50)),
            )
            assert not any(t.done() for t in tasks)
        await asyncio.gather(*tasks)
        # One transaction (two if the writer had taken the first job before the rest).
        assert db.write_transactions - before <= 2
        assert await peers.count() == 50
        assert await notes.titles() == [f"note-{i}" for i in range(50)]
        assert [t for t in threading.enumerate() if t.name == "pyhbb-store-writer"] == writers


async def test_unique_violations_are_conflicts_naming_the_constraint(db_path: Path) -> None:
    async with await SqliteDatabase.open(str(db_path), migrations=[NOTES]) as db:
        notes, peers = NoteRepository(db), SqlitePeerStore(db)
        await notes.add("first", "some body")
        with pytest.raises(Conflict) as raised:
            await notes.add("first", "other body")
        assert raised.value.constraint == "note_item.title"
        assert not isinstance(raised.value, IdTaken)
        with pytest.raises(Conflict) as raised:
            await notes.add("second", "SOME BODY")  # unique index on an expression
        assert raised.value.constraint == "index 'note_item_body'"
        guid = new_guid()
        await peers.insert(guid, "taken", b"u", PK, "10.0.0.1")
        with pytest.raises(IdTaken) as id_taken:
            await peers.insert(new_guid(), "taken", b"u", PK, "10.0.0.1")
        assert id_taken.value.constraint == "peer.id"
        with pytest.raises(Conflict) as raised:  # the primary key: a Conflict, not IdTaken
            await peers.insert(guid, "other", b"u", PK, "10.0.0.1")
        assert raised.value.constraint == "peer.guid"
        assert not isinstance(raised.value, IdTaken)
        with pytest.raises(StoreError) as not_null:
            await db.write(lambda conn: conn.execute("insert into note_item (title) values (null)"))
        assert not isinstance(not_null.value, Conflict)
        assert await notes.titles() == ["first"]


def _insert_then_fail(title: str, error: Exception, conn: sqlite3.Connection) -> None:
    conn.execute("insert into note_item (title) values (?)", (title,))
    raise error


async def test_a_failing_job_is_undone_alone_and_a_bug_is_logged_once(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await SqliteDatabase.open(str(db_path), busy_timeout=60, migrations=[NOTES]) as db:
        notes = NoteRepository(db)
        deliberate = StoreError("no such address book")
        before = db.write_transactions
        with write_lock(db_path):
            tasks = await started(
                notes.add("kept-1"),
                db.write(partial(_insert_then_fail, "bug", ZeroDivisionError("oops"))),
                db.write(partial(_insert_then_fail, "deliberate", deliberate)),
                notes.add("kept-2"),
            )
        with caplog.at_level(logging.ERROR):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert db.write_transactions - before <= 2  # the failures did not split the batch
        assert results[0] == 1 and results[3] == 2
        assert type(results[1]) is StoreError and "ZeroDivisionError" in str(results[1])
        assert results[2] is deliberate  # raised on purpose: delivered as is, not logged
        assert await notes.titles() == ["kept-1", "kept-2"]
        logged = [r for r in caplog.records if r.exc_info]
        assert len(logged) == 1
        assert logged[0].exc_info is not None and logged[0].exc_info[0] is ZeroDivisionError
        assert "_insert_then_fail" in logged[0].getMessage()


@pytest.mark.parametrize(
    "escape",
    [
        lambda conn: conn.execute("commit"),
        lambda conn: conn.execute("rollback"),
        lambda conn: conn.commit(),
        lambda conn: conn.executescript("select 1"),
        lambda conn: conn.execute("release pyhbb_job"),
        lambda conn: conn.execute("rollback to pyhbb_job"),
    ],
    ids=["commit", "rollback", "commit()", "executescript", "release", "rollback-to"],
)
async def test_a_job_cannot_end_the_shared_transaction(db_path: Path, escape: object) -> None:
    def job(conn: sqlite3.Connection) -> None:
        conn.execute("insert into note_item (title) values ('escaped')")
        escape(conn)  # type: ignore[operator]

    async with await SqliteDatabase.open(str(db_path), busy_timeout=60, migrations=[NOTES]) as db:
        notes = NoteRepository(db)
        with write_lock(db_path):
            tasks = await started(notes.add("before"), db.write(job), notes.add("after"))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], StoreError)
        assert "not authorized" in str(results[1])
        assert results[0] == 1 and results[2] == 2
        assert await notes.titles() == ["before", "after"]


async def test_a_job_may_use_its_own_savepoints(db_path: Path) -> None:
    def job(conn: sqlite3.Connection) -> list[str]:
        conn.execute("insert into note_item (title) values ('outer')")
        conn.execute("savepoint mine")
        conn.execute("insert into note_item (title) values ('inner')")
        conn.execute("rollback to mine")
        conn.execute("release mine")
        return _titles(conn)

    async with await SqliteDatabase.open(str(db_path), migrations=[NOTES]) as db:
        assert await db.write(job) == ["outer"]
        assert await NoteRepository(db).titles() == ["outer"]


async def test_a_read_job_sees_one_snapshot(db_path: Path) -> None:
    def count_around_a_commit(conn: sqlite3.Connection) -> tuple[int, int]:
        first = _count("note_item", conn)
        other = sqlite3.connect(db_path, isolation_level=None)  # another process, meanwhile
        try:
            other.execute("insert into note_item (title) values ('meanwhile')")
        finally:
            other.close()
        return first, _count("note_item", conn)

    async with await SqliteDatabase.open(str(db_path), migrations=[NOTES]) as db:
        await NoteRepository(db).add("one")
        assert await db.read(count_around_a_commit) == (1, 1)
        assert await db.read(partial(_count, "note_item")) == 2  # the next job sees it


async def test_readers_cannot_write(db_path: Path) -> None:
    async with await SqliteDatabase.open(str(db_path), migrations=[NOTES]) as db:
        with pytest.raises(StoreError, match="readonly"):
            await db.read(partial(_add_note, "sneaky", None))
        assert await db.read(partial(_count, "note_item")) == 0


async def test_read_and_write_return_the_job_result(db_path: Path) -> None:
    async with await SqliteDatabase.open(str(db_path)) as db:
        assert db.path == str(db_path)
        assert await db.write(lambda conn: conn.execute("select 6 * 7").fetchone()[0]) == 42
        assert await db.read(lambda conn: conn.execute("select 'ok'").fetchone()[0]) == "ok"


def test_bad_arguments_are_value_errors(db_path: Path) -> None:
    async def open_with(*migrations: Migration, readers: int = 1) -> None:
        await SqliteDatabase.open(str(db_path), readers=readers, migrations=migrations)

    bad = [
        (Migration("api", 2, "starts at 2", ()),),
        (Migration("api", 1, "one", ()), Migration("api", 1, "one again", ())),
        (Migration("api", 2, "two", ()), Migration("api", 1, "then one", ())),
        (Migration("API", 1, "capitals", ()),),
        (Migration("peer", 1, "the official table is not ours to migrate", ()),),
    ]
    for migrations in bad:
        with pytest.raises(ValueError):
            asyncio.run(open_with(*migrations))
    with pytest.raises(ValueError):
        asyncio.run(open_with(readers=0))
    assert not db_path.exists()
