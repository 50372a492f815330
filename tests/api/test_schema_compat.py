"""The API's tables beside ``peer`` in db_v2.sqlite3: the official server still opens the
file, and ``peer`` keeps exactly the official declaration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pyhbb.api.schema import MIGRATIONS
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.store.official import (
    EXPECTED_COLUMNS,
    EXPECTED_INDEXES,
    SELECT_BY_ID,
    official_db,
    official_insert,
    schema_facts,
)


async def test_official_server_opens_a_file_with_api_tables(tmp_path: Path) -> None:
    path = tmp_path / "db_v2.sqlite3"
    db = await SqliteDatabase.open(str(path), migrations=MIGRATIONS)
    await db.close()
    db = await SqliteDatabase.open(str(path), migrations=MIGRATIONS)  # migrations run once
    await db.close()
    with sqlite3.connect(path) as conn:
        tables = {
            name for (name,) in conn.execute("select name from sqlite_schema where type='table'")
        }
    api_tables = {t for t in tables if t.startswith("api_")}
    assert {"api_user", "api_token", "api_device", "api_ab", "api_audit_conn"} <= api_tables
    assert tables - api_tables - {"peer"} <= {"pyhbb_migration", "pyhbb_migrations", "pyhbb_schema"}

    columns, indexes, without_rowid, _sql = schema_facts(path)
    assert (columns, indexes, without_rowid) == (EXPECTED_COLUMNS, EXPECTED_INDEXES, True)
    official = tmp_path / "official.sqlite3"
    official_db(official).close()
    assert schema_facts(official) == schema_facts(path)

    # What the official server does at start-up and on RegisterPk, with plain sqlite3.
    conn = official_db(path)
    try:
        guid = official_insert(conn, "official1", "192.0.2.1")
        assert conn.execute(SELECT_BY_ID, ("official1",)).fetchone()[0] == guid
    finally:
        conn.close()
    db = await SqliteDatabase.open(str(path), migrations=MIGRATIONS)
    try:
        assert (await SqlitePeerStore(db).get("official1")) is not None
    finally:
        await db.close()
