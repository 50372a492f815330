"""Threads that own SQLite connections and run jobs for coroutines on an event loop.

SQLite calls block (disk I/O, fsync, busy waits), so none runs on the event loop. Each
thread owns one connection (sqlite3 connections must not be shared without locking)
and hands results back with ``loop.call_soon_threadsafe``. A connection that fails in
a way that may leave it broken is closed and reopened on the thread's next job.
:mod:`pyhbb.store.database` explains how they fit together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyhbb.store.base import PEER_ID_CONSTRAINT, Conflict, IdTaken, StoreError

log = logging.getLogger(__name__)

AnyJob = Callable[[sqlite3.Connection], Any]
Opener = Callable[[], sqlite3.Connection]

# The threads' own transaction statements. The trailing comment makes their text unlike
# anything a job would write: sqlite3 caches prepared statements by text, and a job's
# "commit" must not reuse ours, which the guard authorized while no job was running.
BEGIN_READ = "begin -- pyhbb"
BEGIN_WRITE = "begin immediate -- pyhbb"
COMMIT = "commit -- pyhbb"
ROLLBACK = "rollback -- pyhbb"
SAVEPOINT = "pyhbb_job"
OPEN_SAVEPOINT = f"savepoint {SAVEPOINT} -- pyhbb"
RELEASE_SAVEPOINT = f"release {SAVEPOINT} -- pyhbb"
UNDO_SAVEPOINT = f"rollback to {SAVEPOINT} -- pyhbb"

# How much nicer than the event loop the database threads run (Linux nice values, per
# thread). When a thread and the loop want the same core, the scheduler gives the loop the
# larger share and lets it preempt the thread on a wake-up, so a heartbeat does not wait
# behind a group commit's B-tree work. On an idle core the threads run at full speed.
# Not 19: a thread descheduled while it holds the GIL would stall the loop the longer.
DATABASE_THREAD_NICE = 10


def lower_priority(increment: int) -> int | None:
    """Make the calling thread ``increment`` nicer than it is; return its nice value then.

    Raising one's nice value needs no privilege. Returns ``None`` where threads have no
    nice value of their own (only Linux gives each thread its own).
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as e:  # a sandbox may refuse it: the threads still work, just greedier
        log.debug("database thread priority unchanged: %s", e)
        return None


# SQLite result codes (an extended code's low byte is its primary code).
_HARMLESS_CODES = {5, 6, 19}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CONSTRAINT: connection is fine
_SQLITE_AUTH = 23  # the guard refused a statement: a bug in the job
_UNIQUE_CODES = {2067, 1555}  # SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY


@dataclass(slots=True)
class Request:
    """A job for a store thread; ``job=None`` asks the thread to stop."""

    job: AnyJob | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Outcome = tuple[Request, Any, StoreError | None]


def store_error(e: BaseException) -> StoreError:
    """The :class:`StoreError` reported to the caller for an exception in a store thread."""
    if isinstance(e, StoreError):
        return e
    err: StoreError
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(e, sqlite3.IntegrityError) and code in _UNIQUE_CODES:
        # "UNIQUE constraint failed: peer.id" (SQLite's wording for primary keys too)
        constraint = str(e).partition(": ")[2] or str(e)
        if constraint == PEER_ID_CONSTRAINT:
            err = IdTaken()
        else:
            err = Conflict(f"already used: {constraint}", constraint)
    elif isinstance(e, sqlite3.Error) and not is_bug(e):
        err = StoreError(f"database error: {e}")
    else:
        err = StoreError(f"unexpected error in a database job: {e!r}")
    err.__cause__ = e
    return err


def is_bug(e: BaseException) -> bool:
    """Whether a job's exception is a programming error (logged with its traceback).

    Errors SQLite reports carry its result code; those that do not come from Python
    (a bug in the job, a value sqlite3 cannot bind), or from the transaction guard.
    """
    if isinstance(e, StoreError):
        return False  # raised on purpose by the job
    code = getattr(e, "sqlite_errorcode", None)
    return code is None or code == _SQLITE_AUTH


def connection_survives(e: BaseException) -> bool:
    """Whether a connection is still trustworthy after this error (else reopen it)."""
    code = getattr(e, "sqlite_errorcode", None)
    # No SQLite code: the error came from Python (bad parameter type, bug in a job).
    return code is None or code & 0xFF in _HARMLESS_CODES or code == _SQLITE_AUTH


def _job_failed(request: Request, e: BaseException) -> StoreError:
    """Convert a job's exception, logging a bug's traceback (once: here, not by callers)."""
    if is_bug(e):
        job = request.job
        name = job.func if isinstance(job, partial) else job
        log.error("database job %s failed", getattr(name, "__qualname__", name), exc_info=e)
    return store_error(e)


