"""Searching the console's device list through the in-memory index, on a real SQLite file.

What is found must be what SQLite's ``LIKE`` finds in the ID, host name or OS user name
(the scan the index replaces), in every sort, both directions and through every page;
a plain user finds only their devices; a device registered by another process (hbbs) is
found after the next upkeep step, an ID change within the documented re-read bound; a
stale index never shows a device that does not match.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from pyhbb.api import device_list as dl
from pyhbb.api import device_search as ds
from pyhbb.api.schema import MIGRATIONS
from pyhbb.api.users import User
from pyhbb.store.database import SqliteDatabase
from pyhbb.wire import rendezvous_pb2 as pb
from tests.api.test_devices import SYSINFO
from tests.console.stack import running_stack
from tests.console.support import Browser
from tests.console.test_console import signed_in
from tests.integration.test_newer_clients import change_id
from tests.support.rdclient import UdpPeer

ADMIN = User(1000, b"", "admin", "", "", "", True, 1)
OWNER = User(7, b"", "owner", "", "", "", False, 1)

# (ID, host name, user name); None: the device never sent sysinfo (no api_device row).
DEVICES = [
    ("123456789", "DESKTOP-AB12CD", "Alice"),
    ("987654321", "desktop-zz9", "bob"),
    ("Office_PC-1", "Bücher-Mac", "ÄRZTIN"),
    ("shop-till-2", "till2.local", "cashier"),
    ("555000111", "50%-off", "under_score"),
    ("555000222", "5000-off", "underXscore"),
    ("back-slash", "c:\\temp", "svc"),
    ("nul-host-1", "before\x00after", "x"),
    ("field-sep", "a\x01b", "sep"),
    ("no-sysinfo-42", None, None),
    ("777000777", "", ""),
]
TERMS = [
    "1234",  # part of a numeric ID
    "AB12",  # part of a host name, another case
    "desktop",  # two hosts, mixed case
    "ALICE",  # a user name in capitals
    "bücher",  # non-ASCII: ASCII letters fold, ü matches itself
    "ärztin",  # Ä and ä do not fold, as in SQLite's LIKE: no match
    "%",  # LIKE's wildcards are taken literally
    "_score",
    "\\",
    "sysinfo-4",  # a device without sysinfo, by its ID
    "after",  # text after a NUL in a host name
    "a\x01b",  # the index's field separator inside a search
    "q",  # nothing
    "-",  # many
]


def lower_ascii(text: str) -> str:
    return re.sub("[A-Z]", lambda m: m.group().lower(), text)


def scanned(conn: sqlite3.Connection, term: str) -> set[str]:
    """What the scan finds: LIKE on each of the three columns."""
    pattern = dl.like_pattern(term)
    rows = conn.execute(
        "select p.id from peer p left join api_device d on d.guid = p.guid "
        "where p.id like ?1 escape '\\' or d.hostname like ?1 escape '\\' "
        "or d.username like ?1 escape '\\'",
        (pattern,),
    )
    return {str(r[0]) for r in rows}


async def new_database(path: Path) -> None:
    db = await SqliteDatabase.open(str(path), migrations=MIGRATIONS)
    await db.close()


def register(
    conn: sqlite3.Connection,
    peer_id: str,
    host: str | None,
    user: str | None,
    owner: int | None = None,
    created: str | None = None,
) -> bytes:
    """Insert a peer as hbbs does (created_at from the column default), and its sysinfo."""
    guid = os.urandom(16)
    conn.execute(
        "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, '{}')",
        (guid, peer_id, os.urandom(16), b"k" * 32),
    )
    if created is not None:
        conn.execute("update peer set created_at = ? where guid = ?", (created, guid))
    if host is not None:
        conn.execute(
            "insert into api_device (guid, hostname, username, owner_id) values (?, ?, ?, ?)",
            (guid, host, user, owner),
        )
    conn.commit()
    return guid


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "db_v2.sqlite3"
    asyncio.run(new_database(path))
    connection = sqlite3.connect(path)
    connection.execute(
        "insert into api_user (id, guid, name, password, created_at) "
        "values (7, ?, 'owner', 'x', 0)",
        (os.urandom(16),),
    )
    try:
        yield connection
    finally:
        connection.close()


def loaded(conn: sqlite3.Connection) -> ds.DeviceSearch:
    index = ds.DeviceSearch()
    steps = 0
    while not index.ready:
        index.upkeep(conn)
        steps += 1
    assert steps == math.ceil(ds.CHUNKS / ds.FIRST_LOAD_BATCH)
    return index


def every_page(
    conn: sqlite3.Connection, viewer: User, query: dl.DeviceQuery, found: dl.Candidates
) -> list[str]:
    """All pages forwards, checked against the same pages backwards; the IDs in order."""
    pages: list[list[str]] = []
    page = dl.rows(conn, viewer, query, found)
    pages.append([d.device_id for d in page.devices])
    while page.next is not None:
        page = dl.rows(
            conn, viewer, dl.DeviceQuery(**{**query.__dict__, "after": page.next}), found
        )
        pages.append([d.device_id for d in page.devices])
    assert all(len(p) == query.limit for p in pages[:-1])
    back = [pages[-1]]
    while page.prev is not None:
        before = dl.DeviceQuery(**{**query.__dict__, "before": page.prev})
        page = dl.rows(conn, viewer, before, found)
        back.insert(0, [d.device_id for d in page.devices])
    if len(pages) > 1:
        assert back == pages
    return [i for p in pages for i in p]


def test_search_finds_what_like_finds_in_every_sort_and_page(
    conn: sqlite3.Connection,
) -> None:
    for i, (peer_id, host, user) in enumerate(DEVICES):
        register(conn, peer_id, host, user, created=f"2026-01-01 00:00:{i % 3:02d}")
    for i in range(60):  # enough rows for several pages of a common term
        register(conn, f"fill-{i:03d}", f"HOST-{(i * 7) % 60:02d}", f"user{i % 4}")
    index = loaded(conn)
    assert len(index) == len(DEVICES) + 60

    # The plain facts, by hand, before comparing with the scan.
    def ids(term: str) -> set[str]:
        found = dl.search(index, term)
        query = dl.DeviceQuery(text=term, limit=500)
        return {d.device_id for d in dl.rows(conn, ADMIN, query, found).devices}

    assert ids("1234") == {"123456789"}
    assert ids("ab12") == ids("AB12") == {"123456789"}
    assert ids("deskTOP") == {"123456789", "987654321"}
    assert ids("alice") == {"123456789"}
    assert ids("bücher") == ids("BÜCHER".replace("Ü", "ü")) == {"Office_PC-1"}
    assert ids("ärztin") == set()  # non-ASCII letters do not fold (SQLite's LIKE)
    assert ids("%") == {"555000111"} and ids("_score") == {"555000111"}
    assert ids("\\") == {"back-slash"}
    assert ids("sysinfo-4") == {"no-sysinfo-42"}
    assert ids("a\x01b") == {"field-sep"}  # its own text, not across two columns

    for term in TERMS:
        expected = scanned(conn, term)
        found = dl.search(index, term)
        assert found is not None
        for sort in dl.SORTS:
            for descending in (False, True):
                query = dl.DeviceQuery(text=term, sort=sort, descending=descending, limit=4)
                with_index = every_page(conn, ADMIN, query, found)
                assert with_index == every_page(conn, ADMIN, query, None), (term, sort)
                assert set(with_index) == expected and len(with_index) == len(expected)
        count = dl.count(conn, ADMIN, dl.DeviceQuery(text=term), found)
        assert count == (len(expected), False) == dl.count(conn, ADMIN, dl.DeviceQuery(text=term))


def test_many_matches_walk_in_order_and_count_from_the_index(
    conn: sqlite3.Connection,
) -> None:
    n = dl.LISTED_MIN + 150
    for i in range(n):
        register(conn, f"{400_000_000 + i * 13}", f"Desktop-{i * 7919 % n:05d}", "")
    register(conn, "laptop-1", "laptop", "")
    index = loaded(conn)
    found = dl.search(index, "DESKTOP")
    assert found is not None and found.total == n and found.listed is None
    assert found.by_id == []  # no ID matches: the sorted walks need no scan of peer
    assert dl.count(conn, ADMIN, dl.DeviceQuery(text="desktop"), found) == (n, False)
    for sort in ("id", "hostname"):
        query = dl.DeviceQuery(text="desktop", sort=sort, limit=200)
        listed = every_page(conn, ADMIN, query, found)
        assert len(listed) == n and "laptop-1" not in listed
        if sort == "id":
            assert listed == sorted(listed)


def test_a_plain_user_finds_only_their_devices(conn: sqlite3.Connection) -> None:
    mine = {register(conn, f"mine-{i}", f"desk-{i}", "", owner=7) for i in range(3)}
    for i in range(5):
        register(conn, f"other-{i}", f"desk-{i}", "")
    assert len(mine) == 3
    index = loaded(conn)
    for term in ("desk", "DESK-1", "other", "mine-2"):
        found = dl.search(index, term)
        query = dl.DeviceQuery(text=term, limit=2)
        seen = every_page(conn, OWNER, query, found)
        assert all(i.startswith("mine-") for i in seen)
        assert set(seen) == {i for i in scanned(conn, term) if i.startswith("mine-")}
        assert dl.count(conn, OWNER, query, found) == (len(seen), False)
    assert dl.one(conn, OWNER, "other-1") is None


def test_new_registrations_and_id_changes_are_found_within_the_bound(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    for i in range(40):
        register(conn, f"old-{i:02d}", f"old-host-{i}", "", created="2020-01-01 00:00:00")
    index = loaded(conn)
    # hbbs is another process: its own connection, its own commits.
    hbbs = sqlite3.connect(tmp_path / "db_v2.sqlite3")

    def ids(term: str) -> list[str]:
        found = dl.search(index, term)
        return [d.device_id for d in dl.rows(conn, ADMIN, dl.DeviceQuery(text=term), found).devices]

    # Registered a moment ago: found after the next upkeep step (one tick).
    guid = register(hbbs, "fresh-001", None, None)
    index.upkeep(conn)
    assert ids("fresh-0") == ["fresh-001"]
    # Its first sysinfo comes seconds later: its host name too, at the next step.
    conn.execute(
        "insert into api_device (guid, hostname, username) values (?, 'Reception', 'Eve')",
        (guid,),
    )
    conn.commit()
    index.upkeep(conn)
    assert ids("recep") == ids("EVE") == ["fresh-001"]

    # An ID change (hbbs renames the row, nothing else moves): the old ID no longer
    # matches at once (checked in SQL), the new one once the device's chunk is re-read.
    hbbs.execute("update peer set id = 'renamed-07' where id = 'old-07'")
    hbbs.commit()
    assert ids("old-07") == []
    assert ids("old-host-7") == ["renamed-07"]  # found by host name, shown as it is now
    steps = 0
    while ids("renamed-0") != ["renamed-07"]:
        index.upkeep(conn)
        steps += 1
        assert steps <= index.reread_every / index.tick, "not re-read within the bound"
    assert index.reread_every <= ds.CYCLE

    # A deleted device is never shown, then leaves the index in turn.
    hbbs.execute("delete from peer where id = 'old-08'")
    hbbs.commit()
    assert ids("old-08") == []
    for _ in range(math.ceil(index.reread_every / index.tick)):
        index.upkeep(conn)
    assert index.find("old-08", 10) == [] and len(index) == 40
    hbbs.close()


def test_rows_another_writer_left_odd_are_indexed_in_their_range(
    conn: sqlite3.Connection,
) -> None:
    # guids hbbs would not write: text, one byte, 0x00 and 0xff first bytes.
    odd = [("text-guid", "guid as text"), (b"\x05", "one byte"), (b"\x00" * 16, "zeros")]
    odd.append((b"\xff" * 16, "ones"))
    for guid, name in odd:
        conn.execute(
            "insert into peer (guid, id, uuid, pk, info) values (?, ?, x'00', x'00', '{}')",
            (guid, name.replace(" ", "-")),
        )
    conn.commit()
    index = loaded(conn)
    for guid, name in odd:
        found = index.find(name.replace(" ", "-").upper(), 10)
        assert found == [guid], name
    for _ in range(math.ceil(ds.CHUNKS / ds.PER_TICK)):  # re-reads keep one copy each
        index.upkeep(conn)
    assert len(index) == len(odd)
    # A NUL in a host name (hbbs's clients cannot send one, a hostile sysinfo might) does
    # not end the device's text early, nor shift its neighbours in the chunk.
    nul = b"\x05" + os.urandom(15)
    conn.execute(
        "insert into peer (guid, id, uuid, pk, info) values (?, 'nul-dev', x'00', x'00', '{}')",
        (nul,),
    )
    conn.execute(
        "insert into api_device (guid, hostname, username) values (?, ?, 'Zed')",
        (nul, "Yonder\x00Yonder"),
    )
    conn.commit()
    index.upkeep(conn)  # a recent row: put into its chunk
    assert index.find("ONE-BYTE", 10) == [b"\x05"] and index.find("zed", 10) == [nul]
    assert index.find("NUL-DEV", 10, ids_only=True) == [nul] == index.find("yond", 10)
    assert index.count("yond", 10) == 1
    conn.execute("update api_device set username = 'Zed2' where guid = ?", (nul,))
    conn.commit()
    index.upkeep(conn)  # its text changed: the chunk is rebuilt from its parts
    assert index.find("zed2", 10) == [nul] and index.find("ONE-BYTE", 10) == [b"\x05"]
    for _ in range(math.ceil(ds.CHUNKS / ds.PER_TICK)):
        index.upkeep(conn)
    assert index.find("zed", 10) == [nul] and len(index) == len(odd) + 1


def test_before_loading_and_odd_searches(
    conn: sqlite3.Connection,
) -> None:
    register(conn, "123", "h", "u")
    index = ds.DeviceSearch()
    assert index.find("123", 5) is None and index.count("123", 5) is None
    assert dl.search(index, "123") is None  # the console then scans
    index = loaded(conn)
    assert index.find("", 5) == [] and index.find("\x00", 5) == []
    assert index.count("1", 100) == 1 and index.find("1", 1) is not None


def test_chunk_updates_and_counts() -> None:
    rows = [(b"a", b"one\x01x", b"one"), (b"b", b"two\x01x", b"two")]
    chunk = ds.Chunk.of([*rows, (b"c", b"three\x01x", b"three")])
    found: list[object] = []
    chunk.find(b"e", found, 10, ids_only=False)
    assert found == [b"a", b"c"]  # once per device: "three" has two
    found = []
    chunk.find(b"x", found, 10, ids_only=True)
    assert found == [] and chunk.ids.split() == [b"one", b"two", b"three"]
    assert chunk.texts.count(re.compile(b"x[^\x00]*")) == 3
    assert chunk.updated([(b"a", b"one\x01x", b"one")]) is chunk
    moved = chunk.updated([(b"a", b"uno\x01x", b"uno"), (b"d", b"four\x01x", b"four")])
    found = []
    moved.find(b"o", found, 10, ids_only=True)
    assert set(found) == {b"a", b"b", b"d"} and len(moved) == 4
    assert moved.texts[0] == b"uno\x01x" and moved.ids[3] == b"four"
    empty = ds.Chunk.of([])
    assert empty.texts.blob == b"" and len(empty) == 0 and empty.updated([]) is empty
    assert empty.updated(rows).texts.split() == [b"one\x01x", b"two\x01x"]
    assert list(chunk.texts.ends) == [5, 11, 19]


async def test_console_search_over_http_with_hbbs(tmp_path: Path) -> None:
    """A device registered over UDP is found in the console at once (its ID), then by
    its host name once its sysinfo arrives; after an ID change over TCP, under the new
    ID within the re-read bound; a plain user finds only what they own."""
    async with running_stack(tmp_path) as s:
        admin = await signed_in(s.api, "admin", admin=True)
        bob = await signed_in(s.api, "bob")
        index = s.api.ctx.device_search
        assert await index.wait_ready(10)
        index.tick = 0.02  # a whole re-read turn in about a second

        async def listed(browser: Browser, term: str) -> list[str]:
            resp = await browser.get("/devices?" + urlencode({"q": term}))
            assert resp.status_code == 200, resp.text
            assert "a changed ID or host name within a minute" in resp.text
            return re.findall(r'<a href="/device\?id=([^"&]+)">', resp.text)

        async def eventually(browser: Browser, term: str, expected: list[str]) -> float:
            start = time.monotonic()
            while (found := await listed(browser, term)) != expected:
                assert time.monotonic() - start < 10, (term, found)
                await asyncio.sleep(0.02)
            return time.monotonic() - start

        device = s.api.client("Kiosk-0042")
        udp = await UdpPeer.open(s.hbbs.udp, "127.0.0.2")
        await udp.register("Kiosk-0042", uuid=device.uuid)
        await eventually(admin, "kiosk-00", ["Kiosk-0042"])
        resp = await device.device_call("/api/sysinfo", {**SYSINFO, "hostname": "Lobby-Screen"})
        assert resp.text == "SYSINFO_UPDATED"
        await eventually(admin, "LOBBY", ["Kiosk-0042"])
        assert await listed(bob, "lobby") == []  # not his

        result = await change_id(s.hbbs, "Kiosk-0042", "Kiosk-0777", device.uuid)
        assert result == pb.RegisterPkResponse.OK
        assert await listed(admin, "0042") == []  # the old ID is checked in SQL at once
        waited = await eventually(admin, "kiosk-0777", ["Kiosk-0777"])
        assert waited <= index.reread_every + 2
        assert await listed(admin, "lobby") == ["Kiosk-0777"]

        await admin.get("/device?id=Kiosk-0777")
        await admin.post(
            "/device/edit", {"id": "Kiosk-0777", "note": "", "owner": "bob", "group": ""}
        )
        assert await listed(bob, "lobby") == ["Kiosk-0777"]
        page = (await admin.get("/devices?q=%00")).status_code
        assert page == 400
        udp.close()


async def test_upkeep_waits_out_an_unreadable_database(tmp_path: Path) -> None:
    """No api_device table yet (the API's migrations not run): the upkeep fails, says so
    once, searches do not wait for it; once the table exists the index completes."""
    path = str(tmp_path / "db_v2.sqlite3")
    db = await SqliteDatabase.open(path)  # peer only
    index = ds.DeviceSearch(tick=0.01)
    upkeep = asyncio.create_task(index.keep_fresh(db))
    try:
        while not index.failing:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        assert await index.wait_ready(5) is False
        assert time.monotonic() - start < 1 and index.find("x", 1) is None
        conn = sqlite3.connect(path)
        register(conn, "later-1", None, None, created="2020-01-01 00:00:00")
        conn.close()
        await new_database(Path(path))  # the API's migrations: api_device exists now
        while index.failing:
            await asyncio.sleep(0.01)
        assert await index.wait_ready(5) is True
        assert index.find("LATER", 5) is not None and len(index) == 1 and not index.failing
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await db.close()


def test_guids_packed_and_not() -> None:
    a, b, c = b"\x01" * 8 + b"\x02" * 8, b"\x02" * 8 + b"\x03" * 8, b"\x02" * 16
    packed = ds.Guids([a, b])
    assert packed.size() < 2 * 16 + 64  # one bytes object, not two
    assert (packed[0], packed[1], packed.index(b), len(packed)) == (a, b, 1, 2)
    for absent in (c, b"short", "text"):  # c is there, across a and b: not a guid
        with pytest.raises(ValueError):
            packed.index(absent)
    assert ds.Guids([a, b, c]).index(c) == 2 and ds.Guids([a, b, c]).all() == [a, b, c]
    mixed = ds.Guids([a, "text", b"\x05", 7])
    assert (mixed[1], mixed.index(7), mixed.all()) == ("text", 3, [a, "text", b"\x05", 7])
    assert len(ds.Guids([])) == 0 and ds.Guids([]).all() == []
