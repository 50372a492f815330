"""The official ``db_v2.sqlite3`` format (docs/protocol.md §10.4): DB_URL, schema, ``info``, errors.

Everything here is plain, synchronous SQLite code; the threads in :mod:`.workers` call it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from urllib.parse import quote

from pyhbb.store.base import IdTaken, StoreError

log = logging.getLogger(__name__)

DEFAULT_DB_URL = "./db_v2.sqlite3"

# Declared types and constraints are copied from the official declaration on purpose:
# the official server must find "its" table when it opens our file, and tools comparing
# schemas must see no difference. WITHOUT ROWID keeps the guid as the clustered key.
CREATE_TABLE = """create table if not exists peer (
    guid blob primary key not null,
    id varchar(100) not null,
    uuid blob not null,
    pk blob not null,
    created_at datetime not null default(current_timestamp),
    user blob,
    status tinyint,
    note varchar(300),
    info text not null
) without rowid"""

CREATE_INDEXES = (
    "create unique index if not exists index_peer_id on peer (id)",
    "create index if not exists index_peer_user on peer (user)",
    "create index if not exists index_peer_created_at on peer (created_at)",
    "create index if not exists index_peer_status on peer (status)",
)

# SQLite primary result codes (the low byte of an extended code) that say nothing bad
# about the connection itself: it is kept open after them and reopened after any other.
_HARMLESS_CODES = {5, 6, 19}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CONSTRAINT


def db_path_from_url(db_url: str) -> str:
    """The file named by a ``DB_URL`` value.

    Accepts a plain path (what upstream documents) and, like sqlx, ``sqlite:`` /
    ``sqlite://`` prefixes and ``?key=value`` parameters. Parameters such as ``mode=rwc``
    are dropped: we always create a missing file, whereas upstream only does for plain
    paths (its "create if missing" step looks for a file named like the whole URL).
    """
    url = db_url.strip() or DEFAULT_DB_URL
    for prefix in ("sqlite://", "sqlite:"):
        if url[: len(prefix)].lower() == prefix:
            url = url[len(prefix) :]
            break
    path, _, params = url.partition("?")
    if params:
        log.info("DB_URL parameters ignored: %s", params)
    if not path or path.startswith(":memory:"):
        # Each thread has its own connection, so an in-memory database would be empty
        # for every reader; refuse instead of losing every registration at exit.
        raise StoreError(f"DB_URL {db_url!r} does not name a database file")
    return path


def connect(path: str, *, busy_timeout: float, create: bool) -> sqlite3.Connection:
    """Open a connection with the official settings (synchronous=FULL, foreign keys on).

    ``create=False`` never creates the file: readers must not leave an empty database
    behind if the real one was removed. Autocommit mode (``isolation_level=None``) lets
    the writer issue its own BEGIN/COMMIT for group commit.
    """
    if create:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    else:
        uri = f"file:{quote(path)}?mode=rw"
        conn = sqlite3.connect(uri, timeout=busy_timeout, isolation_level=None, uri=True)
    try:
        conn.execute("pragma foreign_keys = on")
        conn.execute("pragma synchronous = full")
    except BaseException:
        conn.close()
        raise
    return conn


def prepare(conn: sqlite3.Connection) -> None:
    """Switch to WAL and create the schema if absent (both no-ops on a ready database)."""
    readonly: sqlite3.Error | None = None
    try:
        conn.execute("pragma journal_mode = wal")
        # "if not exists" on existing objects writes nothing, so a complete schema in a
        # read-only file gets here without error.
        conn.execute(CREATE_TABLE)
        for statement in CREATE_INDEXES:
            conn.execute(statement)
    except sqlite3.OperationalError as e:
        # A read-only file can still serve reads, with every write reporting StoreError:
        # better than refusing to start, provided the table itself is there.
        if not _is_readonly(e):
            raise
        readonly = e
    # Proves the file is a database with the columns we use (a Pro table may add more).
    conn.execute("select guid, id, uuid, pk, info from peer limit 0").fetchall()
    if readonly is not None:
        log.warning("database is read-only (%s): peers can be read, not stored", readonly)


def info_json(ip: str, previous: object = None) -> str:
    """The ``info`` text for a row: compact ``{"ip":"..."}`` as the official server writes.

    When updating, other keys of the previous object are kept (the official server
    overwrites them): Pro may store more there, and it costs us nothing to preserve it.
    """
    info = _parse_object(previous) or {}
    info["ip"] = ip
    return json.dumps(info, separators=(",", ":"), ensure_ascii=False)


def ip_from_info(info: object) -> str:
    """``info.ip``, or "" when the text is not a JSON object with a string ``ip``."""
    ip = (_parse_object(info) or {}).get("ip")
    return ip if isinstance(ip, str) else ""


def _parse_object(text: object) -> dict[str, object] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_bytes(value: object) -> bytes:
    """A blob column as bytes; tolerates rows where another writer stored text or NULL."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b""


def store_error(e: BaseException) -> StoreError:
    """The :class:`StoreError` reported to the caller for an exception in a store thread."""
    if isinstance(e, StoreError):
        return e
    err: StoreError
    if isinstance(e, sqlite3.IntegrityError) and "peer.id" in str(e):
        err = IdTaken("id already used by another peer")
    elif isinstance(e, sqlite3.Error):
        err = StoreError(f"database error: {e}")
    else:
        err = StoreError(f"unexpected error in the database thread: {e!r}")
    err.__cause__ = e
    return err


def connection_survives(e: BaseException) -> bool:
    """Whether a connection is still trustworthy after this error (else reopen it)."""
    code = getattr(e, "sqlite_errorcode", None)
    # No SQLite code: the error came from Python (bad parameter type, bug in a job).
    return code is None or code & 0xFF in _HARMLESS_CODES


def _is_readonly(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == 8  # SQLITE_READONLY