# Futures resolved per event-loop iteration. Each wakes a caller that typically answers a
# client (~30-50 µs); the loop runs every callback made ready in one iteration before it
# polls sockets again, so resolving a whole group commit (1,000 writes under a flood) at
# once stalled every client for tens of ms. The slice is small because an iteration
# reads at most 32 datagrams of a socket (libuv): to keep up with a 30,000/s flood an
# iteration must last under ~1 ms, or the socket's queue fills and a heartbeat waits
# behind all of it (64 a slice: heartbeat p99 19-49 ms, 8: 16-21 ms, bench/RESULTS.md).
# 8 an iteration still resolves several thousand a second, far more than one writer
# commits.
SETTLE_SLICE = 8


class Outcomes:
    """Hands the threads' outcomes to the loops that wait for them.

    One per database, shared by its threads. Outcomes not yet resolved wait per loop, in
    the order the threads delivered them: a later delivery (the stop that ``close`` waits
    for) never overtakes an earlier one.
    """

    def __init__(self) -> None:
        self._unsettled: dict[asyncio.AbstractEventLoop, deque[Outcome]] = {}
        self._lock = threading.Lock()  # threads deliver, loops settle

    def deliver(self, outcomes: list[Outcome]) -> None:
        """Resolve futures on their loops: one wake-up per loop per batch, not per write,
        at most :data:`SETTLE_SLICE` of them per loop iteration, in delivery order."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            with self._lock:
                pending = self._unsettled.get(loop)
                if pending is not None and loop.is_closed():  # nobody is waiting any more
                    del self._unsettled[loop]
                    pending = None
                if pending is not None:
                    pending.extend(items)  # a _settle is scheduled and will get to them
                    continue
                self._unsettled[loop] = deque(items)
            try:
                loop.call_soon_threadsafe(self._settle, loop)
            except RuntimeError:  # that loop is closed, so nobody is waiting any more
                with self._lock:
                    self._unsettled.pop(loop, None)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            pending = self._unsettled[loop]
            items = [pending.popleft() for _ in range(min(SETTLE_SLICE, len(pending)))]
            more = bool(pending)
            if not more:
                del self._unsettled[loop]
        for request, value, error in items:
            if request.future.done():  # the caller was cancelled; a write still happened
                continue
            if error is None:
                request.future.set_result(value)
            else:
                request.future.set_exception(error)
        if more:
            # after the callers just woken: they run in the next iteration, then this
            loop.call_soon(self._settle, loop)


class _Guard:
    """SQLite authorizer: while a job runs, it may not end or escape our transaction.

    A job's COMMIT would commit the other jobs of its batch before they finished, its
    ROLLBACK would undo them silently; SQLite refuses such statements (SQLITE_AUTH).
    """

    def __init__(self) -> None:
        self.job_running = False

    def __call__(self, action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if self.job_running and (
            action == sqlite3.SQLITE_TRANSACTION
            or (action == sqlite3.SQLITE_SAVEPOINT and arg2 == SAVEPOINT)
        ):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def run(self, job: AnyJob, conn: sqlite3.Connection) -> Any:
        self.job_running = True
        try:
            return job(conn)
        finally:
            self.job_running = False


class _Connection:
    """A lazily opened connection, dropped after errors that may have broken it."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._conn: sqlite3.Connection | None = None
        self.guard = _Guard()

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._opener()
            conn.set_authorizer(self.guard)
            self._conn = conn
        return self._conn

    def after_error(self, e: BaseException) -> None:
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute(ROLLBACK)
            except sqlite3.Error:
                self.drop()
                return
        if not connection_survives(e):
            log.debug("reopening the database connection after: %s", e)
            self.drop()

    def run_one(self, request: Request, *, snapshot: bool) -> Outcome:
        """Run one job (in a read transaction if ``snapshot``): its outcome."""
        assert request.job is not None
        try:
            conn = self.get()
            if snapshot:
                conn.execute(BEGIN_READ)
            value = self.guard.run(request.job, conn)
            if snapshot:
                conn.execute(ROLLBACK)  # a read transaction: nothing to keep
        except Exception as e:
            self.after_error(e)
            return (request, None, _job_failed(request, e))
        return (request, value, None)

    def drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as e:
                log.debug("closing a failed database connection: %s", e)


def _failed(requests: list[Request], e: BaseException) -> list[Outcome]:
    error = store_error(e)
    return [(r, None, error) for r in requests]


class Reader(threading.Thread):
    """Runs read jobs from a queue shared with the other readers of the pool.

    Each job runs in its own read transaction, so all its statements see one snapshot.
    """

    def __init__(
        self,
        number: int,
        requests: queue.SimpleQueue[Request],
        opener: Opener,
        outcomes: Outcomes,
        *,
        nice: int = DATABASE_THREAD_NICE,
    ) -> None:
        super().__init__(name=f"pyhbb-store-reader-{number}", daemon=True)
        self._requests = requests
        self._conn = _Connection(opener)
        self._outcomes = outcomes
        self._nice_increment = nice
        self.nice: int | None = None
        """This thread's nice value once it runs (None: unchanged or not per thread)."""

    def run(self) -> None:
        self.nice = lower_priority(self._nice_increment)
        while True:
            request = self._requests.get()
            if request.job is None:
                self._conn.drop()
                self._outcomes.deliver([(request, None, None)])
                return
            self._outcomes.deliver([self._conn.run_one(request, snapshot=True)])


