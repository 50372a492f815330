"""Both ways compatible with the official server's db_v2.sqlite3 (docs/protocol.md §10.4)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from pyhbb.store.base import StoredPeer
from pyhbb.store.sqlite_store import SqlitePeerStore
from tests.store.conftest import PK, new_guid
from tests.store.official import (
    EXPECTED_COLUMNS,
    EXPECTED_INDEXES,
    INSERT,
    OFFICIAL_SCHEMA,
    SELECT_BY_ID,
    UPDATE,
    info,
    official_db,
    official_insert,
    schema_facts,
)

pytestmark = pytest.mark.timeout(60)


async def test_our_schema_is_the_official_declaration(db_path: Path, tmp_path: Path) -> None:
    async with await SqlitePeerStore.open(str(db_path)):
        pass
    ours = schema_facts(db_path)
    columns, indexes, without_rowid, _sql = ours
    assert columns == EXPECTED_COLUMNS
    assert indexes == EXPECTED_INDEXES
    assert without_rowid
    official_path = tmp_path / "official.sqlite3"
    official_db(official_path).close()
    # Same SQL texts too, so even the declared-type spelling matches.
    assert schema_facts(official_path) == ours


async def test_connection_settings(db_path: Path) -> None:
    async with await SqlitePeerStore.open(str(db_path)) as store:
        await store.insert(new_guid(), "123456", b"u", PK, "192.0.2.1")
        assert Path(f"{db_path}-wal").exists()  # WAL, like the official server

        def settings(conn: sqlite3.Connection) -> list[object]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            return [conn.execute(f"pragma {name}").fetchone()[0] for name in names]

        # Every connection, reader and writer: synchronous=FULL (2), busy timeout 5 s.
        for requests in (store._reads, store._writer.requests):
            assert await store._submit(requests, settings) == ["wal", 2, 1, 5000]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


async def test_reads_rows_in_the_wal_of_a_live_official_database(
    db_path: Path, tmp_path: Path
) -> None:
    official = official_db(db_path)
    official.execute("pragma wal_autocheckpoint = 0")  # rows stay in the -wal file
    guids = {
        f"peer{i:04d}": official_insert(official, f"peer{i:04d}", f"10.0.{i}.1") for i in range(50)
    }
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal", "-shm"):  # a backup of a running server: all three files
        shutil.copy(f"{db_path}{suffix}", copy / f"db_v2.sqlite3{suffix}")
    try:
        for path in (db_path, copy / "db_v2.sqlite3"):
            async with await SqlitePeerStore.open(str(path)) as store:
                assert await store.count() == 50
                for peer_id, guid in guids.items():
                    assert await store.get(peer_id) == StoredPeer(
                        guid,
                        peer_id,
                        b"uuid-of-" + peer_id.encode(),
                        b"\x01" * 32,
                        f"10.0.{int(peer_id[4:])}.1",
                    )
    finally:
        official.close()


async def test_reads_a_rollback_journal_database_and_switches_it_to_wal(db_path: Path) -> None:
    official = official_db(db_path, journal_mode="delete")
    guid = official_insert(official, "rollback", "192.0.2.1")
    official.close()
    async with await SqlitePeerStore.open(str(db_path)) as store:
        assert await store.get("rollback") == StoredPeer(
            guid, "rollback", b"uuid-of-rollback", b"\x01" * 32, "192.0.2.1"
        )
        await store.update(guid, "rollback", PK, "192.0.2.2")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


async def test_tolerates_pro_columns_keys_tables_and_odd_info(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    # A Pro-like table: more columns, JSON with more keys, other tables beside it.
    conn.executescript(
        OFFICIAL_SCHEMA.replace(
            "info text not null", "info text not null, last_online datetime, device_group blob"
        )
    )
    conn.execute("create table users (guid blob primary key, name text)")
    rows = {
        "pro": '{"ip":"192.0.2.1","os":"linux","username":"alice"}',
        "not-json": "{ip:192.0.2.2",
        "not-object": '["192.0.2.3"]',
        "ip-number": '{"ip":3221225988}',
        "no-ip": "{}",
        "spaced": '{ "ip" : "192.0.2.4" }',
    }
    guids = {}
    for peer_id, text in rows.items():
        guids[peer_id] = new_guid()
        conn.execute(
            "insert into peer (guid, id, uuid, pk, info, last_online, status) "
            "values (?, ?, ?, ?, ?, '2024-01-01 00:00:00', 1)",
            (guids[peer_id], peer_id, b"u", PK, text),
        )
    # Text where a blob is expected, as a careless tool might write.
    conn.execute(INSERT, (b"g" * 16, "text-blobs", "uuid-text", "pk-text", info("192.0.2.5")))
    conn.close()

    async with await SqlitePeerStore.open(str(db_path)) as store:
        ips = {peer_id: (await store.get(peer_id)).ip for peer_id in rows}  # type: ignore[union-attr]
        assert ips == {
            "pro": "192.0.2.1",
            "not-json": "",
            "not-object": "",
            "ip-number": "",
            "no-ip": "",
            "spaced": "192.0.2.4",
        }
        assert await store.get("text-blobs") == StoredPeer(
            b"g" * 16, "text-blobs", b"uuid-text", b"pk-text", "192.0.2.5"
        )
        await store.update(guids["pro"], "pro", PK, "192.0.2.9")
        await store.update(guids["not-json"], "not-json", PK, "192.0.2.8")
        await store.insert(new_guid(), "ours", b"u", PK, "192.0.2.7")
        assert await store.count() == len(rows) + 2

    with sqlite3.connect(db_path) as conn:
        infos = dict(conn.execute("select id, info from peer"))
        # Unknown keys Pro stored are kept (the official server would drop them).
        assert infos["pro"] == '{"ip":"192.0.2.9","os":"linux","username":"alice"}'
        assert infos["not-json"] == '{"ip":"192.0.2.8"}'
        assert conn.execute("select last_online from peer where id = 'pro'").fetchone() == (
            "2024-01-01 00:00:00",
        )


async def test_official_server_can_use_our_database(db_path: Path) -> None:
    guid = new_guid()
    async with await SqlitePeerStore.open(str(db_path)) as store:
        await store.insert(guid, "ours", b"machine", PK, "::ffff:192.0.2.1")
    # What the official server does at start-up and on RegisterPk, with plain sqlite3.
    conn = official_db(db_path)
    try:
        row = conn.execute(SELECT_BY_ID, ("ours",)).fetchone()
        assert row == (guid, "ours", b"machine", PK, None, None, '{"ip":"::ffff:192.0.2.1"}')
        (created_at,) = conn.execute("select created_at from peer").fetchone()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created_at)
        conn.execute(UPDATE, ("ours", b"\x09" * 32, info("192.0.2.2"), guid))
        other = official_insert(conn, "theirs", "192.0.2.3")
    finally:
        conn.close()
    async with await SqlitePeerStore.open(str(db_path)) as store:
        assert await store.get("ours") == StoredPeer(
            guid, "ours", b"machine", b"\x09" * 32, "192.0.2.2"
        )
        assert await store.get("theirs") == StoredPeer(
            other, "theirs", b"uuid-of-theirs", b"\x01" * 32, "192.0.2.3"
        )
