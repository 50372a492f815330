"""Versioned schema changes for the tables that pyhbb adds beside the official ``peer``.

Each component (``"api"``, …) owns tables named with its prefix (``api_…``) and a list of
:class:`Migration` steps numbered 1, 2, 3… The table ``pyhbb_schema`` records the last
step applied per component. Steps run in order, each in its own ``BEGIN IMMEDIATE``
transaction that first re-reads the recorded version, so two processes opening the same
file at once apply each step exactly once. The database runs them as write jobs (see
:mod:`pyhbb.store.database`). The ``peer`` table is never migrated: its
schema is the official one, forever.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pyhbb.store.base import StoreError
from pyhbb.store.schema import BOOKKEEPING_TABLE

log = logging.getLogger(__name__)

CREATE_BOOKKEEPING = (
    f"create table if not exists {BOOKKEEPING_TABLE} "
    "(component text primary key not null, version integer not null)"
)

_COMPONENT = re.compile(r"[a-z][a-z0-9]*\Z")


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema.

    ``apply`` is a tuple of SQL statements, or a function given the connection inside the
    step's transaction. Neither may BEGIN, COMMIT or ROLLBACK (the step would no longer be
    atomic; the database refuses such statements), so no ``executescript`` either.
    """

    component: str
    """Tables of this component carry its prefix: ``api`` owns ``api_user``, …"""
    version: int
    """1, 2, 3… applied in order, each exactly once."""
    name: str
    """Short description, logged when the step is applied."""
    apply: Callable[[sqlite3.Connection], None] | tuple[str, ...]


def latest_versions(migrations: Sequence[Migration]) -> dict[str, int]:
    """The version each component reaches; raises ValueError if the steps are malformed."""
    steps: dict[str, list[int]] = {}
    for m in migrations:
        if not _COMPONENT.match(m.component) or m.component in ("peer", "pyhbb", "sqlite"):
            raise ValueError(f"bad migration component name {m.component!r}")
        steps.setdefault(m.component, []).append(m.version)
    for component, versions in steps.items():
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"migrations of {component!r} must be numbered 1, 2, 3… in order")
    return {component: len(versions) for component, versions in steps.items()}


def recorded_versions(conn: sqlite3.Connection) -> dict[str, int]:
    """The version recorded per component ({} for a database never migrated). Reads only."""
    exists = conn.execute(
        "select 1 from sqlite_master where type = 'table' and name = ?", (BOOKKEEPING_TABLE,)
    ).fetchone()
    if not exists:
        return {}
    try:
        rows = conn.execute(f"select component, version from {BOOKKEEPING_TABLE}").fetchall()
    except sqlite3.OperationalError as e:
        raise StoreError(f"its {BOOKKEEPING_TABLE} table is not pyhbb's ({e})") from e
    if not all(isinstance(c, str) and isinstance(v, int) for c, v in rows):
        raise StoreError(f"its {BOOKKEEPING_TABLE} table holds values pyhbb never wrote")
    return dict(rows)


def check_not_newer(recorded: Mapping[str, int], latest: Mapping[str, int]) -> None:
    """Refuse a database a newer pyhbb has migrated: this code would misread its tables."""
    for component, known in latest.items():
        version = recorded.get(component, 0)
        if version > known:
            raise StoreError(
                f"its {component!r} tables are at version {version}, newer than this pyhbb "
                f"knows (version {known}): run the newer pyhbb that upgraded it, or restore "
                "a backup taken before the upgrade"
            )


def pending(migrations: Sequence[Migration], recorded: Mapping[str, int]) -> list[Migration]:
    """The steps not applied yet, in the order they must run."""
    return [m for m in migrations if recorded.get(m.component, 0) < m.version]


def apply_step(m: Migration, latest: int, conn: sqlite3.Connection) -> bool:
    """Write job: apply one step unless another process did meanwhile; True if this job did.

    It runs in the writer's ``BEGIN IMMEDIATE`` transaction, so the version read here
    cannot change before the commit; a failure undoes the whole step.
    """
    conn.execute(CREATE_BOOKKEEPING)
    version = recorded_versions(conn).get(m.component, 0)
    check_not_newer({m.component: version}, {m.component: latest})
    if version >= m.version:
        return False
    try:
        if isinstance(m.apply, tuple):
            for statement in m.apply:
                conn.execute(statement)
        else:
            m.apply(conn)
    except Exception as e:
        log.error("migration %s %d (%s) failed", m.component, m.version, m.name, exc_info=True)
        raise StoreError(
            f"migration {m.component} {m.version} ({m.name}) failed and was undone: {e}"
        ) from e
    conn.execute(
        f"insert into {BOOKKEEPING_TABLE} (component, version) values (?, ?) "
        "on conflict (component) do update set version = excluded.version",
        (m.component, m.version),
    )
    return True
