"""The IDs the web console disabled (``peer.status`` 0), as hbbs reads them at start."""

from __future__ import annotations

import sqlite3

import pytest

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid

pytestmark = pytest.mark.timeout(60)


async def test_only_status_zero_counts_and_the_limit_still_counts_all(
    db: SqliteDatabase, store: SqlitePeerStore
) -> None:
    statuses = {"off1": 0, "off2": 0, "off3": 0, "on1": 1, "unset": None, "minus": -1}
    for peer_id in statuses:
        await store.insert(new_guid(), peer_id, b"uuid", PK, "192.0.2.1")

    def mark(conn: sqlite3.Connection) -> None:
        for peer_id, status in statuses.items():
            conn.execute("update peer set status = ? where id = ?", (status, peer_id))

    await db.write(mark)
    ids, total = await store.disabled_ids(10)
    assert sorted(ids) == ["off1", "off2", "off3"] and total == 3
    ids, total = await store.disabled_ids(2)
    assert len(ids) == 2 and set(ids) < {"off1", "off2", "off3"} and total == 3
    ids, total = await store.disabled_ids(3)
    assert sorted(ids) == ["off1", "off2", "off3"] and total == 3


async def test_an_empty_table_has_none(store: SqlitePeerStore) -> None:
    assert await store.disabled_ids(100_000) == ([], 0)
