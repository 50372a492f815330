"""Prometheus metrics of a pyhbb service: the pieces every service shares.

The services count in plain ints and ``Counter`` objects where they decide (hbbs's core
``stats``, the API's counters) and keep their tables; nothing is formatted or locked on
the packet path. At scrape time, in the endpoint's thread:

* families whose data the event loop owns are built **on the loop** through a
  :class:`LoopReader` (one short callback per scrape; a wedged loop makes them missing
  for that scrape, while ``/healthz`` says why);
* families read from values that are safe to read from another thread (the loop lag,
  the database statistics, the health checks, the process) are built in the thread.

:class:`Monitoring` assembles one service's registry, health checks, loop-lag timer,
probes and endpoint. Naming: ``pyhbb_<service>_…`` for a service's own metrics,
``pyhbb_…`` for what every service has; counters end in ``_total``; seconds and bytes;
label values come from fixed sets (never an id or an address).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from pyhbb import __version__
from pyhbb.observability.db_stats import READ, WRITE
from pyhbb.observability.endpoint import MetricsEndpoint, metrics_socket
from pyhbb.observability.health import (
    Check,
    Health,
    Probe,
    database_check,
    loop_check,
    probe_check,
)
from pyhbb.observability.histogram import HistogramSnapshot
from pyhbb.observability.loop_lag import LoopLag
from pyhbb.store.database import SqliteDatabase

log = logging.getLogger(__name__)

T = TypeVar("T")
LOOP_READ_TIMEOUT = 2.0
Families = Callable[[], Iterable[Metric]]


# -- building families ---------------------------------------------------------------------


def counter(
    name: str, doc: str, labels: Sequence[str], values: Mapping[tuple[str, ...], float]
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) from label values → count."""
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def gauge(
    name: str, doc: str, labels: Sequence[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(value)


def histogram(
    name: str, doc: str, labels: Sequence[str], values: Mapping[tuple[str, ...], HistogramSnapshot]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, snap in sorted(values.items()):
        buckets = [(_bound(bound), float(n)) for bound, n in snap.buckets]
        family.add_metric(list(key), buckets, snap.sum)
    return family


class _Collector:
    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


class LoopReader:
    """Runs a function on the event loop from another thread and waits for its result."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = LOOP_READ_TIMEOUT):
        self.loop = loop
        self.timeout = timeout

    def run(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` as run on the loop; None when the loop does not run it in time."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the reader gave up waiting
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        try:
            self.loop.call_soon_threadsafe(call)
        except RuntimeError:  # the loop is closed
            return None
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return None


# -- database probe ------------------------------------------------------------------------


def _nothing(conn: sqlite3.Connection) -> None:
    """A write job that changes nothing: it still takes the write lock (BEGIN IMMEDIATE),
    and a commit without changes writes nothing to disk."""


def _count_tables(conn: sqlite3.Connection) -> int:
    return int(conn.execute("select count(*) from sqlite_master").fetchone()[0])


def database_probe(db: SqliteDatabase) -> Callable[[], Awaitable[str]]:
    """A query through the reader pool and an empty transaction through the writer: both
    threads work and nothing else holds the database locked."""

    async def probe() -> str:
        await db.write(_nothing)
        await db.read(_count_tables)
        return "reads and writes work"

    return probe


# -- one service ---------------------------------------------------------------------------


class Monitoring:
    """The registry, health checks, loop-lag timer, probes and endpoint of one service.

    Build it with :meth:`bind` (the socket is bound at once, so a taken port fails at
    start-up like the service's own ports), add what the service has, then :meth:`start`
    on the running loop and :meth:`stop` at shutdown.
    """

    def __init__(self, service: str, sock: socket.socket) -> None:
        self.service = service
        self.health = Health(service)
        self.lag = LoopLag()
        self.registry = CollectorRegistry()
        # process (memory, CPU, descriptors), Python version and GC, in this registry: a
        # test process may run several services, each with its own
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(_Collector(self._common_families))
        self.endpoint = MetricsEndpoint(sock, self.registry, self.health)
        self.health.add("loop", loop_check(self.lag))
        self._probes: list[Probe] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loop_families: list[Families] = []
        self._thread_families: list[Families] = []
        self._reader: LoopReader | None = None

    @classmethod
    def bind(cls, service: str, address: tuple[str, int]) -> Monitoring:
        """Raises BindError (with the address and what to change) when it cannot listen."""
        return cls(service, metrics_socket(address))

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.address

    # -- what a service adds ---------------------------------------------------------------

    def add_loop_families(self, families: Families) -> None:
        """Families built on the event loop at scrape time (for data the loop owns)."""
        self._loop_families.append(families)

    def add_families(self, families: Families) -> None:
        """Families built in the endpoint's thread: read only thread-safe values."""
        self._thread_families.append(families)

    def add_check(self, name: str, check: Check) -> None:
        self.health.add(name, check)

    def add_probe(self, name: str, probe: Probe, critical: bool = True) -> None:
        """A periodic I/O check, shown under ``name`` in /healthz."""
        self._probes.append(probe)
        self.health.add(name, probe_check(probe, critical))

    def watch_database(self, db: SqliteDatabase) -> None:
        """Database latency, queue depth and failures; the ``database`` health check."""
        probe = Probe(database_probe(db))
        self._probes.append(probe)
        self.health.add("database", database_check(db.stats, probe))
        self.add_families(lambda: _database_families(db))

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the lag timer and probes on the running loop, then serve."""
        loop = asyncio.get_running_loop()
        self._reader = LoopReader(loop)
        self.lag.start(loop)
        self._tasks = [loop.create_task(p.run_forever()) for p in self._probes]
        self.registry.register(_Collector(self._service_families))
        self.endpoint.start()
        host, port = self.address
        where = f"[{host}]" if ":" in host else host
        log.info(
            "%s metrics at http://%s:%d/metrics, health at /healthz", self.service, where, port
        )

    async def stop(self) -> None:
        self.lag.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.get_running_loop().run_in_executor(None, self.endpoint.close)

    # -- families -----------------------------------------------------------------------------

    def _service_families(self) -> Iterable[Metric]:
        for build in self._thread_families:
            yield from build()
        if self._loop_families and self._reader is not None:
            try:
                built = self._reader.run(lambda: [m for b in self._loop_families for m in b()])
            except Exception:  # a bug in a family: the other families are still served
                log.exception("%s: building metrics on the event loop failed", self.service)
                return
            yield from built or ()

    def _common_families(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "pyhbb_info", "The service and pyhbb version (always 1)", labels=["service", "version"]
        )
        info.add_metric([self.service, __version__], 1)
        yield info
        lag = self.lag
        now = lag.clock()
        yield histogram(
            "pyhbb_event_loop_lag_seconds",
            f"How late a timer due every {lag.interval:g} s ran on the event loop",
            [],
            {(): lag.histogram.snapshot()},
        )
        yield gauge(
            "pyhbb_event_loop_lag_max_seconds",
            "Worst event-loop lag of the last 10 to 20 s, a stall in progress included",
            [],
            {(): lag.worst_recent(now)},
        )
        report = self.health.report()
        yield gauge(
            "pyhbb_health_check_ok",
            "1 when the /healthz check passes, 0 when it fails",
            ["check"],
            {(name,): float(r.ok) for name, r in report.results.items()},
        )
        yield gauge(
            "pyhbb_healthy",
            "1 when /healthz answers 200, 0 when it answers 503",
            [],
            {(): float(report.healthy)},
        )


def _database_families(db: SqliteDatabase) -> Iterable[Metric]:
    stats = db.stats
    operations = (READ, WRITE)
    yield histogram(
        "pyhbb_database_operation_seconds",
        "Time from queuing a database job to its result (queue wait included)",
        ["operation"],
        {(op,): stats.latency[op].snapshot() for op in operations},
    )
    in_flight = dict(stats.in_flight)
    yield gauge(
        "pyhbb_database_queue_depth",
        "Database jobs queued or running",
        ["operation"],
        {(op,): in_flight.get(op, 0) for op in operations},
    )
    failures = dict(stats.failures)
    yield counter(
        "pyhbb_database_failures",
        "Database jobs that failed (locked, disk full, I/O error; not refused duplicates)",
        ["operation"],
        {(op,): failures.get(op, 0) for op in operations},
    )
    yield counter(
        "pyhbb_database_write_transactions",
        "Write transactions committed (group commit: fewer than write jobs)",
        [],
        {(): db.write_transactions},
    )
