"""Run hbbs with bench probes: event-loop stalls and garbage-collection pauses, written to a
file once a second. Used by ``hbbs_restart.py`` in place of ``.venv/bin/hbbs``; the server
code is unchanged, only observed (and a few intervals shortened, see below).

Usage: ``python bench/hbbs_probe.py STATS_FILE [hbbs options ...]``

Every second one JSON line goes to STATS_FILE::

    {"t": monotonic time, "lag_max": worst timer lateness in ms over the second,
     "lag_n": timer ticks, "over10": ticks more than 10 ms late,
     "busy_max", "busy_over10": the same counting only the time the loop's thread was
     on a CPU (a stall of the server's own, not a wait for a core on a busy machine),
     "gc": [[generation, ms of CPU], ...] collections that ended in that second,
     "rss": VmRSS bytes, "peers": records in memory, "objects": records held as objects,
     "counters": the core's heartbeat counters, pending loads, read jobs and ids read,
     "metric_lag_max": ms, what hbbs's own ``pyhbb_event_loop_lag_max_seconds`` reports
     (its worst of the last 10-20 s; null unless hbbs runs with --metrics)}

``metric_lag_max`` checks the operator's view against the probe's: the metric's timer
ticks every 5 ms, so it reads a stall at most 5 ms short, and it should agree with
``lag_max`` over the same seconds.

After a full collection over ``SLOW_FULL_GC_MS`` (at most every ``DUMP_INTERVAL`` s), and
on SIGWINCH, the types of the objects the GC tracks go to STATS_FILE with the suffix
``.tracked`` (one JSON line each): what a slow full collection had to walk.

The lag probe is a timer every ``LAG_TICK`` s: its lateness is how long the loop was busy
with something else when it was due (a stall). Environment knobs for the benchmark:
``PROBE_SUMMARY_INTERVAL`` (seconds between hbbs's summary log lines, default 600) and
``PROBE_EVICT_AFTER`` (seconds offline before a record is evicted, default a day); a
file STATS_FILE with the suffix ``.evict_after`` changes that at run time.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

LAG_TICK = 0.002
SLOW_FULL_GC_MS = 10.0  # a full collection this long dumps the tracked types (see below)
DUMP_INTERVAL = 10.0  # at most one such dump per this many seconds


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Probe:
    def __init__(self, path: Path) -> None:
        self.out = path.open("a", buffering=1)
        self.out_path = path
        self.gc_started = 0.0
        self.gc_done: list[list[float]] = []
        self.lag_max = 0.0
        self.lag_n = 0
        self.over10 = 0
        self.busy_max = 0.0
        self.busy_over10 = 0
        self.server: Any = None
        self.next_dump = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        # CPU time of the collecting thread: a wait for a core is not the collector's
        if phase == "start":
            self.gc_started = time.thread_time()
        else:
            ms = (time.thread_time() - self.gc_started) * 1000
            self.gc_done.append([info["generation"], round(ms, 3)])
            now = time.monotonic()
            if info["generation"] == 2 and ms > SLOW_FULL_GC_MS and now >= self.next_dump:
                # what that collection walked: the types of the objects it tracks
                self.next_dump = now + DUMP_INTERVAL
                dump_tracked(self.out_path, f"full collection {ms:.1f} ms")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + LAG_TICK
        next_report = loop.time() + 1.0
        cpu = time.thread_time()
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            late = (now - due) * 1000
            # the loop thread's CPU time since the last tick: lateness the loop spent
            # working (a stall of ours), as opposed to waiting for a core (a busy machine)
            thread_cpu = time.thread_time()
            spent, cpu = (thread_cpu - cpu) * 1000, thread_cpu
            self.lag_n += 1
            self.lag_max = max(self.lag_max, late)
            self.busy_max = max(self.busy_max, min(late, spent))
            if late > 10:
                self.over10 += 1
                if spent > 10:
                    self.busy_over10 += 1
            due = max(due + LAG_TICK, now)
            if now >= next_report:
                next_report = now + 1.0
                self.report(now)

    def metric_lag_max(self) -> float | None:
        """The server's own worst-lag gauge, in ms (``None`` without --metrics)."""
        monitoring = getattr(self.server, "monitoring", None)
        if monitoring is None:
            return None
        lag = monitoring.lag
        worst: float = lag.worst_recent(lag.clock())
        return round(worst * 1000, 3)

    def report(self, now: float) -> None:
        evict = self.out_path.with_suffix(".evict_after")  # the bench's eviction phase
        if self.server is not None and evict.exists():
            self.server.core.state.peers.evict_after = float(evict.read_text())
        peers = objects = -1
        counters: dict[str, int] = {}
        if self.server is not None:
            state = self.server.core.state
            registry = state.peers
            peers, objects = len(registry), getattr(registry, "objects", -1)
            counters = {k: v for k, v in state.stats.items() if k.startswith("heartbeat")}
            counters["pending_loads"] = state.pending_loads
            loads = getattr(self.server.executor, "loads", None)
            if loads is not None:
                counters["load_jobs"], counters["loads"] = loads.jobs, loads.loads
        line = {
            "t": round(time.monotonic(), 3),
            "lag_max": round(self.lag_max, 3),
            "lag_n": self.lag_n,
            "over10": self.over10,
            "busy_max": round(self.busy_max, 3),
            "busy_over10": self.busy_over10,
            "gc": self.gc_done,
            "rss": rss_bytes(),
            "peers": peers,
            "objects": objects,
            "counters": counters,
            "metric_lag_max": self.metric_lag_max(),
        }
        self.out.write(json.dumps(line) + "\n")
        self.lag_max, self.lag_n, self.over10, self.gc_done = 0.0, 0, 0, []
        self.busy_max, self.busy_over10 = 0.0, 0


