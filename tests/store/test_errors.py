"""Every failure is a StoreError for its own caller, and the store keeps working."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyhbb.store.base import IdTaken, StoredPeer, StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid, peer_store, started, write_lock
from tests.store.official import official_db, official_insert

pytestmark = pytest.mark.timeout(60)

READONLY_PROBE = Path(__file__).with_name("readonly_probe.py")
NOBODY = 65534


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyhbb-store")]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can enter (tmp_path's parents are private)."""
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        path.chmod(0o755)
        try:
            yield path
        finally:
            path.chmod(0o755)  # so that a non-root run can delete it


def probe_read_only(db: Path) -> dict[str, str]:
    """Make db and its directory read-only, then report what the store does with it."""
    db.chmod(0o444)
    db.parent.chmod(0o555)
    # root ignores file modes, so the probe then runs as "nobody".
    as_nobody = [str(NOBODY)] if os.geteuid() == 0 else []
    done = subprocess.run(
        [sys.executable, str(READONLY_PROBE), str(db), *as_nobody],
        capture_output=True,
        cwd=db.parent,
        timeout=30,
        check=True,
    )
    report: dict[str, str] = json.loads(done.stdout)
    return report


def test_read_only_database_serves_reads_and_refuses_writes(shared_dir: Path) -> None:
    official = official_db(shared_dir / "db_v2.sqlite3", journal_mode="delete")
    official_insert(official, "123456", "10.0.0.9")
    official.close()
    report = probe_read_only(shared_dir / "db_v2.sqlite3")
    assert report["open"] == "ok"
    assert "ip='10.0.0.9'" in report["get"]
    assert report["insert"] == "StoreError"
    assert report["get after"] == report["get"]
    assert report["count"] == "1"


def test_read_only_wal_database_without_side_files_fails_to_open_cleanly(
    shared_dir: Path,
) -> None:
    # SQLite cannot read a WAL database whose -shm it can neither find nor create.
    official = official_db(shared_dir / "db_v2.sqlite3")
    official_insert(official, "123456", "10.0.0.9")
    official.close()
    assert probe_read_only(shared_dir / "db_v2.sqlite3") == {"open": "StoreError"}


@pytest.mark.parametrize("content", [b"", b"\0" * 100, b"this is not a database\n" * 500])
async def test_corrupt_or_foreign_file_fails_to_open(db_path: Path, content: bytes) -> None:
    if not content:  # an empty file is a valid empty database: use a foreign one instead
        with sqlite3.connect(db_path) as conn:
            conn.execute("create table peer (something_else text)")
    else:
        db_path.write_bytes(content)
    with pytest.raises(StoreError):
        await SqliteDatabase.open(str(db_path))
    assert not store_threads()


async def test_missing_directory_fails_to_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteDatabase.open(str(tmp_path / "no" / "such" / "dir" / "db.sqlite3"))
    assert not store_threads()


async def test_locked_database_fails_the_write_and_recovers(db_path: Path) -> None:
    async with peer_store(str(db_path), busy_timeout=0.2) as store:
        await store.insert(new_guid(), "present", b"u", PK, "10.0.0.1")
        with write_lock(db_path):
            with pytest.raises(StoreError) as raised:
                await store.insert(new_guid(), "locked-out", b"u", PK, "10.0.0.2")
            assert not isinstance(raised.value, IdTaken)
            assert "locked" in str(raised.value)
            assert (await store.get("present")) is not None
        await store.insert(new_guid(), "after", b"u", PK, "10.0.0.3")
        assert await store.count() == 2


async def test_bad_job_in_a_batch_fails_alone(store: SqlitePeerStore, db_path: Path) -> None:
    await store.insert(new_guid(), "taken", b"u", PK, "10.0.0.1")
    good = [new_guid() for _ in range(6)]
    with write_lock(db_path):
        tasks = await started(
            *(store.insert(g, f"good-{i}", b"u", PK, "10.0.0.2") for i, g in enumerate(good[:3])),
            # Not bindable: sqlite3 rejects it before SQLite sees it (no constraint).
            store.insert(new_guid(), "bad", b"u", object(), "10.0.0.3"),  # type: ignore[arg-type]
            store.insert(new_guid(), "taken", b"u", PK, "10.0.0.4"),
            *(
                store.insert(g, f"good-{i + 3}", b"u", PK, "10.0.0.2")
                for i, g in enumerate(good[3:])
            ),
        )
    results = await asyncio.gather(*tasks, return_exceptions=True)
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["NoneType"] * 3 + ["StoreError", "IdTaken"] + ["NoneType"] * 3
    assert await store.count() == 7
    assert await store.get("bad") is None


async def test_dropped_table_is_an_error_then_recreated(
    store: SqlitePeerStore, db_path: Path
) -> None:
    await store.insert(new_guid(), "before", b"u", PK, "10.0.0.1")
    with sqlite3.connect(db_path) as conn:
        conn.execute("drop table peer")
    with pytest.raises(StoreError):
        await store.get("before")
    with pytest.raises(StoreError):
        await store.insert(new_guid(), "lost", b"u", PK, "10.0.0.2")
    # The failed connection was dropped; reopening it recreated the schema.
    guid = new_guid()
    await store.insert(guid, "after", b"u", PK, "10.0.0.3")
    assert await store.get("after") == StoredPeer(guid, "after", b"u", PK, "10.0.0.3")


async def test_corruption_while_running_is_an_error_until_repaired(
    store: SqlitePeerStore, db_path: Path
) -> None:
    guid = new_guid()
    await store.insert(guid, "peer", b"u", PK, "10.0.0.1")

    def set_index_sql(sql: str) -> str:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("pragma writable_schema = on")
            (old,) = conn.execute(
                "select sql from sqlite_schema where name = 'index_peer_status'"
            ).fetchone()
            conn.execute(
                "update sqlite_schema set sql = ? where name = 'index_peer_status'", (sql,)
            )
            (version,) = conn.execute("pragma schema_version").fetchone()
            conn.execute(f"pragma schema_version = {version + 1}")  # others re-read it
        finally:
            conn.close()
        return str(old)

    original = set_index_sql("create index index_peer_status on peer (")
    for call in (store.get("peer"), store.count(), store.insert(new_guid(), "x", b"u", PK, "")):
        with pytest.raises(StoreError, match="malformed"):
            await call
    set_index_sql(original)
    assert (await store.get("peer")) == StoredPeer(guid, "peer", b"u", PK, "10.0.0.1")
    await store.insert(new_guid(), "x", b"u", PK, "10.0.0.2")
    assert await store.count() == 2


def test_readers_must_be_positive() -> None:
    async def make() -> None:
        await SqliteDatabase.open(":unused:", readers=0)

    with pytest.raises(ValueError):
        asyncio.run(make())
