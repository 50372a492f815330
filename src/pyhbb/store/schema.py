"""The official ``db_v2.sqlite3`` format (§10.4): DB_URL, connections, the ``peer`` table.

Everything here is plain, synchronous SQLite code; the database threads call it.
"""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import quote

from pyhbb.store.base import StoreError

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

ID_INDEX = "index_peer_id"
CREATE_INDEXES = {
    ID_INDEX: f"create unique index if not exists {ID_INDEX} on peer (id)",
    "index_peer_user": "create index if not exists index_peer_user on peer (user)",
    "index_peer_created_at": (
        "create index if not exists index_peer_created_at on peer (created_at)"
    ),
    "index_peer_status": "create index if not exists index_peer_status on peer (status)",
}

OFFICIAL_COLUMNS = ("guid", "id", "uuid", "pk", "created_at", "user", "status", "note", "info")
WRITTEN_COLUMNS = ("guid", "id", "uuid", "pk", "info")
"""The columns our inserts fill; every other column needs a default or to allow NULL."""

BOOKKEEPING_TABLE = "pyhbb_schema"
"""Applied migration version per component (see :mod:`pyhbb.store.migrations`)."""

SQLITE_READONLY = 8


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
    the database threads issue their own BEGIN/COMMIT (group commit, read snapshots).
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


def missing_peer_schema(conn: sqlite3.Connection) -> list[str]:
    """The statements that would complete the official ``peer`` table (none: it is ready).

    Reads only. Raises :class:`StoreError` when the database is not one we may use: a
    ``peer`` that is not the official table (a Pro table with extra columns is fine, as
    long as our inserts can fill it), or other applications' tables without ``peer``.
    """
    row = conn.execute(
        "select type from sqlite_master where name = 'peer' collate nocase"
    ).fetchone()
    if row is None:
        foreign = [
            name
            for (name,) in conn.execute(
                "select name from sqlite_master where type = 'table' "
                "and name not like 'sqlite\\_%' escape '\\' order by name"
            )
        ]
        if foreign and BOOKKEEPING_TABLE not in foreign:
            # Someone else's database: adding our table to it would be a surprise.
            raise StoreError(
                f"it has tables ({', '.join(foreign[:5])}) but no peer table: "
                "it is not an hbbs database"
            )
        return [CREATE_TABLE, *CREATE_INDEXES.values()]
    if row[0] != "table":
        raise StoreError(f"its 'peer' is a {row[0]}, not the official peer table")
    _check_peer_columns(conn)
    statements = []
    indexes = {
        str(name).lower(): (unique, partial)
        for _, name, unique, _, partial in conn.execute("pragma index_list(peer)")
    }
    for name, statement in CREATE_INDEXES.items():
        if name not in indexes:
            statements.append(statement)
    if ID_INDEX in indexes:
        columns = [str(r[2]).lower() for r in conn.execute(f"pragma index_info({ID_INDEX})")]
        if indexes[ID_INDEX] != (1, 0) or columns != ["id"]:
            raise StoreError(f"its {ID_INDEX} is not the unique index on peer (id)")
    elif conn.execute("select 1 from peer group by id having count(*) > 1 limit 1").fetchone():
        raise StoreError(f"its peer table has duplicate ids and no {ID_INDEX}")
    return statements


def _check_peer_columns(conn: sqlite3.Connection) -> None:
    columns = {
        str(name).lower(): (bool(notnull), default, pk)
        for _, name, _, notnull, default, pk in conn.execute("pragma table_info(peer)")
    }
    missing = [name for name in OFFICIAL_COLUMNS if name not in columns]
    if missing:
        raise StoreError(f"its peer table lacks the column(s) {', '.join(missing)}")
    keys = sorted((pk, name) for name, (_, _, pk) in columns.items() if pk)
    if [name for _, name in keys] != ["guid"]:
        raise StoreError("its peer table's primary key is not guid")
    unfillable = [
        name
        for name, (notnull, default, _) in columns.items()
        if notnull and default is None and name not in WRITTEN_COLUMNS
    ]
    if unfillable:
        raise StoreError(
            f"its peer table requires column(s) {', '.join(unfillable)} that hbbs cannot fill"
        )


def is_readonly(e: sqlite3.Error) -> bool:
    """Whether SQLite refused a write because the file (or its directory) is read-only."""
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == SQLITE_READONLY
