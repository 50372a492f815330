"""The one owner of the SQLite database in a process; repositories (peers, …) sit on it.

Usage::

    db = await SqliteDatabase.open(db_url, readers=4, migrations=API_MIGRATIONS)
    peers = SqlitePeerStore(db)           # a repository: plain functions turned into jobs
    row = await db.read(lambda conn: conn.execute("select …").fetchone())
    await db.write(partial(insert_user, name))
    ...
    await db.close()                      # every write already requested is committed first

Threads
    SQLite calls block (disk, fsync, lock waits), so none runs on the event loop. One
    writer thread owns the only writing connection of the process; a pool of ``readers``
    threads (hbbs: MAX_DATABASE_CONNECTIONS) each owns a read connection. A job is plain
    synchronous code given a ``sqlite3.Connection``; ``read``/``write`` queue it and await
    its result, which comes back through ``loop.call_soon_threadsafe``. The file is in WAL
    mode, so reads never wait for the writer, nor the writer for reads. The threads run at
    a lower CPU priority than the loop (``thread_nice``, Linux): when they want the same
    core, the loop's answers go first and the rows wait.

Group commit
    Every write job queued when the writer becomes free goes into one ``BEGIN IMMEDIATE``
    transaction and one fsync. Under load a burst of registrations, address-book edits and
    audit lines costs one commit, not one each; ``write_transactions`` counts the commits.
    That is why a process must have one writer: a second one would compete with it for
    the file's single write lock, each committing only its own writes (more fsyncs for
    the same work, and lock waits on the event loop's behalf).

Savepoints
    Each job runs inside its own savepoint. A job that fails while the transaction stays
    intact (a UNIQUE violation, a bug, a StoreError it raises on purpose) is undone alone
    and the rest of the batch commits. A failure that may have ended the transaction (I/O
    error, full disk, corruption) aborts the batch, which is then replayed one job per
    transaction so that only the culprit fails. A connection that may be broken is closed
    and reopened on the next job; reopening the writer checks the file again. Jobs must
    not BEGIN, COMMIT, ROLLBACK or touch the writer's savepoint (no ``executescript``,
    no ``with conn:``): an authorizer refuses it, and the job fails as a bug.

Errors
    Every failure reaches the caller as :class:`~pyhbb.store.base.StoreError`: a UNIQUE or
    PRIMARY KEY violation as :class:`~pyhbb.store.base.Conflict` (``.constraint`` names
    it, ``peer.id`` as :class:`~pyhbb.store.base.IdTaken`), a bug in a job as a StoreError
    whose traceback this module logged (callers log one line, no traceback).

Read snapshots
    A read job runs in a read transaction: all its statements see the same committed
    state. Reader connections are ``query_only``: writes go through the writer or fail.

Opening, and files we refuse
    ``open`` first inspects the file without writing (see :mod:`pyhbb.store.inspection`):
    not SQLite, a ``peer`` table that is not the official one, another application's
    tables, or a component migrated by a newer pyhbb are refused, and the refused file is
    left byte for byte as it was. Then it switches the file to WAL, creates the official
    ``peer`` table and its indexes if absent (never altering the columns of an existing
    one, so the official server can always open our file), and applies pending
    migrations.

Migrations
    Tables beyond ``peer`` belong to components (``api_…``) and change through
    :class:`~pyhbb.store.migrations.Migration` steps, recorded per component in the
    ``pyhbb_schema`` table. Each step is a write job: its own transaction, which re-reads
    the recorded version under the write lock and applies the step only if still needed.
    A failed step is undone entirely and ``open`` raises; the version stays where it was,
    and the ``peer`` table stays usable (hbbs, which has no migrations, still opens it).

Several processes
    hbbs and the API service may open the same file at once: inspection only reads, table
    creation and every migration step run under ``BEGIN IMMEDIATE`` and re-check what
    another process may have done meanwhile, and a writer waits up to ``busy_timeout``
    for the other process's write lock before its jobs fail with StoreError. Within one
    process, open the database once, with the migrations of every component the process
    runs, and share it between their repositories.

Durability
    ``synchronous=FULL`` on every connection: when ``write`` returns, the commit is on
    disk and survives kill -9 or a power cut. ``close`` commits every write requested
    before it, then closes the connections.

A read-only file opens if it needs nothing written (complete ``peer`` table, no pending
migration): reads work, every write fails with StoreError.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Self, TypeVar, cast

from pyhbb.observability.db_stats import READ, WRITE, DatabaseStats
from pyhbb.store.base import Conflict, IdTaken, StoreError
from pyhbb.store.inspection import Findings, inspect
from pyhbb.store.migrations import (
    Migration,
    apply_step,
    latest_versions,
    pending,
    recorded_versions,
)
from pyhbb.store.schema import (
    DEFAULT_DB_URL,
    connect,
    db_path_from_url,
    is_readonly,
    missing_peer_schema,
)
from pyhbb.store.workers import (
    BEGIN_WRITE,
    COMMIT,
    DATABASE_THREAD_NICE,
    ROLLBACK,
    Outcomes,
    Reader,
    Request,
    Writer,
)

__all__ = ["Conflict", "IdTaken", "Job", "Migration", "SqliteDatabase", "StoreError"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
"""Plain synchronous SQLite code, run on a database thread inside a transaction."""


class SqliteDatabase:
    """The process's SQLite file: one writer thread with group commit, a reader pool.

    Create it with :meth:`open`; share it between repositories; :meth:`close` it once.
    """

    path: str
    """The database file."""

    def __init__(
        self,
        path: str,
        *,
        readers: int,
        busy_timeout: float,
        latest: Mapping[str, int],
        thread_nice: int = DATABASE_THREAD_NICE,
    ) -> None:
        """Prefer :meth:`open`, which also waits until the database is usable."""
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.path = path
        self._busy_timeout = busy_timeout
        self._latest = latest
        self._lock = threading.Lock()  # makes "closed?" and "enqueue" one step
        self.stats = DatabaseStats()
        """Latency, jobs in flight and failures, for the metrics and the health check."""
        self._closed = False
        self._stopped: asyncio.Future[list[Any]] | None = None
        outcomes = Outcomes()
        self._reads: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._readers = [
            Reader(n, self._reads, self._open_reader, outcomes, nice=thread_nice)
            for n in range(readers)
        ]
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[Any] = loop.create_future()
        setup = Request(recorded_versions, loop, self._ready)
        self._writer = Writer(self._open_writer, setup, outcomes, nice=thread_nice)
        for thread in (self._writer, *self._readers):
            thread.start()

    @classmethod
    async def open(
        cls,
        db_url: str = DEFAULT_DB_URL,
        *,
        readers: int = 1,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] = (),
        thread_nice: int = DATABASE_THREAD_NICE,
    ) -> Self:
        """Open the database named by ``DB_URL``, creating the file and schema if missing.

        ``readers`` is the read pool size; ``busy_timeout`` how long a statement waits for
        a lock held by another process. ``migrations`` are the steps of the components
        this process uses, applied if pending. ``thread_nice`` is how much nicer than the
        caller the database threads run (Linux; 0 leaves them as they are). Raises
        :class:`StoreError` with a message for the admin if the file cannot be used
        (ValueError for malformed arguments).
        """
        latest = latest_versions(migrations)
        db = cls(
            db_path_from_url(db_url),
            readers=readers,
            busy_timeout=busy_timeout,
            latest=latest,
            thread_nice=thread_nice,
        )
        try:
            recorded: dict[str, int] = await db._ready
            if db.thread_nice is not None:
                log.info(
                    "database: its threads run at nice %d, so the event loop wins a busy core",
                    db.thread_nice,
                )
            for step in pending(migrations, recorded):
                if await db.write(partial(apply_step, step, latest[step.component])):
                    log.info(
                        "database: applied migration %s %d (%s)",
                        step.component,
                        step.version,
                        step.name,
                    )
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def thread_nice(self) -> int | None:
        """The writer thread's nice value once open (None: not lowered, or not Linux)."""
        return self._writer.nice

    @property
    def write_transactions(self) -> int:
        """How many write transactions were committed (group commit makes this < writes)."""
        return self._writer.transactions

    async def read(self, job: Job[T]) -> T:
        """Run ``job`` on a reader thread, in one read transaction (a WAL snapshot)."""
        return cast(T, await self._submit(self._reads, job, READ))

    async def write(self, job: Job[T]) -> T:
        """Run ``job`` on the writer thread; when this returns, its changes are on disk.

        The job shares a transaction with the other queued writes (group commit) inside
        its own savepoint: if it raises, its changes alone are undone.
        """
        return cast(T, await self._submit(self._writer.requests, job, WRITE))

    async def close(self) -> None:
        """Commit every write already requested, then close connections and end threads.

        Later calls raise :class:`StoreError`; closing twice is harmless.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._stopped is None:
                self._closed = True
                stops: list[asyncio.Future[Any]] = []
                # FIFO queues: each stop request comes after every job already queued.
                for q in (self._writer.requests, *[self._reads] * len(self._readers)):
                    stops.append(loop.create_future())
                    q.put(Request(None, loop, stops[-1]))
                self._stopped = asyncio.gather(*stops)
        await asyncio.shield(self._stopped)
        for thread in (self._writer, *self._readers):
            thread.join()  # immediate: each thread's last act was to report it stopped

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _submit(
        self, requests: queue.SimpleQueue[Request], job: Job[Any], operation: str
    ) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise StoreError("the database is closed")
            requests.put(Request(job, loop, future))
        stats = self.stats
        stats.started(operation)
        started = time.monotonic()
        try:
            result = await future
        except Conflict:  # the database worked: it refused a duplicate
            stats.finished(operation, time.monotonic() - started, time.monotonic(), None)
            raise
        except StoreError as e:
            stats.finished(operation, time.monotonic() - started, time.monotonic(), str(e))
            raise
        except BaseException:  # the caller was cancelled: the job's outcome is unknown
            stats.abandoned(operation)
            raise
        now = time.monotonic()
        stats.finished(operation, now - started, now, None)
        return result

    # The openers below run on the database threads, for the first job and after errors.

    def _open_reader(self) -> sqlite3.Connection:
        conn = connect(self.path, busy_timeout=self._busy_timeout, create=False)
        try:
            conn.execute("pragma query_only = on")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """Check the file read-only, then open it for writing and complete the schema."""
        findings = inspect(self.path, busy_timeout=self._busy_timeout, latest=self._latest)
        try:
            conn = connect(self.path, busy_timeout=self._busy_timeout, create=True)
        except sqlite3.Error as e:
            raise self._unusable(e) from e
        try:
            self._prepare(conn, findings)
        except sqlite3.Error as e:
            conn.close()
            raise self._unusable(e) from e
        except BaseException:
            conn.close()
            raise
        return conn

    def _unusable(self, e: sqlite3.Error) -> StoreError:
        if (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF in (5, 6):  # BUSY, LOCKED
            return StoreError(
                f"database {self.path}: another process kept it locked for "
                f"{self._busy_timeout:g} s ({e}); stop that process or try again"
            )
        return StoreError(
            f"database {self.path}: cannot open it for writing ({e}): check that the file's "
            "directory exists and that this user may write the file and the directory"
        )

    def _prepare(self, conn: sqlite3.Connection, findings: Findings) -> None:
        """WAL mode, and the official peer table if incomplete (no-ops on a ready file)."""
        try:
            (mode,) = conn.execute("pragma journal_mode = wal").fetchone()
            if mode != "wal":
                log.warning("database %s stays in %s mode: WAL is unavailable", self.path, mode)
            if not findings.complete:
                self._complete_peer_table(conn)
        except sqlite3.OperationalError as e:
            # A read-only file can still serve reads, with every write reporting
            # StoreError: better than refusing to start, if nothing had to be written.
            if not is_readonly(e) or not findings.complete:
                raise
            log.warning(
                "database %s is read-only (%s): peers can be read, not stored", self.path, e
            )

    def _complete_peer_table(self, conn: sqlite3.Connection) -> None:
        conn.execute(BEGIN_WRITE)
        try:
            # Again under the write lock: another process may have created it meanwhile.
            try:
                statements = missing_peer_schema(conn)
            except StoreError as e:
                raise StoreError(f"database {self.path} refused: {e}") from e
            for statement in statements:
                conn.execute(statement)
            conn.execute(COMMIT)
        finally:
            if conn.in_transaction:
                conn.execute(ROLLBACK)