def dump_tracked(stats: Path, reason: str) -> None:
    """The types of the objects the cyclic GC tracks (not frozen), appended to STATS_FILE
    with the suffix ``.tracked``: on SIGWINCH, and after a full collection over
    ``SLOW_FULL_GC_MS`` (at most every ``DUMP_INTERVAL`` s)."""
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    line = {
        "t": time.monotonic(),
        "reason": reason,
        "frozen": gc.get_freeze_count(),
        "tracked": sum(counts.values()),
        "top": counts.most_common(20),
    }
    with stats.with_suffix(".tracked").open("a") as f:
        f.write(json.dumps(line) + "\n")


def main() -> int:
    stats = Path(sys.argv[1])
    argv = sys.argv[2:]
    from pyhbb.rendezvous import app, cli

    if "PROBE_SUMMARY_INTERVAL" in os.environ:
        app.SUMMARY_INTERVAL = int(os.environ["PROBE_SUMMARY_INTERVAL"])  # type: ignore[misc]
    evict_after = os.environ.get("PROBE_EVICT_AFTER")
    probe = Probe(stats)
    real_settings = app.core_settings
    real_start = app.HbbsServer.start

    def core_settings(*args: Any, **kwargs: Any) -> Any:
        settings = real_settings(*args, **kwargs)
        if evict_after is not None:
            settings.evict_after = float(evict_after)
        return settings

    async def start(self: Any, *args: Any, **kwargs: Any) -> None:
        await real_start(self, *args, **kwargs)
        probe.server = self
        self._spawn(probe.run())

    def on_winch(*_: object) -> None:
        dump_tracked(stats, "SIGWINCH")

    def trim(*_: object) -> None:
        """SIGUSR1: give the allocator's free pages back (glibc malloc_trim), and note the
        resident size before and after, to see what freed memory the process still holds."""
        before = rss_bytes()
        freed = ctypes.CDLL("libc.so.6").malloc_trim(0)
        with stats.with_suffix(".trim").open("a") as f:
            f.write(
                json.dumps(
                    {
                        "t": time.monotonic(),
                        "before": before,
                        "after": rss_bytes(),
                        "released": freed,
                    }
                )
                + "\n"
            )

    signal.signal(signal.SIGWINCH, on_winch)  # SIGUSR2 is hbbs's restart in place
    signal.signal(signal.SIGUSR1, trim)
    app.core_settings = core_settings  # type: ignore[assignment]
    app.HbbsServer.start = start  # type: ignore[method-assign]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
