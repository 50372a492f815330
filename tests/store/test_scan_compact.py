"""The warm start's fast path (scan_compact + PeerRegistry.add_rows) against the row-by-row
one (scan + add_stored): the same pages, the same records byte for byte, for rows of
every shape another writer could leave in the official table."""

from __future__ import annotations

import json
import random
import sqlite3
from functools import partial

import pytest

from pyhbb.rendezvous.peer_registry import EXPIRED, PeerRegistry
from pyhbb.store.base import StoredPeer
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore

pytestmark = pytest.mark.timeout(120)

IPS = [
    "192.0.2.7",
    "0.0.0.0",
    "255.255.255.255",
    "10.0.0.1",
    "01.2.3.4",  # leading zero: not canonical, dropped
    "1.2.3.256",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "1.2.3.4 ",
    "١.٢.٣.٤",  # Arabic-Indic digits
    "2001:db8::1",
    "2001:DB8::1",  # upper case: canonicalised
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "2001:db8:0:0:1:0:0:1",
    "fe80::1%eth0",
    "::1",
    "::",
    "::ffff:192.0.2.9",  # mapped: becomes IPv4
    "::ffff:c000:209",
    "::192.0.2.9",
    "0:0:0:0:0:ffff:192.0.2.9",
    "1:2:3:4:5:6:7:8:9",
    "::g",
    "not an ip",
    "",
]


def info_for(rnd: random.Random, ip: str) -> object:
    """The ``info`` column: mostly the compact form, else everything else it could be."""
    shape = rnd.randrange(16)
    if shape < 8:
        return json.dumps({"ip": ip}, separators=(",", ":"), ensure_ascii=False)
    return [
        json.dumps({"ip": ip}),  # with spaces
        json.dumps({"x": 1, "ip": ip}, separators=(",", ":")),  # other keys first
        json.dumps({"ip": ip, "x": [1]}, separators=(",", ":")),
        json.dumps({"ip": ip}, separators=(",", ":"), ensure_ascii=True).replace(".", "\\u002e"),
        '{"ip":"' + ip + '\n"}',  # a raw control character: not JSON
        "{}",
        '{"ip":7}',
        '["ip"]',
        "not json",
        '{"ip":"}',
        '{"ip":"a"b"}',
        json.dumps({"ip": ip}).encode(),  # a blob
        7,
        '{"ip":"' + ip + '","ip":"198.51.100.1"}',  # a duplicate key: the last one wins
    ][shape - 8]


def varied_rows(n: int) -> list[tuple[object, ...]]:
    rnd = random.Random(20240611)
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        peer_id: object = f"{100_000_000 + i}"
        if i % 97 == 0:
            peer_id = [i, float(i) + 0.5, f"id {i}\n\"'\\", f"ïd-{i}-é", f"id{i}".encode()][
                (i // 97) % 5
            ]
        pk: object = rnd.randbytes(32)
        if i % 89 == 0:
            pk = [b"", rnd.randbytes(255), rnd.randbytes(256), "text key", 5][(i // 89) % 5]
        ip = IPS[i % len(IPS)] if i % 3 else f"{rnd.randrange(256)}.{i % 256}.{i // 256 % 256}.9"
        rows.append((rnd.randbytes(16), peer_id, b"uuid", pk, info_for(rnd, ip)))
    return rows


def insert_raw(rows: list[tuple[object, ...]], conn: sqlite3.Connection) -> None:
    conn.executemany("insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)", rows)


async def test_compact_pages_hold_the_values_scan_gives(db: SqliteDatabase) -> None:
    await db.write(partial(insert_raw, varied_rows(3000)))
    store = SqlitePeerStore(db)
    after = b""
    pages = 0
    while True:
        rows = await store.scan(after, 333)
        page = await store.scan_compact(after, 333)
        assert page.rows == [(r.id, r.pk, r.ip) for r in rows]
        assert [type(v) for row in page.rows for v in row] == [str, bytes, str] * len(rows)
        if not rows:
            assert page.last_guid == b""
            break
        assert page.last_guid == rows[-1].guid
        after = page.last_guid
        pages += 1
    assert pages == 10


def registry_with(present: dict[str, StoredPeer]) -> PeerRegistry:
    registry = PeerRegistry()
    for peer_id, row in present.items():
        registry.add_stored(peer_id, row)
    return registry


def contents(registry: PeerRegistry) -> tuple[dict[str, bytes], list[str]]:
    records = {peer_id: record.blob for peer_id, record in registry.items()}
    ring = registry._ring
    return records, list(ring.take(len(ring)))


@pytest.mark.parametrize("room", [10**6, 2500, 1])
async def test_add_rows_makes_the_records_add_stored_makes(db: SqliteDatabase, room: int) -> None:
    await db.write(partial(insert_raw, varied_rows(3000)))
    store = SqlitePeerStore(db)
    rows = await store.scan(b"", 5000)
    page = await store.scan_compact(b"", 5000)
    # ids already in memory keep their record, whatever the row says
    present = {row.id: row._replace(pk=b"\1" * 32, ip="203.0.113.1") for row in rows[::50]}
    for last_reg in (EXPIRED, 12_345.678):
        old, new = registry_with(present), registry_with(present)
        entered = 0
        for row in rows:  # the row-by-row path as CoreState.preload took it
            if entered == room:
                break
            if row.id not in old:
                old.add_stored(row.id, row, last_reg)
                entered += 1
        left = room
        for start in range(0, len(page.rows), 500):  # the fast path, slice by slice
            left -= new.add_rows(page.rows[start : start + 500], last_reg, left)
        assert room - left == entered
        assert contents(new) == contents(old)
        assert len(new) == len(present) + min(room, len(rows) - len(present))
