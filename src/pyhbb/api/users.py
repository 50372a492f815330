"""User accounts: the rows of ``api_user`` and how the client sees them (docs/api.md #1, #21).

User names are 1-64 printable characters without spaces at either end, compared
case-insensitively. ``status`` is 1 (enabled) or 0 (disabled), as the client reads it.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

ENABLED = 1
DISABLED = 0
MAX_NAME = 64

USER_COLUMNS = "id, guid, name, display_name, email, note, is_admin, status"


@dataclass(frozen=True)
class User:
    id: int
    guid: bytes
    name: str
    display_name: str
    email: str
    note: str
    is_admin: bool
    status: int

    @property
    def guid_text(self) -> str:
        return str(uuid.UUID(bytes=self.guid))

    def payload(self) -> dict[str, Any]:
        """The ``user`` object of login / currentUser / users (``info`` always present)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "avatar": "",
            "email": self.email,
            "note": self.note,
            "status": self.status,
            "is_admin": self.is_admin,
            "info": {},
        }


def valid_name(name: str) -> str | None:
    """Why ``name`` cannot be a user name, or None when it can."""
    if not 1 <= len(name) <= MAX_NAME:
        return f"a user name has 1 to {MAX_NAME} characters"
    if name != name.strip() or not name.isprintable():
        return "a user name has no spaces at either end and no control characters"
    return None


def _user(row: tuple[Any, ...]) -> User:
    uid, guid, name, display, email, note, admin, status = row
    return User(int(uid), bytes(guid), name, display, email, note, bool(admin), int(status))


# -- jobs -----------------------------------------------------------------------------------


def create(
    conn: sqlite3.Connection, name: str, password_hash: str, is_admin: bool, now: float
) -> User:
    """Insert a user; raises Conflict (unique name) through the database layer."""
    guid = uuid.uuid4().bytes
    cur = conn.execute(
        "insert into api_user (guid, name, password, is_admin, status, created_at) "
        "values (?, ?, ?, ?, 1, ?)",
        (guid, name, password_hash, int(is_admin), now),
    )
    return User(int(cur.lastrowid or 0), guid, name, "", "", "", is_admin, ENABLED)


def by_id(conn: sqlite3.Connection, user_id: int) -> User | None:
    row = conn.execute(f"select {USER_COLUMNS} from api_user where id = ?", (user_id,)).fetchone()
    return None if row is None else _user(row)


def by_name(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"select {USER_COLUMNS} from api_user where name = ?", (name,)).fetchone()
    return None if row is None else _user(row)


def credentials(conn: sqlite3.Connection, name: str) -> tuple[User, str] | None:
    row = conn.execute(
        f"select {USER_COLUMNS}, password from api_user where name = ?", (name,)
    ).fetchone()
    return None if row is None else (_user(row[:-1]), str(row[-1]))


def set_password(conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    conn.execute("update api_user set password = ? where id = ?", (password_hash, user_id))


def set_status(conn: sqlite3.Connection, name: str, status: int) -> User | None:
    conn.execute("update api_user set status = ? where name = ?", (status, name))
    user = by_name(conn, name)
    if user is not None and status != ENABLED:
        conn.execute("delete from api_token where user_id = ?", (user.id,))
        conn.execute("delete from api_console_session where user_id = ?", (user.id,))
    return user


def set_admin(conn: sqlite3.Connection, name: str, is_admin: bool) -> User | None:
    conn.execute("update api_user set is_admin = ? where name = ?", (int(is_admin), name))
    return by_name(conn, name)


def page(
    conn: sqlite3.Connection, offset: int, limit: int, only_enabled: bool
) -> tuple[int, list[User]]:
    where = "where status = 1" if only_enabled else ""
    (total,) = conn.execute(f"select count(*) from api_user {where}").fetchone()
    rows = conn.execute(
        f"select {USER_COLUMNS} from api_user {where} order by name limit ? offset ?",
        (limit, offset),
    ).fetchall()
    return int(total), [_user(r) for r in rows]


def summaries(conn: sqlite3.Connection) -> list[tuple[User, int, float | None]]:
    """Every user with the number of devices they own and their last successful login
    (client or console), for the console's user list."""
    rows = conn.execute(
        f"select {', '.join('u.' + c.strip() for c in USER_COLUMNS.split(','))}, "
        "(select count(*) from api_device d where d.owner_id = u.id), "
        "(select max(at) from api_login_log l where l.user_id = u.id and l.ok = 1) "
        "from api_user u order by u.name limit 10000"
    ).fetchall()
    return [(_user(r[:8]), int(r[8]), None if r[9] is None else float(r[9])) for r in rows]


def names(conn: sqlite3.Connection, limit: int = 1000) -> list[str]:
    return [
        str(r[0]) for r in conn.execute("select name from api_user order by name limit ?", (limit,))
    ]
