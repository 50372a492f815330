"""Browser sessions of the web console, kept on the server.

The cookie holds a random token; only its SHA-256 is stored (as for API tokens), with
the user, the times and where it signed in from. A session ends when it has not been
used for ``idle`` seconds, ``lifetime`` seconds after sign-in, at sign-out, or at once
when its user is disabled (the look-up joins on an enabled user, and disabling deletes
the rows). The last use is written at most once per ``slide_every`` seconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pyhbb.api import tokens
from pyhbb.api.users import USER_COLUMNS, User

MAX_AGENT = 256


@dataclass(frozen=True)
class SessionPolicy:
    idle: float = 12 * 3600.0
    lifetime: float = 7 * 86400.0
    slide_every: float = 60.0

    def expires_at(self, created_at: float, now: float) -> float:
        return min(now + self.idle, created_at + self.lifetime)


@dataclass(frozen=True)
class BrowserSession:
    user: User
    digest: bytes
    token: str
    created_at: float
    used_at: float


@dataclass(frozen=True)
class SessionInfo:
    """A row for the "where am I signed in" list."""

    digest: bytes
    created_at: float
    used_at: float
    ip: str
    agent: str


def new_token() -> str:
    return tokens.new_token()


# -- jobs -----------------------------------------------------------------------------------


def create(
    conn: sqlite3.Connection,
    user_id: int,
    digest: bytes,
    now: float,
    expires_at: float,
    ip: str,
    agent: str,
) -> None:
    conn.execute("delete from api_console_session where expires_at <= ?", (now,))
    conn.execute(
        "insert into api_console_session (hash, user_id, created_at, used_at, expires_at, ip, "
        "agent) values (?, ?, ?, ?, ?, ?, ?)",
        (digest, user_id, now, now, expires_at, ip, agent[:MAX_AGENT]),
    )


def lookup(conn: sqlite3.Connection, digest: bytes, now: float) -> tuple[User, float, float] | None:
    """(user, created_at, used_at) of a live session of an enabled user, else None."""
    columns = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
    row = conn.execute(
        f"select {columns}, s.created_at, s.used_at from api_console_session s "
        "join api_user u on u.id = s.user_id "
        "where s.hash = ? and s.expires_at > ? and u.status = 1",
        (digest, now),
    ).fetchone()
    if row is None:
        return None
    uid, guid, name, display, email, note, admin, status = row[:8]
    user = User(int(uid), bytes(guid), name, display, email, note, bool(admin), int(status))
    return user, float(row[8]), float(row[9])


def slide(conn: sqlite3.Connection, digest: bytes, now: float, expires_at: float) -> None:
    conn.execute(
        "update api_console_session set used_at = ?, expires_at = ? where hash = ?",
        (now, expires_at, digest),
    )


def end(conn: sqlite3.Connection, digest: bytes) -> None:
    conn.execute("delete from api_console_session where hash = ?", (digest,))


def end_all(conn: sqlite3.Connection, user_id: int, keep: bytes | None = None) -> int:
    """End every session of a user (but ``keep``); returns how many ended."""
    cur = conn.execute(
        "delete from api_console_session where user_id = ? and hash is not ?",
        (user_id, keep),
    )
    return cur.rowcount


def of_user(conn: sqlite3.Connection, user_id: int, now: float) -> list[SessionInfo]:
    rows = conn.execute(
        "select hash, created_at, used_at, ip, agent from api_console_session "
        "where user_id = ? and expires_at > ? order by used_at desc limit 100",
        (user_id, now),
    ).fetchall()
    return [SessionInfo(bytes(r[0]), float(r[1]), float(r[2]), r[3], r[4]) for r in rows]
