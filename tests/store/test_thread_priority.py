"""The database threads run nicer than the event loop (Linux: a nice value per thread), so
that a loop with clients to answer wins a contended core (issue 12's heartbeat p99)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.workers import DATABASE_THREAD_NICE

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux"),
]


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def store_thread_nices(readers: int) -> dict[str, int]:
    """The OS's nice value of each database thread, once every thread has set its own."""
    for _ in range(500):  # the readers lower theirs as they start: wait for the last one
        threads = [t for t in threading.enumerate() if t.name.startswith("pyhbb-store-")]
        nices = {
            t.name: os.getpriority(os.PRIO_PROCESS, t.native_id)
            for t in threads
            if t.native_id is not None and t.is_alive()
        }
        if len(nices) == readers + 1 and len(set(nices.values())) == 1:
            return nices
        await asyncio.sleep(0.01)
    return nices


async def test_database_threads_run_nicer_than_the_loop(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop_nice = own_nice()
    expected = min(19, loop_nice + 7)
    caplog.set_level(logging.INFO, logger="pyhbb.store.database")
    async with await SqliteDatabase.open(str(db_path), readers=3, thread_nice=7) as db:
        await db.write(lambda conn: conn.execute("create table t (x)"))
        assert await db.read(lambda conn: conn.execute("select count(*) from t").fetchone()) == (0,)
        nices = await store_thread_nices(readers=3)
        assert sorted(nices) == [
            "pyhbb-store-reader-0",
            "pyhbb-store-reader-1",
            "pyhbb-store-reader-2",
            "pyhbb-store-writer",
        ]
        assert set(nices.values()) == {expected}, nices
        assert db.thread_nice == expected
        assert own_nice() == loop_nice  # the loop's thread (and the process) keeps its own
    lines = [r.getMessage() for r in caplog.records if "nice" in r.getMessage()]
    assert lines == [
        f"database: its threads run at nice {expected}, so the event loop wins a busy core"
    ]


async def test_by_default_the_threads_are_lowered(db_path: Path) -> None:
    assert DATABASE_THREAD_NICE > 0
    async with await SqliteDatabase.open(str(db_path)) as db:
        assert db.thread_nice == min(19, own_nice() + DATABASE_THREAD_NICE)
        nices = await store_thread_nices(readers=1)
        assert set(nices.values()) == {db.thread_nice}, nices


async def test_nice_zero_leaves_the_threads_as_the_caller(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyhbb.store.database")
    async with await SqliteDatabase.open(str(db_path), readers=2, thread_nice=0) as db:
        assert db.thread_nice is None
        nices = await store_thread_nices(readers=2)
        assert set(nices.values()) == {own_nice()}, nices
    assert not [r for r in caplog.records if "nice" in r.getMessage()]
