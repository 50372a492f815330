"""Access tokens: opaque random strings of which only the SHA-256 is stored.

One token per user and device (the client's ``id`` and ``uuid``): logging in again from
the same device replaces the old one. Expiry slides: each use pushes it ``ttl`` ahead,
written at most once per ``slide_every`` seconds so that a busy client does not cost a
database write per call. A token is accepted only while its user is enabled, checked
on every call, so disabling a user (from any process) stops its tokens at once; tokens
are rows, so they survive a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


@dataclass(frozen=True)
class TokenPolicy:
    ttl: float = 7 * 86400.0
    slide_every: float = 60.0

    def expires_at(self, now: float) -> float:
        return now + self.ttl

    def should_slide(self, used_at: float, now: float) -> bool:
        return now - used_at >= self.slide_every


# -- jobs (run on the database threads) --------------------------------------------------


def issue(
    conn: sqlite3.Connection,
    user_id: int,
    device_id: str,
    device_uuid: str,
    digest: bytes,
    now: float,
    expires_at: float,
) -> None:
    conn.execute(
        "delete from api_token where user_id = ? and "
        "((device_id = ? and device_uuid = ?) or expires_at <= ?)",
        (user_id, device_id, device_uuid, now),
    )
    conn.execute(
        "insert into api_token (hash, user_id, device_id, device_uuid, created_at, used_at, "
        "expires_at) values (?, ?, ?, ?, ?, ?, ?)",
        (digest, user_id, device_id, device_uuid, now, now, expires_at),
    )


def lookup(conn: sqlite3.Connection, digest: bytes, now: float) -> tuple[int, float] | None:
    """(user id, last use) of a live token whose user is enabled, else None."""
    row = conn.execute(
        "select t.user_id, t.used_at from api_token t join api_user u on u.id = t.user_id "
        "where t.hash = ? and t.expires_at > ? and u.status = 1",
        (digest, now),
    ).fetchone()
    return None if row is None else (int(row[0]), float(row[1]))


def slide(conn: sqlite3.Connection, digest: bytes, now: float, expires_at: float) -> None:
    conn.execute(
        "update api_token set used_at = ?, expires_at = ? where hash = ?",
        (now, expires_at, digest),
    )


def revoke(conn: sqlite3.Connection, digest: bytes) -> None:
    conn.execute("delete from api_token where hash = ?", (digest,))


def revoke_user(conn: sqlite3.Connection, user_id: int) -> int:
    return conn.execute("delete from api_token where user_id = ?", (user_id,)).rowcount
