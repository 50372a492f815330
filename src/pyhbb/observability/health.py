"""``/healthz``: whether a service can do its work, for Docker, Kubernetes and systemd.

A service registers named checks; each is evaluated when the endpoint is asked, in the
endpoint's own thread, from plain values the event loop keeps up to date (so a wedged
loop cannot keep the answer from coming: it makes the loop check fail). Checks that
need I/O (a database query, a connection to the relay) run as :class:`Probe` tasks on
the loop and leave their latest outcome behind.

The answer is JSON: ``status`` is ``ok``, ``degraded`` (a non-critical check failed, such
as an unreachable relay, which restarting this service would not fix) or ``failing``;
the HTTP status is 200 unless a critical check fails (503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pyhbb.observability.db_stats import DatabaseStats
from pyhbb.observability.loop_lag import LoopLag

log = logging.getLogger(__name__)

LOOP_STALL_LIMIT = 2.0  # seconds the loop may be stuck before the service is unhealthy
PROBE_INTERVAL = 2.0
PROBE_TIMEOUT = 3.0
RETRY_INTERVAL = 2.0  # a failed probe is tried again this soon (a neighbour starting up)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    critical: bool = True
    """A failed critical check makes the service unhealthy (503)."""


Check = Callable[[float], CheckResult]
"""Evaluated with ``time.monotonic()`` in the endpoint's thread: reads plain values only."""


@dataclass(frozen=True)
class HealthReport:
    service: str
    results: dict[str, CheckResult]

    @property
    def healthy(self) -> bool:
        return all(r.ok for r in self.results.values() if r.critical)

    @property
    def status(self) -> str:
        if not self.healthy:
            return "failing"
        return "ok" if all(r.ok for r in self.results.values()) else "degraded"

    @property
    def http_status(self) -> int:
        return 200 if self.healthy else 503

    def to_json(self) -> bytes:
        checks = {
            name: {"ok": r.ok, "critical": r.critical, "detail": r.detail}
            for name, r in self.results.items()
        }
        body = {"status": self.status, "service": self.service, "checks": checks}
        return json.dumps(body, indent=1).encode() + b"\n"


class Health:
    """The checks of one service."""

    def __init__(self, service: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.clock = clock
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if name in self.checks:
            raise ValueError(f"health check {name!r} added twice")
        self.checks[name] = check

    def report(self) -> HealthReport:
        now = self.clock()
        results: dict[str, CheckResult] = {}
        for name, check in self.checks.items():
            try:
                results[name] = check(now)
            except Exception as e:  # a bug in a check must not take the endpoint down
                log.exception("health check %s failed", name)
                results[name] = CheckResult(False, f"check failed: {e!r}")
        return HealthReport(self.service, results)


def loop_check(lag: LoopLag, limit: float = LOOP_STALL_LIMIT) -> Check:
    """The event loop runs: its lag timer is not overdue by more than ``limit``."""

    def check(now: float) -> CheckResult:
        overdue = lag.overdue(now)
        if overdue > limit:
            return CheckResult(False, f"event loop stuck for {overdue:.1f} s")
        return CheckResult(True, f"worst lag of the last seconds {lag.worst_recent(now):.3f} s")

    return check


def database_check(stats: DatabaseStats, probe: Probe) -> Check:
    """The database answers: the probe is not stuck, and the last job that finished
    (a probe's or anyone's) succeeded."""

    def check(now: float) -> CheckResult:
        stuck = probe.stuck_for(now)
        if stuck is not None:
            return CheckResult(False, f"no answer to a probe query for {stuck:.1f} s")
        last = stats.last
        if last is not None and not last.ok:
            return CheckResult(False, f"last operation failed: {last.detail}")
        return CheckResult(True, probe.detail or "answers")

    return check


def probe_check(probe: Probe, critical: bool = True) -> Check:
    """The latest outcome of ``probe``, failing too while it is stuck."""

    def check(now: float) -> CheckResult:
        stuck = probe.stuck_for(now)
        if stuck is not None:
            return CheckResult(False, f"no answer for {stuck:.1f} s", critical)
        return CheckResult(probe.ok, probe.detail, critical)

    return check


class Probe:
    """An I/O check run on the loop every ``interval`` seconds, one at a time: a probe
    that hangs is not repeated (nothing piles up), it shows as stuck after ``timeout``.

    ``run`` returns a short description on success and raises on failure. The outcome
    is replaced in one assignment, so the endpoint's thread reads a consistent one.
    """

    def __init__(
        self,
        run: Callable[[], Awaitable[str]],
        interval: float = PROBE_INTERVAL,
        timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self._outcome: tuple[bool, str] = (True, "not checked yet")
        self._started: float | None = None

    @property
    def ok(self) -> bool:
        return self._outcome[0]

    @property
    def detail(self) -> str:
        return self._outcome[1]

    def stuck_for(self, now: float) -> float | None:
        """Seconds the running probe has waited, when longer than ``timeout``."""
        started = self._started
        if started is None or now - started <= self.timeout:
            return None
        return now - started

    async def run_once(self) -> None:
        self._started = self.clock()
        try:
            outcome = (True, await self._run())
        except Exception as e:
            outcome = (False, str(e) or type(e).__name__)
        self._outcome = outcome
        self._started = None

    async def run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval if self.ok else min(self.interval, RETRY_INTERVAL))
