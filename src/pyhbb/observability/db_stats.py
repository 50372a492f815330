"""What the database layer reports about its own work: latency, jobs in flight, failures.

:class:`~pyhbb.store.database.SqliteDatabase` records every job here on the event loop
(the job itself ran on a database thread and cost far more than the bookkeeping); the
metrics exporter and the health check read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pyhbb.observability.histogram import Histogram

READ, WRITE = "read", "write"


@dataclass(frozen=True)
class Outcome:
    """The last job that finished: whether the database did its work, and when."""

    ok: bool
    at: float
    detail: str = ""


@dataclass
class DatabaseStats:
    latency: dict[str, Histogram] = field(
        default_factory=lambda: {READ: Histogram(), WRITE: Histogram()}
    )
    """Seconds from queuing a job to its result, per operation (queue wait included:
    that is what a client waits for)."""
    in_flight: Counter[str] = field(default_factory=Counter)
    """Jobs queued or running, per operation."""
    failures: Counter[str] = field(default_factory=Counter)
    """Jobs the database could not do (a refused duplicate is not a failure)."""
    last: Outcome | None = None

    def started(self, operation: str) -> None:
        self.in_flight[operation] += 1

    def finished(self, operation: str, seconds: float, now: float, error: str | None) -> None:
        """A job ended; ``error`` says why the database failed it (None: it worked)."""
        self.in_flight[operation] -= 1
        self.latency[operation].observe(seconds)
        if error is not None:
            self.failures[operation] += 1
        self.last = Outcome(error is None, now, error or "")

    def abandoned(self, operation: str) -> None:
        """The caller stopped waiting (cancelled): the outcome is not known here."""
        self.in_flight[operation] -= 1
