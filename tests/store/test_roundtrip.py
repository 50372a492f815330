"""insert / get / update / rename / count, and IdTaken without losing batched writes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pyhbb.store.base import IdTaken, StoredPeer, StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.conftest import PK, new_guid, peer_store, started, write_lock

pytestmark = pytest.mark.timeout(60)


async def test_insert_then_get(store: SqlitePeerStore) -> None:
    guid = new_guid()
    await store.insert(guid, "123456789", b"machine-uuid", PK, "192.0.2.7")
    assert await store.get("123456789") == StoredPeer(
        guid, "123456789", b"machine-uuid", PK, "192.0.2.7"
    )
    assert await store.get("987654321") is None
    assert await store.count() == 1


async def test_get_many_returns_present_rows_by_id_in_one_read(store: SqlitePeerStore) -> None:
    guids = {}
    for i in range(1200):  # more ids than one statement takes (IDS_PER_STATEMENT)
        guids[f"peer{i:05d}"] = new_guid()
        await store.insert(
            guids[f"peer{i:05d}"], f"peer{i:05d}", b"u", PK, f"10.0.{i // 256}.{i % 256}"
        )
    asked = [f"peer{i:05d}" for i in range(0, 1200, 2)] + ["absent1", "absent2", "peer00000"]
    found = await store.get_many(asked)
    assert sorted(found) == sorted({f"peer{i:05d}" for i in range(0, 1200, 2)})
    assert found["peer01198"] == StoredPeer(guids["peer01198"], "peer01198", b"u", PK, "10.0.4.174")
    assert await store.get_many([]) == {}
    assert await store.get_many(["absent"]) == {}


async def test_scan_reads_every_row_once_page_by_page(store: SqlitePeerStore) -> None:
    ids = {f"peer{i:04d}" for i in range(1234)}
    for peer_id in ids:
        await store.insert(new_guid(), peer_id, b"u", PK, "10.0.0.1")
    seen: list[str] = []
    after = b""
    while rows := await store.scan(after, 100):
        assert len(rows) <= 100 and all(r.guid > after for r in rows)
        seen += [r.id for r in rows]
        after = rows[-1].guid
    assert len(seen) == len(ids) and set(seen) == ids
    assert (await store.scan(b"", 1))[0].ip == "10.0.0.1"


async def test_update_changes_id_pk_ip_and_keeps_uuid(
    store: SqlitePeerStore, db_path: Path
) -> None:
    guid = new_guid()
    await store.insert(guid, "111111", b"u1", PK, "::ffff:192.0.2.1")
    await store.update(guid, "222222", b"\x02" * 32, "192.0.2.2")
    assert await store.get("111111") is None
    assert await store.get("222222") == StoredPeer(guid, "222222", b"u1", b"\x02" * 32, "192.0.2.2")
    with sqlite3.connect(db_path) as conn:
        (text,) = conn.execute("select info from peer").fetchone()
    assert text == '{"ip":"192.0.2.2"}'


async def test_update_of_a_missing_guid_changes_nothing(store: SqlitePeerStore) -> None:
    await store.update(new_guid(), "333333", PK, "192.0.2.3")  # like upstream: no error
    assert await store.count() == 0


async def test_rename(store: SqlitePeerStore) -> None:
    guid = new_guid()
    await store.insert(guid, "old-id", b"u", PK, "192.0.2.4")
    await store.rename(guid, "new-id")
    assert await store.get("old-id") is None
    assert await store.get("new-id") == StoredPeer(guid, "new-id", b"u", PK, "192.0.2.4")


async def test_duplicate_insert_and_rename_to_used_id_raise_id_taken(
    store: SqlitePeerStore,
) -> None:
    first, second = new_guid(), new_guid()
    await store.insert(first, "taken", b"u1", PK, "192.0.2.5")
    await store.insert(second, "other", b"u2", PK, "192.0.2.6")
    with pytest.raises(IdTaken):
        await store.insert(new_guid(), "taken", b"u3", PK, "192.0.2.7")
    with pytest.raises(IdTaken):
        await store.rename(second, "taken")
    with pytest.raises(IdTaken):
        await store.update(second, "taken", PK, "192.0.2.8")
    assert (await store.get("taken")) == StoredPeer(first, "taken", b"u1", PK, "192.0.2.5")
    assert (await store.get("other")) == StoredPeer(second, "other", b"u2", PK, "192.0.2.6")
    assert await store.count() == 2


async def test_id_taken_in_a_batch_does_not_lose_the_other_writes(
    store: SqlitePeerStore, db: SqliteDatabase, db_path: Path
) -> None:
    existing = new_guid()
    await store.insert(existing, "taken", b"u", PK, "192.0.2.1")
    before = db.write_transactions
    ok = [new_guid() for _ in range(20)]
    # While another connection holds the write lock, everything queues up: the writer
    # then commits it as one batch (at most two, if it had already taken the first job).
    with write_lock(db_path):
        tasks = await started(
            *(store.insert(g, f"peer-{i}", b"u", PK, "192.0.2.9") for i, g in enumerate(ok[:10])),
            store.insert(new_guid(), "taken", b"u", PK, "192.0.2.2"),
            store.rename(ok[0], "taken"),
            *(
                store.insert(g, f"peer-{i + 10}", b"u", PK, "192.0.2.9")
                for i, g in enumerate(ok[10:])
            ),
            store.update(existing, "taken", PK, "192.0.2.3"),
        )
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 10 + ["IdTaken"] * 2 + [
        "NoneType"
    ] * 11
    assert db.write_transactions - before <= 2
    assert await store.count() == 21
    assert (await store.get("taken")) == StoredPeer(existing, "taken", b"u", PK, "192.0.2.3")
    for i, g in enumerate(ok):
        peer = await store.get(f"peer-{i}")
        assert peer is not None and peer.guid == g


async def test_other_constraint_failures_are_store_errors_not_id_taken(
    store: SqlitePeerStore,
) -> None:
    guid = new_guid()
    await store.insert(guid, "first", b"u", PK, "192.0.2.1")
    with pytest.raises(StoreError) as raised:
        await store.insert(guid, "second", b"u", PK, "192.0.2.1")  # same primary key
    assert not isinstance(raised.value, IdTaken)
    with pytest.raises(StoreError) as raised:
        await store.insert(new_guid(), "third", b"u", None, "192.0.2.1")  # type: ignore[arg-type]
    assert not isinstance(raised.value, IdTaken)
    assert await store.count() == 1


async def test_data_survives_reopening(db_path: Path) -> None:
    guid = new_guid()
    async with peer_store(str(db_path)) as store:
        await store.insert(guid, "persist", b"u", PK, "192.0.2.1")
    async with peer_store(str(db_path)) as store:
        assert await store.get("persist") == StoredPeer(guid, "persist", b"u", PK, "192.0.2.1")
