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

With ``PROBE_STACKS=1`` a sampler thread looks at the loop every ``SAMPLE_EVERY`` s; while
the loop's timer is over ``SAMPLE_AFTER`` s late it records the loop thread's Python stack,
and after each stall over 10 ms it appends one JSON line to STATS_FILE with the suffix
``.stalls``: ``{"t", "ms": the lateness, "gc": collections inside it [[gen, ms], ...],
"cpu_ms": the loop thread's CPU time in that interval, "stacks": [[count, "innermost frame <
caller < ..."], ...]}``. A stall spent in one C call
that holds the GIL (a collection, a big dict copy) shows only the stack after it: the
collections are listed apart for that reason. Each line also has ``"work"``: what the loop
did between the two ticks around the stall (datagrams received, sends and their ms,
housekeeping calls and ms, warm-start rows and answers and ms, heartbeats resumed by a
read and their ms, collections in the loop thread and ms), counted by wrapping those calls.

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
import threading
import time
from pathlib import Path
from typing import Any

LAG_TICK = 0.002
SLOW_FULL_GC_MS = 10.0  # a full collection this long dumps the tracked types (see below)
DUMP_INTERVAL = 10.0  # at most one such dump per this many seconds
SAMPLE_EVERY = 0.001  # the stack sampler's period (PROBE_STACKS=1)
SAMPLE_AFTER = 0.004  # lateness from which the sampler records the loop's stack
STACK_DEPTH = 14


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
        self.due = 0.0  # the lag timer's due time in time.monotonic(), read by the sampler
        self.stalled_gc: list[list[float]] = []  # collections since the last tick
        self.work: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.loop_thread = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        # CPU time of the collecting thread: a wait for a core is not the collector's
        if phase == "start":
            self.gc_started = time.thread_time()
        else:
            ms = (time.thread_time() - self.gc_started) * 1000
            self.gc_done.append([info["generation"], round(ms, 3)])
            self.stalled_gc.append([info["generation"], round(ms, 3)])
            if threading.get_ident() == self.loop_thread:
                self.work["gc_loop"] += 1
                self.work["gc_loop_ms"] += ms
            now = time.monotonic()
            if info["generation"] == 2 and ms > SLOW_FULL_GC_MS and now >= self.next_dump:
                # what that collection walked: the types of the objects it tracks
                self.next_dump = now + DUMP_INTERVAL
                dump_tracked(self.out_path, f"full collection {ms:.1f} ms")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + LAG_TICK
        # the sampler thread reads the due time on its own clock: uvloop's loop.time() is
        # only brought up to date between callbacks, so it stands still during a stall
        offset = time.monotonic() - loop.time()
        self.due = due + offset
        sampler = None
        self.loop_thread = threading.get_ident()
        if os.environ.get("PROBE_STACKS") == "1":
            sampler = StallSampler(self.out_path.with_suffix(".stalls"), self)
            self.count_work()
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
            if sampler is not None:
                sampler.tick(late, spent, self.stalled_gc, self.work)
                self.work = collections.defaultdict(float)
            self.stalled_gc = []
            due = max(due + LAG_TICK, now)
            self.due = due + offset
            if now >= next_report:
                next_report = now + 1.0
                self.report(now)

    def count_work(self) -> None:
        """Wrap the calls that do the loop's work, to count them per tick interval."""
        server = self.server
        probe = self

        def counted(obj: Any, name: str, key: str, size: Any = None) -> None:
            real = getattr(obj, name)

            def wrapper(*args: Any) -> Any:
                t = time.thread_time()
                result = real(*args)
                work = probe.work
                work[key] += 1 if size is None else size(args, result)
                work[key + "_ms"] += (time.thread_time() - t) * 1000
                return result

            setattr(obj, name, wrapper)

        endpoint = server._udp_endpoint
        counted(endpoint, "datagram_received", "datagrams")
        counted(server.executor, "_send_udp", "sends")
        core = server.core
        counted(core, "on_timer", "housekeeping")
        counted(core, "peer_loaded", "resumed")
        counted(core.state, "preload_rows", "warm_rows", lambda args, _: len(args[0]))
        counted(core.registration, "warm_rows_entered", "warm_answers", lambda _, r: len(r))

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


class StallSampler:
    """The loop thread's Python stacks while the lag timer is late (PROBE_STACKS=1): what
    the loop was doing in each stall over 10 ms, without timing a py-spy dump by hand."""

    def __init__(self, path: Path, probe: Probe) -> None:
        self.out = path.open("a", buffering=1)
        self.probe = probe
        self.loop_thread = threading.get_ident()
        self.samples: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self._sample, name="stall-sampler", daemon=True).start()

    def _sample(self) -> None:
        while True:
            time.sleep(SAMPLE_EVERY)
            if time.monotonic() - self.probe.due < SAMPLE_AFTER:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            names: list[str] = []
            while frame is not None and len(names) < STACK_DEPTH:
                code = frame.f_code
                names.append(f"{code.co_name}@{Path(code.co_filename).stem}:{frame.f_lineno}")
                frame = frame.f_back
            with self.lock:
                self.samples[" < ".join(names) or "(no Python frame)"] += 1

    def tick(
        self,
        late_ms: float,
        cpu_ms: float,
        collections_: list[list[float]],
        work: collections.defaultdict[str, float],
    ) -> None:
        """The timer ran ``late_ms`` late, the loop's thread on a CPU for ``cpu_ms`` of the
        interval: write the stall's stacks if it was a stall."""
        with self.lock:
            samples, self.samples = self.samples, collections.Counter()
        if late_ms > 10:
            line = {
                "t": round(time.monotonic(), 3),
                "ms": round(late_ms, 3),
                "cpu_ms": round(cpu_ms, 3),
                "gc": collections_,
                "stacks": [[n, s] for s, n in samples.most_common(6)],
                "work": {k: round(v, 3) for k, v in sorted(work.items())},
            }
            self.out.write(json.dumps(line) + "\n")


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