class Writer(threading.Thread):
    """Runs write jobs with group commit.

    Every job queued when the thread becomes free goes into one transaction, so a burst
    of registrations costs one fsync instead of one each. Each job runs inside a
    savepoint: a job that fails while the transaction stays intact (a constraint, a bug,
    a StoreError it raised) is undone alone. Any other failure aborts the transaction;
    the batch is then replayed one job per transaction so that only the culprit fails.
    """

    def __init__(
        self,
        opener: Opener,
        setup: Request,
        outcomes: Outcomes,
        *,
        nice: int = DATABASE_THREAD_NICE,
    ) -> None:
        super().__init__(name="pyhbb-store-writer", daemon=True)
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self.transactions = 0
        """Committed write transactions (statistics; written by this thread only)."""
        self._conn = _Connection(opener)
        self._setup = setup
        self._outcomes = outcomes
        self._nice_increment = nice
        self.nice: int | None = None
        """This thread's nice value once it runs (None: unchanged or not per thread)."""

    def run(self) -> None:
        # Before the setup job, so that the value is set once the database is open.
        self.nice = lower_priority(self._nice_increment)
        # The setup job (open, check, create the peer table) runs outside any transaction
        # so that a read-only database can still be opened for reading.
        self._outcomes.deliver([self._conn.run_one(self._setup, snapshot=False)])
        while True:
            batch = [self.requests.get()]
            while batch[-1].job is not None:
                try:
                    batch.append(self.requests.get_nowait())
                except queue.Empty:
                    break
            stop = batch.pop() if batch[-1].job is None else None
            if batch:
                try:
                    outcomes = self._commit(batch)
                except Exception as e:  # a bug here must not strand the callers
                    log.exception("database writer failed")
                    self._conn.drop()
                    outcomes = _failed(batch, e)
                self._outcomes.deliver(outcomes)
            if stop is not None:
                self._conn.drop()
                self._outcomes.deliver([(stop, None, None)])
                return

    def _begin(self) -> sqlite3.Connection | BaseException:
        # IMMEDIATE takes the write lock up front, so a busy database fails here, before
        # any job ran, and a later statement cannot hit a lock upgrade deadlock.
        try:
            conn = self._conn.get()
            conn.execute(BEGIN_WRITE)
        except Exception as e:
            self._conn.after_error(e)
            return e
        return conn

    def _commit(self, batch: list[Request]) -> list[Outcome]:
        conn = self._begin()
        if isinstance(conn, BaseException):
            return _failed(batch, conn)  # nothing ran, the same error for everyone
        try:
            outcomes = [self._run_in_savepoint(conn, r) for r in batch]
            conn.execute(COMMIT)
        except Exception as e:
            self._conn.after_error(e)
            if len(batch) == 1:
                return _failed(batch, e)
            return self._one_by_one(batch)
        self.transactions += 1
        return outcomes

    def _one_by_one(self, batch: list[Request]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for i, request in enumerate(batch):
            conn = self._begin()
            if isinstance(conn, BaseException):
                # The database is unusable right now; do not wait out the busy timeout
                # once per remaining job.
                return outcomes + _failed(batch[i:], conn)
            try:
                outcome = self._run_in_savepoint(conn, request)
                conn.execute(COMMIT)
            except Exception as e:
                self._conn.after_error(e)
                outcome = (request, None, store_error(e))
            else:
                self.transactions += 1
            outcomes.append(outcome)
        return outcomes

    def _run_in_savepoint(self, conn: sqlite3.Connection, request: Request) -> Outcome:
        assert request.job is not None
        conn.execute(OPEN_SAVEPOINT)
        try:
            value = self._conn.guard.run(request.job, conn)
        except Exception as e:
            # After a constraint failure SQLite undid just the statement; after a bug or a
            # deliberate StoreError nothing was undone. Either way the transaction is
            # intact: undo this job's statements and let the rest of the batch commit.
            # Other errors (I/O, full disk, corruption) may have ended the transaction.
            if not (isinstance(e, sqlite3.IntegrityError | StoreError) or is_bug(e)):
                raise
            if not conn.in_transaction:
                raise
            conn.execute(UNDO_SAVEPOINT)
            conn.execute(RELEASE_SAVEPOINT)
            return (request, None, _job_failed(request, e))
        conn.execute(RELEASE_SAVEPOINT)
        return (request, value, None)
