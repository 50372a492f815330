"""Read-only checks a file must pass before pyhbb writes anything to it.

A DB_URL pointing at the wrong file (another application's database, a backup of
something else, garbage) must be refused exactly as it was found: not switched to WAL,
not given an index or a table, no ``-wal``/``-shm`` left beside it. So the file is first
looked at with a connection that cannot write and leaves no side files, and only a file
that passes is opened for writing. The one write that may come first is SQLite's own
crash recovery: a rollback journal left "hot" by a writer that died mid-transaction is
rolled back, as by any program that reads the file, restoring its last committed state.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from pyhbb.store.base import StoreError
from pyhbb.store.migrations import check_not_newer, recorded_versions
from pyhbb.store.schema import missing_peer_schema

HEADER = b"SQLite format 3\x00"
_WAL_VERSION = 2  # file format bytes 18-19 (write and read version) of a WAL database
_READONLY_ROLLBACK = 776  # SQLITE_READONLY_ROLLBACK: a hot journal must be rolled back
_NOT_A_DATABASE = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_LOCKED = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


@dataclass(frozen=True, slots=True)
class Findings:
    """What a file that passed needs."""

    complete: bool
    """The official ``peer`` table and its indexes are all there: nothing to create."""


_NEW_FILE = Findings(complete=False)


def inspect(path: str, *, busy_timeout: float, latest: Mapping[str, int]) -> Findings:
    """Decide, reading only, whether ``path`` may be used; raises :class:`StoreError` if not.

    ``latest`` is the migration version this code knows per component: a file migrated
    further by a newer pyhbb is refused. A missing or empty file passes (it gets created).
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return _NEW_FILE
    except OSError as e:
        raise StoreError(
            f"database {path}: cannot read it ({e.strerror}): point DB_URL at a file this "
            "user may read and write"
        ) from e
    if not header:
        return _NEW_FILE
    if not header.startswith(HEADER) or len(header) < 100:
        raise _refused(path, "it is not an SQLite database")
    try:
        return _inspect_database(path, header, busy_timeout, latest)
    except StoreError as e:
        raise _refused(path, str(e)) from e
    except sqlite3.Error as e:
        raise _unreadable(path, e, busy_timeout) from e


def _inspect_database(
    path: str, header: bytes, busy_timeout: float, latest: Mapping[str, int]
) -> Findings:
    wal = header[18] == _WAL_VERSION or header[19] == _WAL_VERSION
    if wal and not os.path.exists(f"{path}-wal"):
        # Everything is in the main file. A read-only connection would still create
        # -wal and -shm (and leave them); an immutable one touches nothing.
        uri = f"file:{quote(path)}?immutable=1"
    else:
        # The -wal may hold committed transactions (a live or copied database): read it
        # too. Read-only, so closing does not checkpoint it into the main file.
        uri = f"file:{quote(path)}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    try:
        try:
            statements = missing_peer_schema(conn)
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", None) != _READONLY_ROLLBACK:
                raise
            # A writer crashed mid-transaction in rollback-journal mode. Any SQLite reader
            # rolls that back before reading; it restores the file as last committed.
            _recover(path, busy_timeout)
            statements = missing_peer_schema(conn)
        check_not_newer(recorded_versions(conn), latest)
    finally:
        conn.close()
    return Findings(complete=not statements)


def _recover(path: str, busy_timeout: float) -> None:
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("select count(*) from sqlite_master").fetchone()
    finally:
        conn.close()


def _unreadable(path: str, e: sqlite3.Error, busy_timeout: float) -> StoreError:
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _NOT_A_DATABASE:
        return _refused(path, f"SQLite cannot read it ({e})")
    if code in _LOCKED:
        return StoreError(
            f"database {path}: another process kept it locked for {busy_timeout:g} s ({e}); "
            "stop that process or try again"
        )
    return StoreError(
        f"database {path}: cannot read it ({e}): check that this user may read and write "
        "the file and its directory"
    )


def _refused(path: str, problem: str) -> StoreError:
    return StoreError(
        f"database {path} refused: {problem}. It was left untouched; point DB_URL at the "
        "hbbs database, or at a new file to start empty"
    )
