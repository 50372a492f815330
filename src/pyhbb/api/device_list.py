"""The device list of the web console: every ``peer`` joined with what the API knows.

Searching, sorting and paging stay fast at 100k devices because

* pages are read by *keyset*: a page starts after the sort key and tie-breaker of the
  previous page's last row, so SQLite walks an index (ID, registration time) or keeps
  only the best ``limit`` rows of one table scan (host name, user, OS, version, last
  seen) instead of counting off an offset;
* the walk touches one table: filters on the other are ``guid in (subquery)`` sets that
  SQLite builds once, and the columns of the page's few rows are joined afterwards
  (joining 100k rows costs ~1 µs each: the whole budget);
* totals are counted up to :data:`COUNT_CAP`.

Columns kept by the API (``api_device``) are missing for devices that never called it.
Sorted by such a column, the devices that have a value come first (in the chosen
direction), then the others by ID: two *segments* walked one after the other, so a
cursor names its segment.

Who sees what is decided here, once: admins every peer, a user the devices they own.
Changes (note, owner, group, disabled, delete) write only ``peer.note``, ``peer.status``
and ``api_device``; the official columns hbbs relies on are never touched, and a
deleted row is simply gone (hbbs inserts a new one when the ID registers again).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from pyhbb.api.http import ApiError
from pyhbb.api.users import User
from pyhbb.store.peers import as_bytes, ip_from_info

COUNT_CAP = 10_000
MAX_PAGE = 500
MAX_NOTE = 300  # the width of peer.note
MAX_SEARCH = 100
ENABLED, DISABLED = 1, 0
DAMAGED = "this page link is damaged; start again from the first page"

# Sorts on api_device: column -> the condition "has a value".
DEVICE_SORTS = {
    "hostname": "d.hostname != ''",
    "username": "d.username != ''",
    "os": "d.os != ''",
    "version": "d.version != ''",
    "last_seen": "d.last_seen is not null",
}
SORTS = ("id", "created", *DEVICE_SORTS)

_FROM = (
    "from peer p left join api_device d on d.guid = p.guid "
    "left join api_user u on u.id = d.owner_id "
    "left join api_device_group g on g.id = d.group_id"
)
_COLUMNS = (
    "p.id, p.guid, p.status, p.note, p.created_at, p.info, d.hostname, d.os, d.username, "
    "d.version, u.name, g.name, d.last_seen, d.last_ip, d.sysinfo"
)


@dataclass(frozen=True)
class Device:
    """One row of the console's device list."""

    device_id: str
    guid: bytes
    disabled: bool
    note: str
    created_at: str
    registered_ip: str
    hostname: str
    os: str
    username: str
    version: str
    owner: str
    group: str
    last_seen: float | None
    last_ip: str
    sysinfo: dict[str, str]

    @property
    def cpu(self) -> str:
        return self.sysinfo.get("cpu", "")

    @property
    def memory(self) -> str:
        return self.sysinfo.get("memory", "")


def _device(r: tuple[Any, ...]) -> Device:
    (peer_id, guid, status, note, created, info, host, os_, user, version) = r[:10]
    owner, group, seen, last_ip, sysinfo = r[10:]
    parsed: dict[str, str] = {}
    if sysinfo:
        try:
            value = json.loads(sysinfo)
        except ValueError:
            value = None
        if isinstance(value, dict):
            parsed = {str(k): v for k, v in value.items() if isinstance(v, str)}
    return Device(
        device_id=str(peer_id),
        guid=as_bytes(guid),
        disabled=status is not None and int(status) == DISABLED,
        note=note or "",
        created_at=str(created or ""),
        registered_ip=ip_from_info(info),
        hostname=host or "",
        os=os_ or "",
        username=user or "",
        version=version or "",
        owner=owner or "",
        group=group or "",
        last_seen=None if seen is None else float(seen),
        last_ip=last_ip or "",
        sysinfo=parsed,
    )


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: strictly after (or before) ``keys`` in segment ``segment``."""

    segment: int
    keys: tuple[str | float, ...]

    def encode(self) -> str:
        raw = json.dumps([self.segment, *self.keys], ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor of a ``next``/``prev`` link; 400 for anything we did not make."""
        if len(text) > 1024:
            raise ApiError(DAMAGED)
        try:
            value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            raise ApiError(DAMAGED) from None
        if (
            not isinstance(value, list)
            or len(value) < 2
            or not isinstance(value[0], int)
            or isinstance(value[0], bool)
            or not all(isinstance(k, str | int | float) and not isinstance(k, bool) for k in value)
        ):
            raise ApiError(DAMAGED)
        return cls(value[0], tuple(value[1:]))


