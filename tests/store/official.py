"""The official server's side of ``db_v2.sqlite3``, written from docs/protocol.md §10.4.

Deliberately independent of ``pyhbb.store``: these helpers create and fill a database the
way the official server does, with nothing but the ``sqlite3`` module.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

OFFICIAL_SCHEMA = """
create table if not exists peer (
    guid blob primary key not null,
    id varchar(100) not null,
    uuid blob not null,
    pk blob not null,
    created_at datetime not null default(current_timestamp),
    user blob,
    status tinyint,
    note varchar(300),
    info text not null
) without rowid;
create unique index if not exists index_peer_id on peer (id);
create index if not exists index_peer_user on peer (user);
create index if not exists index_peer_created_at on peer (created_at);
create index if not exists index_peer_status on peer (status);
"""

# PRAGMA table_info rows (cid, name, type, notnull, dflt_value, pk) of the §10.4 table.
# SQLite reports the declared type, upper-casing the names it knows (blob, text).
EXPECTED_COLUMNS = [
    (0, "guid", "BLOB", 1, None, 1),
    (1, "id", "varchar(100)", 1, None, 0),
    (2, "uuid", "BLOB", 1, None, 0),
    (3, "pk", "BLOB", 1, None, 0),
    (4, "created_at", "datetime", 1, "current_timestamp", 0),
    (5, "user", "BLOB", 0, None, 0),
    (6, "status", "tinyint", 0, None, 0),
    (7, "note", "varchar(300)", 0, None, 0),
    (8, "info", "TEXT", 1, None, 0),
]

# index name -> (unique, origin, partial, columns); "pk" is the WITHOUT ROWID key.
EXPECTED_INDEXES = {
    "index_peer_id": (1, "c", 0, ["id"]),
    "index_peer_user": (0, "c", 0, ["user"]),
    "index_peer_created_at": (0, "c", 0, ["created_at"]),
    "index_peer_status": (0, "c", 0, ["status"]),
    "sqlite_autoindex_peer_1": (1, "pk", 0, ["guid"]),
}

SELECT_BY_ID = "select guid, id, uuid, pk, user, status, info from peer where id = ?"
INSERT = "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)"
UPDATE = "update peer set id = ?, pk = ?, info = ? where guid = ?"


def official_db(path: Path, journal_mode: str = "wal") -> sqlite3.Connection:
    """Create (or open) a database as the official server does; the caller closes it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"pragma journal_mode = {journal_mode}")
    conn.execute("pragma foreign_keys = on")
    conn.execute("pragma synchronous = full")
    conn.executescript(OFFICIAL_SCHEMA)
    return conn


def info(ip: str) -> str:
    return json.dumps({"ip": ip}, separators=(",", ":"))


def official_insert(
    conn: sqlite3.Connection, peer_id: str, ip: str, *, pk: bytes = b"\x01" * 32
) -> bytes:
    """Insert a row like the official RegisterPk path; returns its guid."""
    guid = uuid.uuid4().bytes
    conn.execute(INSERT, (guid, peer_id, b"uuid-of-" + peer_id.encode(), pk, info(ip)))
    return guid


def schema_facts(
    path: Path,
) -> tuple[list[tuple[object, ...]], dict[str, tuple[object, ...]], bool, list[str]]:
    """(table_info rows, indexes as in EXPECTED_INDEXES, whether peer is WITHOUT ROWID,
    the schema's SQL texts with whitespace normalised)."""
    conn = sqlite3.connect(path)
    try:
        columns = [tuple(r) for r in conn.execute("pragma table_info(peer)")]
        indexes: dict[str, tuple[object, ...]] = {}
        for _seq, name, unique, origin, partial in conn.execute("pragma index_list(peer)"):
            cols = [r[2] for r in conn.execute(f"pragma index_info({name})")]
            indexes[name] = (unique, origin, partial, cols)
        (without_rowid,) = conn.execute(
            "select wr from pragma_table_list where name = 'peer'"
        ).fetchone()
        sql = [
            " ".join(text.split())
            for (text,) in conn.execute(
                "select sql from sqlite_schema where tbl_name = 'peer' and sql is not null "
                "order by name"
            )
        ]
    finally:
        conn.close()
    return columns, indexes, bool(without_rowid), sql
