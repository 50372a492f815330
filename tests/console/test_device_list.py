"""The console's device list on a real SQLite file: keyset pages in every sort and
direction visit each device exactly once, in order, forwards and backwards, including
the devices that have no value for the sorted column (listed after the others)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from pyhbb.api import device_list as dl
from pyhbb.api.http import ApiError
from pyhbb.api.schema import MIGRATIONS
from pyhbb.api.users import User
from pyhbb.store.database import SqliteDatabase

ADMIN = User(1000, b"", "admin", "", "", "", True, 1)


async def seeded(tmp_path: Path) -> tuple[SqliteDatabase, dict[str, dict[str, object]]]:
    db = await SqliteDatabase.open(str(tmp_path / "db_v2.sqlite3"), migrations=MIGRATIONS)
    expected: dict[str, dict[str, object]] = {}

    def job(conn: sqlite3.Connection) -> None:
        conn.execute(
            "insert into api_user (id, guid, name, password, created_at) "
            "values (7, ?, 'owner', 'x', 0)",
            (os.urandom(16),),
        )
        for i in range(60):
            peer_id = f"{(i * 37) % 101:03d}-dev"
            guid = os.urandom(16)
            conn.execute(
                "insert into peer (guid, id, uuid, pk, info, created_at) "
                "values (?, ?, ?, ?, '{}', ?)",
                (guid, peer_id, b"u", b"k", f"2026-01-01 00:00:{i % 7:02d}"),
            )
            row: dict[str, object] = {"created": f"2026-01-01 00:00:{i % 7:02d}"}
            if i % 3:
                host = "" if i % 5 == 0 else f"host{(i * 13) % 17:02d}"  # ties on purpose
                seen = None if i % 4 == 0 else float(i % 9)
                conn.execute(
                    "insert into api_device (guid, hostname, last_seen, owner_id) "
                    "values (?, ?, ?, ?)",
                    (guid, host, seen, 7 if i % 2 else None),
                )
                row.update(hostname=host, last_seen=seen, owned=bool(i % 2))
            expected[peer_id] = row

    await db.write(job)
    return db, expected


def walk(conn: sqlite3.Connection, query: dl.DeviceQuery) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = dl.rows(conn, ADMIN, dl.DeviceQuery(**{**query.__dict__, "after": after}))
        pages.append([d.device_id for d in page.devices])
        if page.next is None:
            return pages
        after = page.next


@pytest.mark.parametrize("sort", dl.SORTS)
@pytest.mark.parametrize("descending", [False, True])
async def test_keyset_pages_cover_every_device_once(
    tmp_path: Path, sort: str, descending: bool
) -> None:
    db, expected = await seeded(tmp_path)
    try:
        query = dl.DeviceQuery(sort=sort, descending=descending, limit=7)
        pages = await db.read(lambda c: walk(c, query))
        seen = [i for p in pages for i in p]
        assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
        assert all(len(p) == 7 for p in pages[:-1])
        if sort == "id":
            assert seen == sorted(expected, reverse=descending)
        elif sort in ("hostname", "last_seen"):
            with_value = [i for i in seen if expected[i].get(sort)]
            key = [expected[i][sort] for i in with_value]
            assert key == sorted(key, reverse=descending)  # type: ignore[type-var]
            rest = seen[len(with_value) :]
            assert rest == sorted(rest)  # the others after, by ID
            assert set(rest) == {i for i in expected if not expected[i].get(sort)}

        # Backwards from the last page with the "previous" cursors: the same pages.
        def back(conn: sqlite3.Connection) -> list[list[str]]:
            last = dl.rows(conn, ADMIN, dl.DeviceQuery(**{**query.__dict__, "after": None}))
            while last.next is not None:
                last = dl.rows(
                    conn, ADMIN, dl.DeviceQuery(**{**query.__dict__, "after": last.next})
                )
            result = [[d.device_id for d in last.devices]]
            while last.prev is not None:
                last = dl.rows(
                    conn, ADMIN, dl.DeviceQuery(**{**query.__dict__, "before": last.prev})
                )
                result.insert(0, [d.device_id for d in last.devices])
            return result

        assert await db.read(back) == pages
    finally:
        await db.close()


async def test_filters_and_counts(tmp_path: Path) -> None:
    db, expected = await seeded(tmp_path)
    try:
        owned = sorted(i for i, r in expected.items() if r.get("owned"))
        plain = User(7, b"", "owner", "", "", "", False, 1)

        def job(conn: sqlite3.Connection) -> tuple[list[str], tuple[int, bool], list[str]]:
            mine = [d.device_id for d in dl.rows(conn, plain, dl.DeviceQuery(limit=500)).devices]
            by_owner = dl.DeviceQuery(owner="owner", limit=500)
            named = [d.device_id for d in dl.rows(conn, ADMIN, by_owner).devices]
            return mine, dl.count(conn, ADMIN, dl.DeviceQuery(text="DEV")), named

        mine, total, named = await db.read(job)
        assert mine == owned and named == owned
        assert total == (60, False)  # case-insensitive substring of the ID
        with pytest.raises(ApiError):
            dl.Cursor.decode("not-a-cursor")
        with pytest.raises(ApiError):
            dl.DeviceQuery(sort="password")
    finally:
        await db.close()