@dataclass(frozen=True)
class DeviceQuery:
    text: str = ""
    """Case-insensitive part of the ID, host name or OS user name."""
    owner: str | None = None
    """Only devices owned by this user name ("" = devices without owner)."""
    group: str | None = None
    """Only devices in this group ("" = devices in no group)."""
    sort: str = "id"
    descending: bool = False
    after: Cursor | None = None
    before: Cursor | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ApiError(f"cannot sort by {self.sort!r}; choose one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ApiError(f"a page has 1 to {MAX_PAGE} devices")
        if len(self.text) > MAX_SEARCH:
            raise ApiError(f"the search text is longer than {MAX_SEARCH} characters")


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    total: int
    """Matching devices, counted up to COUNT_CAP (``total_capped`` says so)."""
    total_capped: bool
    next: Cursor | None
    prev: Cursor | None


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` taken literally (escape ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_LIKE = "like ? escape '\\'"


def _peer_filters(query: DeviceQuery, viewer: User) -> tuple[list[str], list[Any]]:
    """Conditions on ``peer p`` alone (api_device through guid sets)."""
    where: list[str] = []
    args: list[Any] = []
    if not viewer.is_admin:
        where.append("p.guid in (select guid from api_device where owner_id = ?)")
        args.append(viewer.id)
    if query.text:
        where.append(
            f"(p.id {_LIKE} or p.guid in (select guid from api_device "
            f"where hostname {_LIKE} or username {_LIKE}))"
        )
        args += [like_pattern(query.text)] * 3
    for value, column, table in (
        (query.owner, "owner_id", "api_user"),
        (query.group, "group_id", "api_device_group"),
    ):
        if value:
            where.append(
                f"p.guid in (select guid from api_device where {column} = "
                f"(select id from {table} where name = ?))"
            )
            args.append(value)
        elif value is not None:
            where.append(f"p.guid not in (select guid from api_device where {column} is not null)")
    return where, args


def _device_filters(query: DeviceQuery, viewer: User) -> tuple[list[str], list[Any]]:
    """The same conditions on ``api_device d`` alone (peer through a guid set)."""
    where: list[str] = []
    args: list[Any] = []
    if not viewer.is_admin:
        where.append("d.owner_id = ?")
        args.append(viewer.id)
    if query.text:
        where.append(
            f"(d.hostname {_LIKE} or d.username {_LIKE} "
            f"or d.guid in (select guid from peer where id {_LIKE}))"
        )
        args += [like_pattern(query.text)] * 3
    for value, column, table in (
        (query.owner, "owner_id", "api_user"),
        (query.group, "group_id", "api_device_group"),
    ):
        if value:
            where.append(f"d.{column} = (select id from {table} where name = ?)")
            args.append(value)
        elif value is not None:
            where.append(f"d.{column} is null")
    return where, args


@dataclass(frozen=True)
class _Segment:
    """One ordered walk: ``select`` yields the order keys then the guid."""

    table: str
    keys: tuple[str, ...]
    where: tuple[str, ...]
    args: tuple[Any, ...]
    ascending: bool
    blob_last: bool  # the tie-breaker is a guid (sent in cursors as hex)

    def fetch(
        self, conn: sqlite3.Connection, start: tuple[Any, ...] | None, forward: bool, n: int
    ) -> list[tuple[Any, ...]]:
        """Up to ``n`` rows after ``start`` (``forward``) or before it, nearest first."""
        ascending = self.ascending == forward
        where, args = list(self.where), list(self.args)
        if start is not None:
            row = ", ".join(self.keys)
            where.append(f"({row}) {'>' if ascending else '<'} ({', '.join('?' * len(start))})")
            args += start
        order = ", ".join(f"{k} {'asc' if ascending else 'desc'}" for k in self.keys)
        guid = self.table.split()[-1] + ".guid"
        sql = f"select {', '.join(self.keys)}, {guid} from {self.table}"
        sql += f" where {' and '.join(where)}" if where else ""
        return conn.execute(f"{sql} order by {order} limit ?", [*args, n]).fetchall()

    def cursor_keys(self, row: tuple[Any, ...]) -> tuple[str | float, ...]:
        keys = list(row[: len(self.keys)])
        if self.blob_last:
            keys[-1] = as_bytes(keys[-1]).hex()
        return tuple(keys)

    def start(self, cursor: Cursor) -> tuple[Any, ...]:
        if len(cursor.keys) != len(self.keys):
            raise ApiError(DAMAGED)
        keys: list[Any] = list(cursor.keys)
        if self.blob_last:
            try:
                keys[-1] = bytes.fromhex(str(keys[-1]))
            except ValueError:
                raise ApiError(DAMAGED) from None
        return tuple(keys)


def _segments(query: DeviceQuery, viewer: User) -> list[_Segment]:
    peer_where, peer_args = _peer_filters(query, viewer)
    asc = not query.descending
    if query.sort == "id":
        return [_Segment("peer p", ("p.id",), (*peer_where,), (*peer_args,), asc, False)]
    if query.sort == "created":
        keys = ("p.created_at", "p.guid")
        return [_Segment("peer p", keys, (*peer_where,), (*peer_args,), asc, True)]
    column, has_value = f"d.{query.sort}", DEVICE_SORTS[query.sort]
    dev_where, dev_args = _device_filters(query, viewer)
    with_value = _Segment(
        "api_device d", (column, "d.guid"), (*dev_where, has_value), (*dev_args,), asc, True
    )
    without = _Segment(
        "peer p",
        ("p.id",),
        (*peer_where, f"p.guid not in (select guid from api_device d where {has_value})"),
        (*peer_args,),
        True,
        False,
    )
    return [with_value, without]


def _walk(
    conn: sqlite3.Connection,
    segments: list[_Segment],
    cursor: Cursor | None,
    forward: bool,
    n: int,
) -> list[tuple[int, tuple[Any, ...]]]:
    """Up to ``n`` (segment, row) from the cursor on, across segments, nearest first."""
    if cursor is None:
        index, start = (0 if forward else len(segments) - 1), None
    else:
        if not 0 <= cursor.segment < len(segments):
            raise ApiError(DAMAGED)
        index = cursor.segment
        start = segments[index].start(cursor)
    found: list[tuple[int, tuple[Any, ...]]] = []
    while 0 <= index < len(segments) and len(found) < n:
        rows = segments[index].fetch(conn, start, forward, n - len(found))
        found += [(index, r) for r in rows]
        index += 1 if forward else -1
        start = None
    return found


def count(conn: sqlite3.Connection, viewer: User, query: DeviceQuery) -> tuple[int, bool]:
    """Matching devices (counted up to COUNT_CAP when filtered) and whether there are more."""
    where, args = _peer_filters(query, viewer)
    if not where:  # exact: the count of a table is cheap
        (total,) = conn.execute("select count(*) from peer").fetchone()
        return int(total), False
    else:
        (total,) = conn.execute(
            f"select count(*) from (select 1 from peer p where {' and '.join(where)} "
            f"limit {COUNT_CAP + 1})",
            args,
        ).fetchone()
    return min(int(total), COUNT_CAP), int(total) > COUNT_CAP


def rows(conn: sqlite3.Connection, viewer: User, query: DeviceQuery) -> DevicePage:
    """One page of devices ``viewer`` may see (``total`` left 0: see :func:`count`)."""
    segments = _segments(query, viewer)
    backwards = query.before is not None
    cursor = query.before if backwards else query.after
    found = _walk(conn, segments, cursor, not backwards, query.limit + 1)
    more = len(found) > query.limit
    found = found[: query.limit]
    if backwards:
        found.reverse()
    guids = [as_bytes(row[-1]) for _, row in found]
    details: dict[bytes, Device] = {}
    if guids:
        marks = ", ".join("?" for _ in guids)
        for r in conn.execute(f"select {_COLUMNS} {_FROM} where p.guid in ({marks})", guids):
            device = _device(r)
            details[device.guid] = device
    # A row gone between the two reads (deleted meanwhile) is left out of this page.
    devices = [details[g] for g in guids if g in details]
    first = Cursor(found[0][0], segments[found[0][0]].cursor_keys(found[0][1])) if found else None
    last = Cursor(found[-1][0], segments[found[-1][0]].cursor_keys(found[-1][1])) if found else None
    has_prev, has_next = (more, True) if backwards else (cursor is not None, more)
    return DevicePage(devices, 0, False, last if has_next else None, first if has_prev else None)


def page(conn: sqlite3.Connection, viewer: User, query: DeviceQuery) -> DevicePage:
    """A page with its total, in one job (the console runs the two on two readers)."""
    total, capped = count(conn, viewer, query)
    return replace(rows(conn, viewer, query), total=total, total_capped=capped)


def one(conn: sqlite3.Connection, viewer: User, device_id: str) -> Device | None:
    """The device with this ID if ``viewer`` may see it."""
    sql = f"select {_COLUMNS} {_FROM} where p.id = ?"
    args: list[Any] = [device_id]
    if not viewer.is_admin:
        sql += " and d.owner_id = ?"
        args.append(viewer.id)
    row = conn.execute(sql, args).fetchone()
    return None if row is None else _device(row)


def visible_ids(conn: sqlite3.Connection, viewer: User, device_ids: list[str]) -> list[str]:
    """The IDs of ``device_ids`` that ``viewer`` may see (for the live online refresh)."""
    if viewer.is_admin or not device_ids:
        return device_ids
    marks = ", ".join("?" for _ in device_ids)
    found = conn.execute(
        f"select p.id from peer p join api_device d on d.guid = p.guid "
        f"where d.owner_id = ? and p.id in ({marks})",
        [viewer.id, *device_ids],
    ).fetchall()
    return [str(r[0]) for r in found]


# -- changes (admins) -----------------------------------------------------------------------


def _guid(conn: sqlite3.Connection, device_id: str) -> bytes:
    row = conn.execute("select guid from peer where id = ?", (device_id,)).fetchone()
    if row is None:
        raise ApiError(f"no device with ID {device_id!r} is registered", 404)
    return as_bytes(row[0])


def set_note(conn: sqlite3.Connection, device_id: str, note: str) -> None:
    if len(note) > MAX_NOTE:
        raise ApiError(f"a device note has at most {MAX_NOTE} characters")
    guid = _guid(conn, device_id)
    conn.execute("update peer set note = ? where guid = ?", (note, guid))


def set_owner(conn: sqlite3.Connection, device_id: str, owner: str) -> None:
    """Make the user named ``owner`` own the device ("" = nobody)."""
    guid = _guid(conn, device_id)
    owner_id = None
    if owner:
        row = conn.execute("select id from api_user where name = ?", (owner,)).fetchone()
        if row is None:
            raise ApiError(f"no user named {owner!r}", 404)
        owner_id = int(row[0])
    conn.execute(
        "insert into api_device (guid, owner_id) values (?, ?) "
        "on conflict (guid) do update set owner_id = excluded.owner_id",
        (guid, owner_id),
    )


def set_disabled(conn: sqlite3.Connection, device_id: str, disabled: bool) -> None:
    """``peer.status`` 0 marks a disabled device (the column hbbs leaves unused)."""
    guid = _guid(conn, device_id)
    conn.execute(
        "update peer set status = ? where guid = ?", (DISABLED if disabled else ENABLED, guid)
    )


def delete(conn: sqlite3.Connection, device_id: str) -> bytes:
    """Remove the ``peer`` row and what the API kept about it; returns the old guid.

    History stays: audit rows and address-book entries name the ID as text. The ID is
    free again: hbbs treats its next RegisterPk as a new registration (new guid).
    """
    guid = _guid(conn, device_id)
    conn.execute("delete from api_device where guid = ?", (guid,))
    conn.execute("delete from peer where guid = ?", (guid,))
    return guid
