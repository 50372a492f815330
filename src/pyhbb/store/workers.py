"""Threads that own SQLite connections and run jobs for coroutines on an event loop.

SQLite calls block (disk I/O, fsync, busy waits), so none runs on the event loop. Each
thread owns one connection (sqlite3 connections must not be shared without locking)
and hands results back with ``loop.call_soon_threadsafe``. A connection that fails in
a way that may leave it broken is closed and reopened on the thread's next job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyhbb.store.base import StoreError
from pyhbb.store.schema import connection_survives, store_error

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection], Any]
Opener = Callable[[], sqlite3.Connection]


@dataclass(slots=True)
class Request:
    """A job for a store thread; ``job=None`` asks the thread to stop."""

    job: Job | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Outcome = tuple[Request, Any, StoreError | None]


def _settle(outcomes: list[Outcome]) -> None:
    for request, value, error in outcomes:
        if request.future.done():  # the caller was cancelled; a write still happened
            continue
        if error is None:
            request.future.set_result(value)
        else:
            request.future.set_exception(error)


def deliver(outcomes: list[Outcome]) -> None:
    """Resolve futures on their loops: one wake-up per loop per batch, not per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        # RuntimeError: that loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, items)


class _Connection:
    """A lazily opened connection, dropped after errors that may have broken it."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._opener()
        return self._conn

    def after_error(self, e: BaseException) -> None:
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("rollback")
            except sqlite3.Error:
                self.drop()
                return
        if not connection_survives(e):
            log.debug("reopening the database connection after: %s", e)
            self.drop()

    def run_one(self, request: Request) -> None:
        """Run one job in its own statement scope and deliver its outcome."""
        assert request.job is not None
        try:
            value = request.job(self.get())
        except Exception as e:
            self.after_error(e)
            deliver(_failed([request], e))
        else:
            deliver([(request, value, None)])

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
    """Runs read jobs from a queue shared with the other readers of the pool."""

    def __init__(self, number: int, requests: queue.SimpleQueue[Request], opener: Opener):
        super().__init__(name=f"pyhbb-store-reader-{number}", daemon=True)
        self._requests = requests
        self._conn = _Connection(opener)

    def run(self) -> None:
        while True:
            request = self._requests.get()
            if request.job is None:
                self._conn.drop()
                deliver([(request, None, None)])
                return
            self._conn.run_one(request)


class Writer(threading.Thread):
    """Runs write jobs with group commit.

    Every job queued when the thread becomes free goes into one transaction, so a burst
    of registrations costs one fsync instead of one each. Each job runs inside a
    savepoint: a constraint failure (such as a taken id) undoes only that job. Any other
    failure aborts the transaction; the batch is then replayed one job per transaction
    so that only the culprit reports an error.
    """

    def __init__(self, opener: Opener, setup: Request) -> None:
        super().__init__(name="pyhbb-store-writer", daemon=True)
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self.transactions = 0
        """Committed write transactions (statistics; written by this thread only)."""
        self._conn = _Connection(opener)
        self._setup = setup

    def run(self) -> None:
        # The setup job (open, create the schema) runs outside any transaction so that a
        # read-only database can still be opened for reading.
        self._conn.run_one(self._setup)
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
                    log.exception("peer store writer failed")
                    self._conn.drop()
                    outcomes = _failed(batch, e)
                deliver(outcomes)
            if stop is not None:
                self._conn.drop()
                deliver([(stop, None, None)])
                return

    def _begin(self) -> sqlite3.Connection | BaseException:
        # IMMEDIATE takes the write lock up front, so a busy database fails here, before
        # any job ran, and a later statement cannot hit a lock upgrade deadlock.
        try:
            conn = self._conn.get()
            conn.execute("begin immediate")
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
            conn.execute("commit")
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
                conn.execute("commit")
            except Exception as e:
                self._conn.after_error(e)
                outcome = (request, None, store_error(e))
            else:
                self.transactions += 1
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _run_in_savepoint(conn: sqlite3.Connection, request: Request) -> Outcome:
        assert request.job is not None
        conn.execute("savepoint job")
        try:
            value = request.job(conn)
        except sqlite3.IntegrityError as e:
            # SQLite undid just the failing statement and the transaction is intact;
            # undo the job's earlier statements too and let the rest of the batch commit.
            conn.execute("rollback to job")
            conn.execute("release job")
            return (request, None, store_error(e))
        conn.execute("release job")
        return (request, value, None)
