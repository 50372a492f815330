"""Running the API's SQL jobs on the one :class:`SqliteDatabase` of the process.

A job may refuse with :class:`~pyhbb.api.http.ApiError` (no such book, read-only...).
That is an answer, not a database failure: the job's own statements are undone (a
savepoint of its own) and the error is carried back as a value and raised again on the
event loop, so the database layer never sees it and the rest of a group commit stands.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pyhbb.api.http import ApiError
from pyhbb.store.database import SqliteDatabase

T = TypeVar("T")


@dataclass(frozen=True)
class _Refused:
    error: ApiError


def _unwrap(value: T | _Refused) -> T:
    if isinstance(value, _Refused):
        raise value.error
    return value


async def read(db: SqliteDatabase, job: Callable[[sqlite3.Connection], T]) -> T:
    def run(conn: sqlite3.Connection) -> T | _Refused:
        try:
            return job(conn)
        except ApiError as e:
            return _Refused(e)

    return _unwrap(await db.read(run))


async def write(db: SqliteDatabase, job: Callable[[sqlite3.Connection], T]) -> T:
    def run(conn: sqlite3.Connection) -> T | _Refused:
        conn.execute("savepoint api_job")
        try:
            value = job(conn)
        except ApiError as e:
            conn.execute("rollback to api_job")
            conn.execute("release api_job")
            return _Refused(e)
        except BaseException:
            conn.execute("rollback to api_job")
            conn.execute("release api_job")
            raise
        conn.execute("release api_job")
        return value

    return _unwrap(await db.write(run))
