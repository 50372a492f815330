"""hbbs at real address spread: restart without an outage, bytes per peer, event-loop stalls.

For each layout (``--per-addr 1,25,250``: peers per source IP), one hbbs is started by
this script (``hbbs_probe.py``: the real server, plus a loop-lag probe and GC timings
written once a second), on free loopback ports in a temporary directory, and driven by
``hbbs_spread.py`` (peers from distinct 127.x.y.z addresses, each playing the RustDesk
client's registration rules):

1. **register**: RegisterPk for N peers (NEW_PEERS_PER_SECOND raised for this phase only);
2. **steady state**: every peer heartbeats once per 15 s for ``--settle`` seconds, past
   the IP blocker's 61 s window and its sweep: VmRSS per online peer;
3. **restart** (``--restart``), while the clients keep heartbeating: ``--restart-kind
   cold`` (the default): SIGTERM, start again on the same database with default limits;
   ``handover``: SIGUSR2, hbbs restarts in place (same sockets, peer table handed over).
   Time until every peer is online again (its RegisterPeer answered without
   ``request_pk``), how many RegisterPk that took, and how many of a sample of peers
   another client's online query (TCP P-1, once a second) ever saw offline; then another
   steady state and VmRSS;
4. **eviction**: a tenth of the peers go silent and are evicted (PROBE_EVICT_AFTER).

Throughout, the worst event-loop stall per phase (a timer every 2 ms, its lateness) and
every garbage collection's duration. With ``--baseline-src DIR`` (a checkout's ``src``
of an earlier pyhbb), the restart is also measured with that code in the same run.
Also measured: the database's read capacity (``get_many`` in batches, ``get`` one by one)
on the N-row database, the figure the take-back read budget is sized from.

Usage: .venv/bin/python bench/hbbs_restart.py [--peers N] [--per-addr 1,25,250]
       [--restart 1] [--restart-kind cold|handover] [--baseline-src DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbbs_procs import (
    Child,
    cpu_seconds,
    free_port_block,
    rss_bytes,
    start_child,
    udp_drops,
    udp_drops_of,
    wait_udp_answer,
)
from hbbs_spread import SpreadLayout, SpreadPool
from hbbs_spread_c import CSpreadPool, build_generator, seed_database
from results_md import tree_commit, write_section

from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import FrameDecoder, encode_frame

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
SECTION = "## Rendezvous (hbbs) at real address spread: restart, memory, loop stalls"
PROBE = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id="bench-probe")).SerializeToString()
GOAL_RESTART = 15.0
GOAL_BYTES = 300
GOAL_STALL_MS = 10.0
OFFLINE_SAMPLE = 2000  # peers whose online state another client asks about, once a second


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0


@dataclass
class LayoutRun:
    per_addr: int
    code: str
    peers: int
    generator: str = "python"
    seeded: bool = False
    seed_seconds: float = 0.0
    online_settled: int = 0
    rss_idle: int = 0
    rss_registered: int = 0
    register: dict[str, float] = field(default_factory=dict)
    register_seconds: float = 0.0
    rss_settled: list[tuple[float, int]] = field(default_factory=list)
    restart: dict[str, Any] = field(default_factory=dict)
    rss_restarted: list[tuple[float, int]] = field(default_factory=list)
    evicted_rss: int = 0
    evicted_peers: int = 0
    phases: list[Phase] = field(default_factory=list)
    probe: list[dict[str, Any]] = field(default_factory=list)
    reads: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    server_cores: dict[str, float] = field(default_factory=dict)
    trim: tuple[int, int] = (0, 0)

    def bytes_per_peer(self, rss: int, online: int | None = None) -> float:
        return (rss - self.rss_idle) / (online or self.peers)

    def stalls(self, phase: Phase) -> dict[str, Any]:
        """Worst lateness (ms) and ticks over 10 ms, all and counting only the loop's own
        CPU time, and the collections, within ``phase``."""
        lines = [p for p in self.probe if phase.start <= p["t"] <= (phase.end or 1e18)]
        return {
            "worst": max((p["lag_max"] for p in lines), default=float("nan")),
            "over10": sum(p["over10"] for p in lines),
            "busy": max((p.get("busy_max", 0.0) for p in lines), default=float("nan")),
            "busy_over10": sum(p.get("busy_over10", 0) for p in lines),
            "gc": [g for p in lines for g in p["gc"]],
        }


@dataclass
class Options:
    peers: int
    layouts: list[int]
    restart: set[int]
    senders: int
    window: int
    settle: float
    settle_after_restart: float
    evict_after: float
    restart_timeout: float
    rmem: int
    baseline_src: Path | None
    keep: bool
    generators: list[str] = field(default_factory=lambda: ["python"])
    seed_db: bool = False
    restart_kind: str = "cold"


class OfflineWatch:
    """Another client asking hbbs (TCP P-1, OnlineRequest) once a second whether a sample
    of the peers is online, in a thread: the peers it ever saw offline. A question that
    gets no answer (nothing listens, during a cold restart) counts as nothing."""

    def __init__(self, port: int, ids: list[str]) -> None:
        self.port = port
        self.ids = ids
        self.ever_offline: set[str] = set()
        self.asked = 0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ask(self) -> bytes | None:
        request = pb.RendezvousMessage(online_request=pb.OnlineRequest(id="bench", peers=self.ids))
        try:
            with socket.create_connection(("127.0.0.1", self.port - 1), timeout=5) as sock:
                sock.sendall(encode_frame(request.SerializeToString()))
                decoder = FrameDecoder(1 << 20)
                while not (frames := decoder.feed(sock.recv(65536) or b"\0")):
                    pass
        except OSError:
            return None
        return pb.RendezvousMessage.FromString(frames[0]).online_response.states

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.asked += 1
            states = self._ask()
            if states is None or len(states) * 8 < len(self.ids):
                continue
            self.answered += 1
            for i, peer_id in enumerate(self.ids):
                if not states[i // 8] & (0x80 >> (i % 8)):
                    self.ever_offline.add(peer_id)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return len(self.ever_offline)


class Bench:
    def __init__(self, opts: Options, workroot: Path) -> None:
        self.o = opts
        self.workroot = workroot
        self.children: list[Child] = []
        self.gen_exe = build_generator(workroot) if "c" in opts.generators else None

    def start_hbbs(
        self, run: LayoutRun, workdir: Path, port: int, stats: Path, fast_register: bool
    ) -> Child:
        env = {
            "TEST_HBBS": "no",
            "RUST_LOG": "warn",
            "RMEM": str(self.o.rmem),
            "PROBE_SUMMARY_INTERVAL": "60",
        }

        if fast_register:
            env["NEW_PEERS_PER_SECOND"] = str(1 << 30)  # ~500/s would take an hour
        if run.code != "pyhbb" and self.o.baseline_src is not None:
            env["PYTHONPATH"] = str(self.o.baseline_src)
        argv = [sys.executable, str(BENCH / "hbbs_probe.py"), str(stats), "-p", str(port)]
        child = start_child(f"hbbs-{len(self.children)}", argv, workdir, env)
        self.children.append(child)
        wait_udp_answer(port, PROBE, child, timeout=60)
        return child

    def phase(self, run: LayoutRun, name: str) -> Phase:
        if run.phases and not run.phases[-1].end:
            run.phases[-1].end = time.monotonic()
        p = Phase(name, time.monotonic())
        run.phases.append(p)
        print(f"  -- {name}")
        return p

    def settle(
        self, run: LayoutRun, hbbs: Child, seconds: float, into: list[tuple[float, int]]
    ) -> None:
        t0 = time.monotonic()
        c0 = cpu_seconds(hbbs.pid)
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(min(10.0, seconds - elapsed))
            rss = rss_bytes(hbbs.pid)
            into.append((time.monotonic() - t0, rss))
            print(f"     {time.monotonic() - t0:5.0f} s: RSS {rss / 2**20:7.1f} MiB")
        run.server_cores[run.phases[-1].name] = (cpu_seconds(hbbs.pid) - c0) / seconds

    def run_layout(self, per_addr: int, code: str, generator: str) -> LayoutRun:
        o = self.o
        run = LayoutRun(per_addr, code, o.peers, generator, o.seed_db)
        workdir = self.workroot / f"{code}-{generator}-{per_addr}"
        workdir.mkdir()
        stats = workdir / "probe.jsonl"
        port = free_port_block()
        layout = SpreadLayout(o.peers, per_addr)
        print(
            f"\n== {code}, {generator} generator: {o.peers:,} peers, {per_addr} per IP "
            f"({layout.addrs:,} IPs){', seeded database' if o.seed_db else ''}"
        )
        hbbs = self.start_hbbs(run, workdir, port, stats, fast_register=True)
        pool: SpreadPool | CSpreadPool | None = None
        try:
            time.sleep(1.0)
            run.rss_idle = rss_bytes(hbbs.pid)
            if o.seed_db:
                hbbs = self.seed(run, hbbs, layout, workdir, port, stats)
            else:
                pool = self.register(run, hbbs, layout, port)
            server = ("127.0.0.1", port)
            if generator == "c":
                if pool is not None:
                    pool.close()  # registered through Python; the C one plays the clients
                assert self.gen_exe is not None
                pool = CSpreadPool(layout, server, True, self.gen_exe)
            elif pool is None:
                pool = SpreadPool(layout, o.senders, server)
                pool.call("confirm")
            self.phase(run, "steady heartbeats")
            pool.send("run", time.monotonic() + 0.05)
            if generator == "c":
                pool.gather()
            self.settle(run, hbbs, o.settle, run.rss_settled)
            run.online_settled = sum(st["online"] for st in pool.call("stats"))
            run.trim = self.trim(hbbs, stats)
            if per_addr in o.restart:
                hbbs = self.restart(run, hbbs, pool, workdir, port, stats)
                self.phase(run, "steady after restart")
                self.settle(run, hbbs, o.settle_after_restart, run.rss_restarted)
            if code == "pyhbb" and o.evict_after > 0:
                self.evict(run, hbbs, pool, stats)
            self.phase(run, "end")
            pool.call("stop")
        finally:
            if pool is not None:
                pool.close()
            status = hbbs.stop()
            if status not in (0, None):
                run.notes.append(f"hbbs exited with status {status}: {hbbs.log_tail(5)}")
            run.probe = [json.loads(line) for line in stats.read_text().splitlines() if line]
        return run

    def seed(
        self,
        run: LayoutRun,
        hbbs: Child,
        layout: SpreadLayout,
        workdir: Path,
        port: int,
        stats: Path,
    ) -> Child:
        """Stop the idle hbbs, write every peer into its database, start it again: the
        peers are registered without a registration phase (warm start reads them)."""
        hbbs.stop()
        t0 = time.monotonic()
        seed_database(workdir / "db_v2.sqlite3", layout)
        run.seed_seconds = time.monotonic() - t0
        print(f"     {layout.peers:,} peers seeded in {run.seed_seconds:.0f} s")
        hbbs = self.start_hbbs(run, workdir, port, stats, fast_register=False)
        time.sleep(1.0)
        run.rss_registered = rss_bytes(hbbs.pid)
        return hbbs

    def register(self, run: LayoutRun, hbbs: Child, layout: SpreadLayout, port: int) -> SpreadPool:
        """First registration through the protocol (Python senders), as clients do."""
        o = self.o
        pool = SpreadPool(layout, o.senders, ("127.0.0.1", port))
        try:
            self.phase(run, "register")
            t0 = time.monotonic()
            c0 = cpu_seconds(hbbs.pid)
            results = pool.call("register", o.window, time.monotonic() + 120 + o.peers / 500)
            run.register_seconds = time.monotonic() - t0
            run.server_cores["register"] = (cpu_seconds(hbbs.pid) - c0) / run.register_seconds
            run.register = {
                k: sum(r[k] for r in results) for k in ("ok", "too_frequent", "other", "unfinished")
            }
            time.sleep(0.5)
            run.rss_registered = rss_bytes(hbbs.pid)
            print(
                f"     {run.register['ok']:,.0f} registered in {run.register_seconds:.0f} s "
                f"({run.register['ok'] / run.register_seconds:,.0f}/s); RSS "
                f"{run.rss_idle / 2**20:.1f} -> {run.rss_registered / 2**20:.1f} MiB"
            )
        except BaseException:
            pool.close()
            raise
        return pool

    def evict(
        self, run: LayoutRun, hbbs: Child, pool: SpreadPool | CSpreadPool, stats: Path
    ) -> None:
        o = self.o
        self.phase(run, "eviction")
        stats.with_suffix(".evict_after").write_text(str(o.evict_after))
        pool.call("silence", 10, 9)
        wait = 30 + o.evict_after + 70
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait:
            time.sleep(10)
            line = self.last_probe(stats)
            print(f"     {time.monotonic() - t0:5.0f} s: {line.get('peers')} in memory")
        line = self.last_probe(stats)
        run.evicted_peers = int(line.get("peers", -1))
        run.evicted_rss = rss_bytes(hbbs.pid)

    @staticmethod
    def trim(hbbs: Child, stats: Path) -> tuple[int, int]:
        """RSS before and after glibc's malloc_trim in hbbs (the probe's SIGUSR1)."""
        os.kill(hbbs.pid, signal.SIGUSR1)
        out = stats.with_suffix(".trim")
        for _ in range(50):
            time.sleep(0.1)
            if out.exists() and out.read_text().strip():
                line = json.loads(out.read_text().splitlines()[-1])
                print(
                    f"     malloc_trim: RSS {line['before'] / 2**20:.1f} -> "
                    f"{line['after'] / 2**20:.1f} MiB"
                )
                return int(line["before"]), int(line["after"])
        return 0, 0

    @staticmethod
    def last_probe(stats: Path) -> dict[str, Any]:
        lines = stats.read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def restart(
        self,
        run: LayoutRun,
        hbbs: Child,
        pool: SpreadPool | CSpreadPool,
        workdir: Path,
        port: int,
        stats: Path,
    ) -> Child:
        o = self.o
        if run.code == "pyhbb":
            run.reads = measure_reads(workdir / "db_v2.sqlite3", run.peers)
            print(f"     database reads: {run.reads}")
        layout = SpreadLayout(run.peers, run.per_addr)
        step = max(1, run.peers // OFFLINE_SAMPLE)
        watch = OfflineWatch(port, [layout.peer_id(k) for k in range(0, run.peers, step)])
        time.sleep(2.5)  # two answers before: every sampled peer is online then
        before = len(watch.ever_offline)
        self.phase(run, "restart")
        drops0 = udp_drops(port)  # hand-over: the same socket throughout, gap included
        t_term = time.monotonic()
        if o.restart_kind == "handover":
            os.kill(hbbs.pid, signal.SIGUSR2)
            wait_exec(hbbs.pid)
            t_stopped = time.monotonic()
            print(f"     exec after {t_stopped - t_term:.1f} s")
            wait_udp_answer(port, PROBE, hbbs, timeout=60)
        else:
            status = hbbs.stop()
            t_stopped = time.monotonic()
            print(f"     stopped in {t_stopped - t_term:.1f} s (status {status})")
            hbbs = self.start_hbbs(run, workdir, port, stats, fast_register=False)
            drops0 = udp_drops(port)  # a new socket: its counter starts at zero
        t_ready = time.monotonic()
        pool.call("reset")
        gen_ports = set(getattr(pool, "ports", ()))  # the C generator's; Python's: unknown
        gen_drops0 = udp_drops_of(gen_ports)
        gen_cpu0 = sum(cpu_seconds(pid) for pid in pool.pids)
        c0 = cpu_seconds(hbbs.pid)
        total = run.peers
        online = 0
        seen: list[tuple[float, int]] = []
        while time.monotonic() - t_ready < o.restart_timeout:
            time.sleep(0.5)
            online = sum(s["online"] for s in pool.call("stats"))
            seen.append((time.monotonic() - t_ready, online))
            if online >= total:
                break
        t_all = time.monotonic()
        time.sleep(2.0)  # the watch's answers after the last peer came back
        watch.stop()
        cores = (cpu_seconds(hbbs.pid) - c0) / (t_all - t_ready)
        gen_cores = (sum(cpu_seconds(pid) for pid in pool.pids) - gen_cpu0) / (t_all - t_ready)
        gen_drops = udp_drops_of(gen_ports) - gen_drops0 if gen_ports else None
        final = pool.call("stats", True)
        times = array("d")
        for s in final:
            times.frombytes(s["online_at"])
        offsets = sorted(t - t_ready for t in times if t)
        counts: dict[str, int] = {}
        for s in final:
            for k, v in s["counts"].items():
                counts[k] = counts.get(k, 0) + v
        run.restart = {
            "stop_seconds": t_stopped - t_term,
            "start_seconds": t_ready - t_stopped,
            "online": len(offsets),
            "all_online": len(offsets) >= total,
            "percentiles": {q: pct(offsets, q) for q in (50, 90, 99, 100)},
            "counts": counts,
            "server_cores": cores,
            "kernel_drops": udp_drops(port) - drops0,
            "generator_cores": gen_cores,
            "generator_drops": gen_drops,
            "curve": seen[::4],
            "kind": o.restart_kind,
            "offline_sample": len(watch.ids),
            "ever_offline": len(watch.ever_offline),
            "offline_before": before,
            "watch_answers": f"{watch.answered}/{watch.asked}",
        }
        print(
            f"     {len(offsets):,}/{total:,} online again; 50/90/99/100 %: "
            + " / ".join(f"{v:.1f}" for v in run.restart["percentiles"].values())
            + f" s after hbbs answered; counts {counts}; {len(watch.ever_offline)} of "
            f"{len(watch.ids)} sampled peers ever read offline ({before} before the restart)"
        )
        return hbbs

    def main(self) -> list[LayoutRun]:
        runs = []
        for generator in self.o.generators:
            for per_addr in self.o.layouts:
                runs.append(self.run_layout(per_addr, "pyhbb", generator))
        if self.o.baseline_src is not None:
            for per_addr in sorted(self.o.restart):
                runs.append(self.run_layout(per_addr, "baseline", self.o.generators[0]))
        return runs


def wait_exec(pid: int, timeout: float = 60.0) -> None:
    """Wait until ``pid`` runs the image a restart in place execs (its environment, as
    given to exec, names the sockets handed over)."""
    deadline = time.monotonic() + timeout
    while b"PYHBB_HANDOVER=" not in Path(f"/proc/{pid}/environ").read_bytes():
        if time.monotonic() > deadline:
            raise TimeoutError(f"hbbs (pid {pid}) did not restart in place in {timeout:.0f} s")
        time.sleep(0.005)


def count_or_dash(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def measure_reads(db_path: Path, peers: int, sample: int = 200_000) -> dict[str, float]:
    """The database's read capacity on the N-row file, from an event loop as hbbs reads it:
    ids per second with ``get_many`` in batches of 1000 (one reader thread), and with
    ``get`` one id per job."""
    from pyhbb.store.database import SqliteDatabase
    from pyhbb.store.peers import SqlitePeerStore

    layout = SpreadLayout(peers, 1)
    step = max(1, peers // sample)
    ids = [layout.peer_id(k) for k in range(0, peers, step)][:sample]

    async def go() -> dict[str, float]:
        async with await SqliteDatabase.open(str(db_path), readers=1) as db:
            store = SqlitePeerStore(db)
            cpu0, t0 = time.process_time(), time.perf_counter()
            found = 0
            for i in range(0, len(ids), 1000):
                found += len(await store.get_many(ids[i : i + 1000]))
            batched = len(ids) / (time.perf_counter() - t0)
            batched_cpu = (time.process_time() - cpu0) / len(ids) * 1e6
            single_ids = ids[: min(len(ids), 20_000)]
            cpu0, t0 = time.process_time(), time.perf_counter()
            for peer_id in single_ids:
                await store.get(peer_id)
            single = len(single_ids) / (time.perf_counter() - t0)
            single_cpu = (time.process_time() - cpu0) / len(single_ids) * 1e6
            return {
                "batched_per_s": round(batched),
                "batched_cpu_us": round(batched_cpu, 2),
                "single_per_s": round(single),
                "single_cpu_us": round(single_cpu, 2),
                "found": found,
            }

    return asyncio.run(go())


# -- report -------------------------------------------------------------------------------


def report(runs: list[LayoutRun], o: Options, elapsed: float) -> str:
    today = datetime.date.today().isoformat()
    load = os.getloadavg()
    lines = [SECTION, ""]
    lines.append(
        f"Measured by `bench/hbbs_restart.py` on {today}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Linux {platform.release()}, loopback only, pyhbb at "
        f"`{tree_commit(ROOT)}`; run took {elapsed / 60:.1f} min; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (the machine is shared: read ratios "
        f"and figures of the same run). N = {o.peers:,} peers, one source IP per peer "
        "(or per-addr peers per IP) through IP_PKTINFO, each peer playing the client's rules; "
        "generator *c*: `hbbs_spread_gen.c`, one process, sendmmsg/recvmmsg; *python*: "
        f"`hbbs_spread.py`, {o.senders} sender processes. "
        + (
            "Database **seeded** (`--seed-db`: every peer written into db_v2.sqlite3 before "
            "hbbs starts, as registered from its own IP; no registration phase). "
            if o.seed_db
            else "First registration through the protocol (Python senders). "
        )
        + f"RMEM {o.rmem // 1024} KiB, RUST_LOG=warn, TEST_HBBS=no."
    )
    lines.append("")
    lines.append(
        "| peers per IP | code | generator | RegisterPk/s (first registration) | RSS idle "
        f"| RSS registered | RSS after {o.settle:.0f} s of heartbeats | online then "
        "| **bytes per online peer** | after restart | server cores (heartbeats) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r.code != "pyhbb":
            continue
        settled = r.rss_settled[-1][1] if r.rss_settled else 0
        restarted = r.rss_restarted[-1][1] if r.rss_restarted else 0
        after = f"{r.bytes_per_peer(restarted):.0f}" if restarted else "—"
        reg_rate = (
            f"seeded in {r.seed_seconds:.0f} s"
            if r.seeded
            else f"{r.register.get('ok', 0) / max(r.register_seconds, 1e-9):,.0f}"
        )
        lines.append(
            f"| {r.per_addr} | {r.code} | {r.generator} | {reg_rate} "
            f"| {r.rss_idle / 2**20:.1f} MiB | {r.rss_registered / 2**20:.1f} MiB "
            f"| {settled / 2**20:.1f} MiB | {r.online_settled:,} "
            f"| **{r.bytes_per_peer(settled):.0f}** | {after} "
            f"| {r.server_cores.get('steady heartbeats', 0):.2f} |"
        )
    for r in runs:
        before, after = r.trim
        if before:
            lines.append("")
            lines.append(
                f"{r.per_addr} per IP: glibc `malloc_trim(0)` called in hbbs after the steady "
                f"state (the probe's SIGUSR1): VmRSS {before / 2**20:.1f} → {after / 2**20:.1f} "
                f"MiB ({(before - after) / r.peers:.1f} bytes per peer given back)."
            )
    lines.append("")
    lines.append(
        "*bytes per online peer* = (VmRSS − VmRSS idle) / N, whole process (SQLite cache, "
        "every table), every peer online, after the IP blocker's window and sweep; "
        f"*after restart* = the same {o.settle_after_restart:.0f} s after the restart."
    )
    restarts = [r for r in runs if r.restart]
    if restarts:
        lines.append("")
        lines.append(
            "Restart *cold*: SIGTERM, a new hbbs on the same database with default limits; "
            "*handover*: SIGUSR2, hbbs restarts in place (exec, same PID and sockets, peer "
            "table handed over in a snapshot); the clients heartbeat throughout (unanswered "
            "requests resent after 3 s; `request_pk` answered with RegisterPk). Time from the "
            "new hbbs answering to each peer's first RegisterPeer answered without "
            "`request_pk`; *ever offline*: of a sample of peers, those another client's "
            "online query (TCP P-1, once a second) saw offline at least once from the signal "
            "on; *stop / start*: signal to exit (cold) or exec (handover), then to the new "
            "process answering:"
        )
        lines.append("")
        lines.append(
            "| code | kind | generator | peers per IP | online again | 50 % | 90 % | 99 % "
            "| **all** | **ever offline** | RegisterPk sent | heartbeats sent (resent) "
            "| hbbs stop / start | server cores | dropped at hbbs's socket | generator cores "
            "| dropped at the generator's |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in restarts:
            x = r.restart
            p = x["percentiles"]
            counts = x["counts"]
            everyone = (
                f"**{p[100]:.1f} s**"
                if x["all_online"]
                else f"not all in {o.restart_timeout:.0f} s"
            )
            lines.append(
                f"| {r.code} | {x['kind']} | {r.generator} | {r.per_addr} "
                f"| {x['online']:,}/{r.peers:,} "
                f"| {p[50]:.1f} s | {p[90]:.1f} s | {p[99]:.1f} s | {everyone} "
                f"| **{x['ever_offline']:,} of {x['offline_sample']:,}** "
                f"| {counts.get('sent_register_pk', 0):,} | {counts.get('sent_heartbeats', 0):,} "
                f"({counts.get('retries', 0):,}) "
                f"| {x['stop_seconds']:.1f} / {x['start_seconds']:.1f} s "
                f"| {x['server_cores']:.2f} | {x['kernel_drops']:,} "
                f"| {x.get('generator_cores', 0):.2f} "
                f"| {count_or_dash(x.get('generator_drops'))} |"
            )
    reads = next((r.reads for r in runs if r.reads), None)
    if reads:
        lines.append("")
        lines.append(
            f"Database read capacity on the {o.peers:,}-row file (one reader thread, from an "
            f"event loop): `get_many` in batches of 1000 ids **{reads['batched_per_s']:,} ids/s** "
            f"({reads['batched_cpu_us']} µs CPU per id), `get` one id per job "
            f"{reads['single_per_s']:,} ids/s ({reads['single_cpu_us']} µs per id)."
        )
    lines.append("")
    lines.append(
        "Event-loop stalls (a timer every 2 ms; its worst lateness) and garbage collections, "
        "per phase:"
    )
    lines.append("")
    lines.append(
        "| code | generator | peers per IP | phase | worst lateness | ticks > 10 ms late "
        "| **worst stall (loop on CPU)** | ticks > 10 ms on CPU "
        "| collections (gen 2: count, worst) "
        "| worst collection |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for ph in r.phases:
            if ph.name == "end":
                continue
            st = r.stalls(ph)
            gcs = st["gc"]
            full = [ms for g, ms in gcs if g == 2]
            gc_worst = max((ms for _, ms in gcs), default=0.0)
            lines.append(
                f"| {r.code} | {r.generator} | {r.per_addr} | {ph.name} "
                f"| {st['worst']:.1f} ms | {st['over10']} "
                f"| **{st['busy']:.1f} ms** | {st['busy_over10']} "
                f"| {len(gcs)} ({len(full)}, {max(full, default=0.0):.1f} ms) | {gc_worst:.1f} ms |"
            )
    lines.append("")
    lines.append(
        "*lateness* is wall time, so it includes waiting for a core while other processes "
        "(the load generator, other sessions) run; *on CPU* counts only the time the "
        "loop's thread ran in that interval: the server's own stalls."
    )
    for r in runs:
        if r.evicted_peers > 0:
            lines.append("")
            lines.append(
                f"Eviction ({r.generator} generator, {r.per_addr} per IP): a tenth of the peers "
                "silent for "
                f"{30 + o.evict_after:.0f} s (eviction after {o.evict_after:.0f} s offline, set "
                "at run time); "
                f"{r.evicted_peers:,} records left in memory, RSS {r.evicted_rss / 2**20:.1f} MiB."
            )
        for note in r.notes:
            lines.append("")
            lines.append(f"Note ({r.code}, {r.generator}, {r.per_addr} per IP): {note}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=100_000)
    ap.add_argument("--per-addr", default="1,25,250", help="layouts: peers per source IP")
    ap.add_argument("--restart", default="1", help="layouts that are restarted (comma list)")
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--window", type=int, default=2000, help="RegisterPk in flight per sender")
    ap.add_argument("--settle", type=float, default=200.0, help="steady state before RSS (s)")
    ap.add_argument("--settle-after-restart", type=float, default=130.0)
    ap.add_argument("--evict-after", type=float, default=60.0, help="0: no eviction phase")
    ap.add_argument("--restart-timeout", type=float, default=240.0)
    ap.add_argument("--rmem", type=int, default=4 << 20)
    ap.add_argument("--baseline-src", type=Path, help="src/ of an earlier pyhbb: restart baseline")
    ap.add_argument(
        "--generator",
        default="c" if shutil.which("gcc") or shutil.which("cc") else "python",
        help="load generator(s), comma list: c (hbbs_spread_gen.c, built with gcc; the default "
        "when gcc is present) and/or python (hbbs_spread.py); several: each layout per generator",
    )
    ap.add_argument(
        "--seed-db",
        action="store_true",
        help="write the peers into db_v2.sqlite3 before hbbs starts instead of registering "
        "them through the protocol (250 per IP would take ~35 min under the RegisterPk budgets)",
    )
    ap.add_argument(
        "--restart-kind",
        choices=("cold", "handover"),
        default="cold",
        help="cold: SIGTERM and start again (default); handover: SIGUSR2, restart in place",
    )
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep the temporary working dirs")
    a = ap.parse_args(argv)
    opts = Options(
        peers=a.peers,
        layouts=[int(x) for x in a.per_addr.split(",") if x],
        restart={int(x) for x in a.restart.split(",") if x},
        senders=a.senders,
        window=a.window,
        settle=a.settle,
        settle_after_restart=a.settle_after_restart,
        evict_after=a.evict_after,
        restart_timeout=a.restart_timeout,
        rmem=a.rmem,
        baseline_src=a.baseline_src,
        keep=a.keep,
        generators=[g for g in a.generator.split(",") if g],
        seed_db=a.seed_db,
        restart_kind=a.restart_kind,
    )
    if not opts.generators or set(opts.generators) - {"c", "python"}:
        ap.error("--generator takes c, python or c,python")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workroot = Path(tempfile.mkdtemp(prefix="hbbs_restart_"))
    bench = Bench(opts, workroot)
    started = time.monotonic()
    try:
        runs = bench.main()
    finally:
        for child in bench.children:
            with contextlib.suppress(Exception):
                child.stop()
        if opts.keep:
            print(f"working directories kept in {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    section = report(runs, opts, time.monotonic() - started)
    print()
    print(section)
    if not a.no_write:
        write_section(a.results, section)
        print(f"written to {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
