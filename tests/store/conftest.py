"""Fixtures for the peer-store tests: real SQLite files under tmp_path."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from pyhbb.store.schema import DEFAULT_DB_URL

PK = bytes(range(32))


def new_guid() -> bytes:
    return uuid.uuid4().bytes


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db_v2.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[SqliteDatabase]:
    # A long busy timeout: tests that hold a lock must never see it expire by accident.
    async with await SqliteDatabase.open(str(db_path), readers=2, busy_timeout=60) as d:
        yield d


@pytest.fixture
async def store(db: SqliteDatabase) -> AsyncIterator[SqlitePeerStore]:
    s = SqlitePeerStore(db)
    yield s
    await s.close()


@asynccontextmanager
async def peer_store(
    db_url: str = DEFAULT_DB_URL, **options: Any
) -> AsyncIterator[SqlitePeerStore]:
    """A peer store on a database of its own, as hbbs builds it; closes both."""
    async with await SqliteDatabase.open(db_url, **options) as db:
        store = SqlitePeerStore(db)
        try:
            yield store
        finally:
            await store.close()


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock from another connection, as another process would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("begin immediate")
        yield conn
        conn.execute("rollback")
    finally:
        conn.close()


async def started(*coros: Coroutine[Any, Any, Any]) -> list[asyncio.Task[Any]]:
    """Start coroutines as tasks and return once each has run up to its first await."""
    tasks = [asyncio.create_task(c) for c in coros]
    await asyncio.sleep(0)  # tasks created before run their first step before we resume
    return tasks
