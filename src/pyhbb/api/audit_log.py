"""Reading the audit and sign-in logs for the web console: filtered, newest first, paged.

Pages are keyset pages on the row id (``before`` = the last id of the previous page), so
the cost of a page does not grow with the log. A connection is one row here: the
``new`` event opens it (the "head"), and the authenticated and ``close`` events point
at it through ``conn_ref`` (set once, when they are stored); a head's events are read
through the ``conn_ref`` index. Plain users see the events of the devices they own and
their own sign-ins; admins see everything.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from pyhbb.api.device_list import like_pattern
from pyhbb.api.users import User

MAX_PAGE = 200


@dataclass(frozen=True)
class LogFilter:
    device: str = ""
    """Exact device ID."""
    who: str = ""
    """Part of the other side: the controlling ID or name, a user name for sign-ins."""
    since: float | None = None
    until: float | None = None
    before: int | None = None
    limit: int = 50


@dataclass
class Connection:
    id: int
    device_id: str
    conn_id: int | None
    opened_at: float | None
    ip: str
    peer_id: str = ""
    peer_name: str = ""
    type: int | None = None
    closed_at: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.opened_at is None or self.closed_at is None:
            return None
        return self.closed_at - self.opened_at


@dataclass(frozen=True)
class LogPage:
    rows: list[Any]
    next_before: int | None


def _common(
    alias: str, f: LogFilter, viewer: User, owned_by: str = "device_guid"
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if f.device:
        where.append(f"{alias}.device_id = ?")
        args.append(f.device)
    if f.since is not None:
        where.append(f"{alias}.at >= ?")
        args.append(f.since)
    if f.until is not None:
        where.append(f"{alias}.at < ?")
        args.append(f.until)
    if f.before is not None:
        where.append(f"{alias}.id < ?")
        args.append(f.before)
    if not viewer.is_admin:
        where.append(f"{alias}.{owned_by} in (select guid from api_device where owner_id = ?)")
        args.append(viewer.id)
    return where, args


def _page(rows: list[Any], limit: int, ids: list[int]) -> tuple[list[Any], int | None]:
    if len(rows) > limit:
        return rows[:limit], ids[limit - 1]
    return rows, None


def connections(conn: sqlite3.Connection, viewer: User, f: LogFilter) -> LogPage:
    where, args = _common("h", f, viewer)
    where += ["h.conn_id is not null", "(h.action = 'new' or h.conn_ref is null)"]
    if f.who:
        where.append(
            "exists (select 1 from api_audit_conn e where (e.id = h.id or e.conn_ref = h.id) "
            "and (e.peer_id like ? escape '\\' or e.peer_name like ? escape '\\'))"
        )
        args += [like_pattern(f.who)] * 2
    heads = conn.execute(
        "select h.id, h.device_id, h.conn_id, h.at, h.ip, h.action, h.peer_id, h.peer_name, "
        f"h.type, h.note from api_audit_conn h where {' and '.join(where)} "
        "order by h.id desc limit ?",
        [*args, f.limit + 1],
    ).fetchall()
    heads, next_before = _page(heads, f.limit, [int(h[0]) for h in heads])
    found: dict[int, Connection] = {}
    for hid, device_id, conn_id, at, ip, action, peer_id, peer_name, typ, note in heads:
        c = Connection(int(hid), device_id, conn_id, at if action == "new" else None, ip)
        _absorb(c, action, at, peer_id, peer_name, typ, note)
        found[c.id] = c
    if found:
        marks = ", ".join("?" for _ in found)
        for ref, action, at, peer_id, peer_name, typ, note in conn.execute(
            "select conn_ref, action, at, peer_id, peer_name, type, note from api_audit_conn "
            f"where conn_ref in ({marks}) order by id",
            list(found),
        ):
            _absorb(found[int(ref)], action, at, peer_id, peer_name, typ, note)
    return LogPage(list(found.values()), next_before)


def _absorb(
    c: Connection, action: str, at: float, peer_id: str, peer_name: str, typ: Any, note: str
) -> None:
    if peer_id:
        c.peer_id = peer_id
    if peer_name:
        c.peer_name = peer_name
    if typ is not None:
        c.type = int(typ)
    if action == "close":
        c.closed_at = float(at)
    if note:
        c.notes.append(note)


def _info(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def files(conn: sqlite3.Connection, viewer: User, f: LogFilter) -> LogPage:
    where, args = _common("a", f, viewer)
    if f.who:
        where.append("a.peer_id like ? escape '\\'")
        args.append(like_pattern(f.who))
    sql = "select a.id, a.at, a.device_id, a.peer_id, a.type, a.path, a.is_file, a.info "
    sql += "from api_audit_file a" + (f" where {' and '.join(where)}" if where else "")
    rows = conn.execute(f"{sql} order by a.id desc limit ?", [*args, f.limit + 1]).fetchall()
    out = []
    for rid, at, device_id, peer_id, typ, path, is_file, info in rows:
        parsed = _info(info)
        listed = parsed.get("files")
        names = (
            [str(x[0]) for x in listed if isinstance(x, list) and x]
            if isinstance(listed, list)
            else []
        )
        out.append(
            {
                "id": rid, "at": at, "device_id": device_id, "peer_id": peer_id, "type": typ,
                "path": path, "is_file": is_file, "ip": str(parsed.get("ip", "")),
                "name": str(parsed.get("name", "")), "num": parsed.get("num"),
                "files": names[:10],
            }
        )  # fmt: skip
    page, next_before = _page(out, f.limit, [int(r[0]) for r in rows])
    return LogPage(page, next_before)


def alarms(conn: sqlite3.Connection, viewer: User, f: LogFilter) -> LogPage:
    where, args = _common("a", f, viewer)
    if f.who:
        where.append("a.info like ? escape '\\'")
        args.append(like_pattern(f.who))
    sql = "select a.id, a.at, a.device_id, a.typ, a.info from api_audit_alarm a"
    sql += f" where {' and '.join(where)}" if where else ""
    rows = conn.execute(f"{sql} order by a.id desc limit ?", [*args, f.limit + 1]).fetchall()
    out = [{"id": r[0], "at": r[1], "device_id": r[2], "typ": r[3], "info": r[4]} for r in rows]
    page, next_before = _page(out, f.limit, [int(r[0]) for r in rows])
    return LogPage(page, next_before)


def sign_ins(conn: sqlite3.Connection, viewer: User, f: LogFilter) -> LogPage:
    where: list[str] = []
    args: list[Any] = []
    if not viewer.is_admin:
        where.append("l.user_id = ?")
        args.append(viewer.id)
    if f.device:
        where.append("l.device_id = ?")
        args.append(f.device)
    if f.who:
        where.append("l.name = ?")
        args.append(f.who)
    for cond, value in (("l.at >= ?", f.since), ("l.at < ?", f.until), ("l.id < ?", f.before)):
        if value is not None:
            where.append(cond)
            args.append(value)
    sql = "select l.id, l.at, l.name, l.ip, l.device_id, l.os, l.ok from api_login_log l"
    sql += f" where {' and '.join(where)}" if where else ""
    rows = conn.execute(f"{sql} order by l.id desc limit ?", [*args, f.limit + 1]).fetchall()
    out = [
        {"id": r[0], "at": r[1], "name": r[2], "ip": r[3], "device_id": r[4], "os": r[5],
         "ok": bool(r[6])}
        for r in rows
    ]  # fmt: skip
    page, next_before = _page(out, f.limit, [int(r[0]) for r in rows])
    return LogPage(page, next_before)
