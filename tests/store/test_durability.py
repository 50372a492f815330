"""Acknowledged writes survive kill -9; close() commits everything requested before it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pyhbb.store.base import StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid, write_lock

pytestmark = pytest.mark.timeout(120)

CRASH_WRITER = Path(__file__).with_name("crash_writer.py")


def test_acknowledged_inserts_survive_kill_9(db_path: Path) -> None:
    repo = Path(__file__).parents[2]
    child = subprocess.Popen(
        [sys.executable, str(CRASH_WRITER), str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=repo,
    )
    acknowledged: set[bytes] = set()
    try:
        assert child.stdout is not None
        while len(acknowledged) < 2000:  # mid-run: it keeps writing until killed
            line = child.stdout.readline()
            assert line, f"writer died: {child.stderr.read() if child.stderr else b''!r}"
            acknowledged.add(bytes.fromhex(line.decode()))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        # Lines written before the kill are still in the pipe; a torn last line was
        # never fully acknowledged.
        for line in child.stdout.read().splitlines(keepends=True):
            if line.endswith(b"\n"):
                acknowledged.add(bytes.fromhex(line.decode()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        stored = {guid for (guid,) in conn.execute("select guid from peer")}
    finally:
        conn.close()
    assert acknowledged <= stored


@pytest.mark.parametrize("closing", ["store", "database"])
async def test_close_commits_every_write_requested_before_it(db_path: Path, closing: str) -> None:
    db = await SqliteDatabase.open(str(db_path))
    store = SqlitePeerStore(db)
    try:
        with write_lock(db_path):  # keep them queued while close() is requested
            writes = [
                asyncio.create_task(store.insert(new_guid(), f"pending-{n}", b"u", PK, "10.0.0.1"))
                for n in range(300)
            ]
            await asyncio.sleep(0)
            closing_task = asyncio.create_task(store.close() if closing == "store" else db.close())
            await asyncio.sleep(0)
            assert not closing_task.done()
        await closing_task
        assert all(w.done() and w.exception() is None for w in writes)
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("select count(*) from peer").fetchone() == (300,)
    finally:
        await db.close()


async def test_calls_after_close_raise_and_threads_are_gone(db_path: Path) -> None:
    db = await SqliteDatabase.open(str(db_path), readers=3)
    store = SqlitePeerStore(db)
    await store.close()
    await store.close()  # harmless
    with pytest.raises(StoreError):
        await store.get("123456")
    with pytest.raises(StoreError):
        await store.insert(new_guid(), "123456", b"u", PK, "10.0.0.1")
    with pytest.raises(StoreError):
        await store.count()
    assert await db.read(lambda conn: conn.execute("select 1").fetchone()) == (1,)
    await db.close()
    await db.close()  # harmless
    with pytest.raises(StoreError):
        await SqlitePeerStore(db).count()
    with pytest.raises(StoreError):
        await db.write(lambda conn: None)
    assert not [t for t in threading.enumerate() if t.name.startswith("pyhbb-store")]
