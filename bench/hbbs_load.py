"""hbbs load benchmark: RegisterPeer/s sustained, punch round trips, memory per peer.

Every server is started by this script as a child process on free loopback ports, in a
temporary working directory, and stopped by PID when done:

* ``C``: the C source in ``bench/hbbs_cbaseline.py``, compiled with gcc here; answers by
  looking at the first byte only, stores nothing. The upper bound, and the load generator's ceiling.
* ``uvloop``: ``bench/hbbs_baseline.py``, the docs/architecture.md reference design (uvloop
  DatagramProtocol, protobuf parse, dict update, constant reply).
* ``pyhbb``: ``.venv/bin/hbbs -p P`` with TEST_HBBS=no, RUST_LOG=warn, RMEM,
  REGISTER_BURST_PER_IP and NEW_PEERS_PER_SECOND raised (~32 RegisterPk per IP per 61 s,
  or 500 new ids/s, would take minutes); REGISTER_IDS_PER_IP stays at the official 300,
  the peers are spread over many 127.16.x.y addresses, at most ``--per-addr`` ids each.

For each server, the same load generator (``hbbs_loadgen.py``, several processes with
one UDP socket per source address and pre-encoded datagrams):

1. registers N peers with one RegisterPk each (one request in flight per address), and
   samples the server's VmRSS before, during and after;
2. drives RegisterPeer heartbeats open-loop at rising rates, then bisects, then holds the
   best rate for a longer confirmation step; only answered requests count, and the
   highest rate with at most 1 % loss is "sustained";
3. for pyhbb only: punch round trips (``hbbs_punch.py``) with no load and while the
   heartbeat load runs at ``--punch-load`` x the sustained rate; and, with
   ``--profile py-spy|cprofile``, a profile of the server under heartbeat load.

Figures are ratios to the baselines measured in the same run, and the CPU each process
used (server, load generator, everything else on the machine) is reported beside them:
the machine has 2 cores, so the load generator competes with the server.

Usage: .venv/bin/python bench/hbbs_load.py [--quick] [--peers N] [--profile py-spy]
       [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hbbs_cbaseline import build as build_c_baseline
from hbbs_loadgen import Layout, SenderPool
from hbbs_procs import (
    Child,
    cpu_seconds,
    cpu_split,
    die_with_parent,
    free_port_block,
    rss_bytes,
    start_child,
    udp_drops,
    wait_tcp_listening,
    wait_udp_answer,
)
from hbbs_profile import summarize_pyspy
from hbbs_punch import punch_main
from results_md import tree_commit, write_section

from pyhbb.wire import rendezvous_pb2 as pb

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
OUT = BENCH / "out"
SECTION = "## Rendezvous (hbbs)"
MAX_LOSS = 0.01
GOAL_RATE = 67_000
GOAL_BYTES = 300
PROBE = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id="bench-probe")).SerializeToString()


# -- machine-wide CPU accounting ----------------------------------------------------------


@dataclass
class CpuSample:
    """CPU seconds so far: ours per process, and the whole machine from /proc/stat."""

    procs: dict[str, float]
    server_user: float
    machine_proc: float
    machine_softirq: float
    at: float

    @classmethod
    def take(cls, pids: dict[str, list[int]]) -> CpuSample:
        procs: dict[str, float] = {}
        server_user = 0.0
        for pid in pids.get("server", []):
            with contextlib.suppress(OSError):
                server_user += cpu_split(pid)[0]
        for role, plist in pids.items():
            total = 0.0
            for pid in plist:
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
            procs[role] = total
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        tck = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        machine = (user + nice + system) / tck
        return cls(procs, server_user, machine, (irq + softirq) / tck, time.monotonic())


@dataclass
class CpuUse:
    """Cores used over an interval, per role; ``other`` = the rest of the machine."""

    cores: dict[str, float]
    other: float
    softirq: float
    server_user: float

    @classmethod
    def between(cls, a: CpuSample, b: CpuSample) -> CpuUse:
        dt = max(b.at - a.at, 1e-9)
        cores = {k: (b.procs[k] - a.procs.get(k, 0.0)) / dt for k in b.procs}
        other = (b.machine_proc - a.machine_proc) / dt - sum(cores.values())
        softirq = (b.machine_softirq - a.machine_softirq) / dt
        return cls(cores, max(other, 0.0), softirq, (b.server_user - a.server_user) / dt)


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy on the whole machine over ``seconds`` (user + system + irq)."""
    a = CpuSample.take({})
    time.sleep(seconds)
    b = CpuSample.take({})
    dt = b.at - a.at
    return (b.machine_proc - a.machine_proc + b.machine_softirq - a.machine_softirq) / dt


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the machine is below ``limit`` cores busy."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy()
    while busy > limit and time.monotonic() < deadline:
        print(f"  machine busy ({busy:.2f} cores used by others); waiting for quiet ...")
        busy = machine_busy(2.0)
    return busy


# -- results ------------------------------------------------------------------------------


@dataclass
class Step:
    target: float
    sent: int
    ok: int
    other: int
    send_time: float
    cpu: CpuUse
    server_drops: int
    client_drops: int
    kind: str = "step"

    @property
    def answered(self) -> int:
        return self.ok + self.other

    @property
    def achieved(self) -> float:
        return self.sent / self.send_time if self.send_time else 0.0

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.answered / self.send_time if self.send_time else 0.0

    @property
    def loss(self) -> float:
        return 1.0 - self.answered / self.sent if self.sent else 1.0

    @property
    def client_limited(self) -> bool:
        return self.achieved < 0.97 * self.target

    @property
    def passed(self) -> bool:
        return self.loss <= MAX_LOSS and not self.client_limited

    @property
    def server_us(self) -> float:
        """Server CPU microseconds per answered request."""
        cores = self.cpu.cores.get("server", 0.0)
        return cores * 1e6 / self.rate if self.rate else float("nan")

    @property
    def server_user_us(self) -> float:
        """Server CPU microseconds per answered request in user mode (Python, protobuf,
        uvloop); the rest is the kernel's (system calls, loopback delivery, wake-ups)."""
        return self.cpu.server_user * 1e6 / self.rate if self.rate else float("nan")

    def line(self) -> str:
        c = self.cpu
        verdict = "ok" if self.passed else ("CLIENT-LIMITED" if self.client_limited else "LOSS")
        return (
            f"  {self.kind:8s} target {self.target:9,.0f}/s sent {self.achieved:9,.0f}/s "
            f"answered {self.rate:9,.0f}/s loss {self.loss * 100:6.2f} % "
            f"(drops: server {self.server_drops}, client {self.client_drops}) "
            f"cores: server {c.cores.get('server', 0):.2f} client {c.cores.get('client', 0):.2f} "
            f"other {c.other:.2f} softirq {c.softirq:.2f}  {self.server_us:5.2f} µs/req "
            f"({self.server_user_us:.2f} user)  "
            f"[{verdict}]"
        )


@dataclass
class Registration:
    peers: int
    seconds: float
    ok: int
    resent: int
    too_frequent: int
    refused: int
    unfinished: int
    server_cores: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


@dataclass
class PunchResult:
    label: str
    load_rate: float
    started: int
    rtts: list[float]
    connects: list[float]
    outcomes: dict[str, int]
    b_answers: dict[str, int]
    load_step: Step | None

    def pct(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(self.rtts if values is None else values)
        if not data:
            return float("nan")
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k] * 1000


@dataclass
class ServerRun:
    name: str
    registration: Registration | None = None
    rss_idle: int = 0
    rss_points: list[tuple[int, int]] = field(default_factory=list)
    rss_after_load: int = 0
    rss_settled: list[tuple[float, int]] = field(default_factory=list)
    settle_rate: float = 0.0
    steps: list[Step] = field(default_factory=list)
    sustained: Step | None = None
    ceiling_hit: bool = False
    punches: list[PunchResult] = field(default_factory=list)
    profile: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def registration_peers(self) -> int:
        return self.rss_points[-1][0] if self.rss_points and self.rss_points[-1][0] else 1

    @property
    def rss_registered(self) -> int:
        return self.rss_points[-1][1] if self.rss_points else 0

    def bytes_per_peer(self) -> float:
        if not self.rss_points or self.rss_points[-1][0] == 0:
            return float("nan")
        return (self.rss_registered - self.rss_idle) / self.rss_points[-1][0]

    def marginal_bytes_per_peer(self) -> float:
        """RSS slope over the second half of the registration (start-up costs excluded)."""
        pts = self.rss_points
        if len(pts) < 2:
            return float("nan")
        half = pts[(len(pts) - 1) // 2]
        last = pts[-1]
        if last[0] == half[0]:
            return float("nan")
        return (last[1] - half[1]) / (last[0] - half[0])

    @property
    def best_rate(self) -> float:
        return self.sustained.rate if self.sustained else 0.0


class Spy:
    """``py-spy record --native`` on a PID until the ``with`` block ends."""

    def __init__(self, exe: str, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        self.argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--native"]
        self.argv += ["--format", "raw", "--output", str(out)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""

    def __enter__(self) -> Spy:
        self.out.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
        )
        time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""

    def summary(self) -> str:
        if not self.out.exists():
            return f"py-spy wrote nothing: {self.error.strip()[-500:]}"
        return summarize_pyspy(self.out)


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Options:
    peers: int
    per_addr: int
    senders: int
    chunks: int
    step: float
    rest: float
    confirm: float
    start_rate: float
    growth: float
    bisect: int
    max_rate: float
    rmem: int
    punch_rate: float
    punch_duration: float
    punch_load: float
    punch_targets: int
    profile: str
    profile_duration: float
    settle: float
    servers: list[str]
    hbbs: Path
    quiet_limit: float
    quiet_wait: float
    keep: bool


class Bench:
    def __init__(self, opts: Options, workroot: Path) -> None:
        self.o = opts
        self.workroot = workroot
        self.layout = Layout(opts.peers, opts.per_addr)
        self.children: list[Child] = []
        self.server_port = 0

    # -- servers --------------------------------------------------------------------------

    def start_server(self, name: str, port: int) -> Child:
        o = self.o
        workdir = self.workroot / name
        workdir.mkdir()
        if name == "C":
            binary = build_c_baseline(workdir)
            argv = [str(binary), str(port), str(o.rmem)]
            child = start_child(name, argv, workdir)
        elif name == "uvloop":
            argv = [sys.executable, str(BENCH / "hbbs_baseline.py"), str(port), str(o.rmem)]
            child = start_child(name, argv, workdir)
        else:
            env = {
                "TEST_HBBS": "no",
                "RUST_LOG": "warn",
                "REGISTER_BURST_PER_IP": str(1 << 30),
                "NEW_PEERS_PER_SECOND": str(1 << 30),
                "RMEM": str(o.rmem),
            }
            argv = [str(o.hbbs), "-p", str(port)]
            if o.profile == "cprofile":
                argv = [sys.executable, "-m", "cProfile", "-o", str(workdir / "cprofile.out")]
                argv += [str(o.hbbs), "-p", str(port)]
            child = start_child(name, argv, workdir, env)
        self.children.append(child)
        wait_udp_answer(port, PROBE, child)
        if name == "pyhbb":
            wait_tcp_listening(port, child)
        return child

    def sample(self, server: Child, pool: SenderPool, punch_pid: int | None = None) -> CpuSample:
        pids = {"server": [server.pid], "client": list(pool.pids)}
        if punch_pid is not None:
            pids["client"].append(punch_pid)
        return CpuSample.take(pids)

    @staticmethod
    def client_drops(pool: SenderPool) -> int:
        ports = set(pool.ports)
        total = 0
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) in ports:
                total += int(cols[-1])
        return total

    # -- phases ---------------------------------------------------------------------------

    def register(self, run: ServerRun, server: Child, pool: SenderPool) -> None:
        o = self.o
        total = Counter[str]()
        seconds = 0.0
        cpu_before = cpu_seconds(server.pid)
        done = 0
        for chunk in range(o.chunks):
            deadline = time.monotonic() + 60 + o.peers / 2000
            t0 = time.monotonic()
            results = pool.call("register", chunk, o.chunks, deadline)
            seconds += time.monotonic() - t0
            for r in results:
                total.update({k: int(v) for k, v in r.items() if k not in ("elapsed", "cpu")})
            done = total["ok"]
            time.sleep(0.3)  # let the database writer settle before sampling RSS
            run.rss_points.append((done, rss_bytes(server.pid)))
        server_cpu = cpu_seconds(server.pid) - cpu_before
        run.registration = Registration(
            peers=o.peers,
            seconds=seconds,
            ok=total["ok"],
            resent=total["resent"],
            too_frequent=total["too_frequent"],
            refused=total["refused"],
            unfinished=total["unfinished"],
            server_cores=server_cpu / seconds if seconds else 0.0,
        )
        reg = run.registration
        print(
            f"  registered {reg.ok:,}/{o.peers:,} peers in {reg.seconds:.1f} s "
            f"({reg.rate:,.0f} RegisterPk/s; resent {reg.resent}, too frequent "
            f"{reg.too_frequent}, refused {reg.refused}, unfinished {reg.unfinished}); "
            f"RSS {run.rss_idle / 2**20:.1f} -> {run.rss_registered / 2**20:.1f} MiB"
        )

    def step(
        self,
        server: Child,
        pool: SenderPool,
        rate: float,
        duration: float,
        kind: str = "step",
        punch: tuple[Connection, int, float, float] | None = None,
    ) -> tuple[Step, Any]:
        """One open-loop interval; with ``punch``, a punch run goes on at the same time."""
        s_drops0 = udp_drops(self.server_port)
        c_drops0 = self.client_drops(pool)
        punch_pid = punch[1] if punch else None
        a = self.sample(server, pool, punch_pid)
        start_at = time.monotonic() + 0.05
        pool.send("rate", rate / self.o.senders, duration, start_at)
        punch_result: Any = None
        if punch is not None:
            conn, _, p_rate, p_duration = punch
            conn.send(("run", p_rate, p_duration))
            punch_result = conn.recv()
        results = pool.gather()
        b = self.sample(server, pool, punch_pid)
        step = Step(
            target=rate,
            sent=sum(int(r["sent"]) for r in results),
            ok=sum(int(r["ok"]) for r in results),
            other=sum(int(r["other"]) for r in results),
            send_time=max(r["send_time"] for r in results),
            cpu=CpuUse.between(a, b),
            server_drops=udp_drops(self.server_port) - s_drops0,
            client_drops=self.client_drops(pool) - c_drops0,
            kind=kind,
        )
        print(step.line())
        time.sleep(self.o.rest)
        return step, punch_result

    def search(self, run: ServerRun, server: Child, pool: SenderPool) -> None:
        o = self.o
        self.step(server, pool, o.start_rate / 2, min(1.0, o.step), "warm-up")
        good: Step | None = None
        bad: Step | None = None
        rate = o.start_rate
        while rate <= o.max_rate:
            st = self._checked_step(run, server, pool, rate)
            if st.passed:
                good = st
                rate *= o.growth
                continue
            bad = st
            if st.client_limited:
                run.ceiling_hit = True
            break
        for _ in range(o.bisect):
            if good is None or bad is None or bad.target / good.target < 1.04:
                break
            if bad.client_limited:
                break
            st = self._checked_step(run, server, pool, (good.target + bad.target) / 2)
            if st.passed:
                good = st
            else:
                bad = st
        # hold the best rate longer; step down while it does not hold
        candidate = good.target if good else o.start_rate / 2
        for _ in range(4):
            st = self._checked_step(run, server, pool, candidate, o.confirm, "confirm")
            if st.passed:
                run.sustained = st
                break
            candidate *= 0.9

    def _checked_step(
        self,
        run: ServerRun,
        server: Child,
        pool: SenderPool,
        rate: float,
        duration: float | None = None,
        kind: str = "step",
    ) -> Step:
        """A step; a failed one is repeated once when others loaded the machine meanwhile."""
        st, _ = self.step(server, pool, rate, duration or self.o.step, kind)
        run.steps.append(st)
        if not st.passed and st.cpu.other > self.o.quiet_limit:
            print(f"  (others used {st.cpu.other:.2f} cores during that step: repeating it)")
            wait_quiet(self.o.quiet_limit, self.o.quiet_wait)
            st, _ = self.step(server, pool, rate, duration or self.o.step, kind)
            run.steps.append(st)
        return st

    def punches(self, run: ServerRun, server: Child, pool: SenderPool) -> None:
        o = self.o
        key = (self.workroot / "pyhbb" / "id_ed25519.pub").read_text().strip()
        ctx = mp.get_context("fork")
        parent, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=punch_main,
            args=(child_end, self.server_port, key, o.punch_targets),
            name="hbbs-punch",
            daemon=True,
        )
        proc.start()
        child_end.close()
        try:
            tag, info = parent.recv()
            if tag != "ready":
                run.notes.append(f"punch set-up failed: {info}")
                print(f"  punch set-up failed: {info}")
                return
            assert proc.pid is not None
            # no heartbeat load
            a = self.sample(server, pool, proc.pid)
            parent.send(("run", o.punch_rate, o.punch_duration))
            res = parent.recv()
            b = self.sample(server, pool, proc.pid)
            idle = self._punch_result("no load", 0.0, res, None)
            cores = CpuUse.between(a, b).cores
            print(f"  punches, no load: {self._punch_line(idle)}; cores {cores}")
            run.punches.append(idle)
            load = (run.sustained.target if run.sustained else o.start_rate) * o.punch_load
            punch = (parent, proc.pid, o.punch_rate, o.punch_duration)
            st, res = self.step(server, pool, load, o.punch_duration + 0.5, "punch", punch)
            loaded = self._punch_result("under load", load, res, st)
            print(f"  punches, under load: {self._punch_line(loaded)}")
            run.punches.append(loaded)
        finally:
            with contextlib.suppress(OSError):
                parent.send(("stop",))
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            parent.close()

    @staticmethod
    def _punch_result(label: str, load: float, res: dict[str, Any], st: Step | None) -> PunchResult:
        return PunchResult(
            label=label,
            load_rate=load,
            started=int(res["started"]),
            rtts=list(res["rtts"]),
            connects=list(res["connects"]),
            outcomes=dict(res["outcomes"]),
            b_answers=dict(res["b_answers"]),
            load_step=st,
        )

    @staticmethod
    def _punch_line(p: PunchResult) -> str:
        return (
            f"{len(p.rtts)}/{p.started} ok, RTT p50 {p.pct(50):.2f} ms p90 {p.pct(90):.2f} ms "
            f"p99 {p.pct(99):.2f} ms max {p.pct(100):.2f} ms; connect p50 "
            f"{p.pct(50, p.connects):.2f} ms; outcomes {p.outcomes}; B got {p.b_answers}"
        )

    def settle(self, run: ServerRun, server: Child, pool: SenderPool) -> None:
        """Every peer online at the real heartbeat rate (N / 15 s) for ``--settle`` s."""
        o = self.o
        rate = max(1000.0, o.peers / 15)
        run.settle_rate = rate
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < o.settle:
            self.step(server, pool, rate, min(30.0, max(1.0, o.settle - elapsed)), "steady")
            t, rss = time.monotonic() - t0, rss_bytes(server.pid)
            run.rss_settled.append((t, rss))
            print(f"  RSS after {t:.0f} s of steady state: {rss / 2**20:.1f} MiB")

    def profile(self, run: ServerRun, server: Child, pool: SenderPool) -> None:
        """py-spy (native stacks) on the server: heartbeats at the sustained rate, then the
        first registration of extra peers (new ids from new addresses)."""
        o = self.o
        if o.profile == "cprofile":
            # the whole server life is profiled; give the heartbeat path some extra time
            rate = run.sustained.target if run.sustained else o.start_rate
            self.step(server, pool, rate, o.profile_duration, "profile")
            return
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            run.notes.append("py-spy not found: no profile (pip install py-spy into .venv)")
            return
        OUT.mkdir(exist_ok=True)
        rate = run.sustained.target if run.sustained else o.start_rate
        summaries = []
        with Spy(spy, server.pid, OUT / "hbbs_pyspy_register_peer.txt") as sp:
            self.step(server, pool, rate, o.profile_duration, "profile")
        summaries.append(f"RegisterPeer heartbeats at {rate:,.0f}/s:\n{sp.summary()}")
        extra = Layout(
            max(o.per_addr, min(o.peers // 5, 20_000)),
            o.per_addr,
            first_id=1_500_000_000,
            first_addr=self.layout.addrs + 10,
        )
        reg_pool = SenderPool(extra, o.senders, ("127.0.0.1", self.server_port))
        try:
            with Spy(spy, server.pid, OUT / "hbbs_pyspy_register_pk.txt") as sp:
                t0 = time.monotonic()
                res = reg_pool.call("register", 0, 1, time.monotonic() + 120)
                dt = time.monotonic() - t0
        finally:
            reg_pool.close()
        ok = sum(int(r["ok"]) for r in res)
        summaries.append(
            f"RegisterPk (first registration) of {ok:,} new peers, {ok / dt:,.0f}/s under "
            f"the profiler:\n{sp.summary()}"
        )
        run.profile = "\n\n".join(summaries)
        print(run.profile)

    # -- one server -----------------------------------------------------------------------

    def run_server(self, name: str) -> ServerRun:
        o = self.o
        run = ServerRun(name)
        busy = wait_quiet(o.quiet_limit, o.quiet_wait)
        print(f"\n== {name} (machine busy before start: {busy:.2f} cores)")
        self.server_port = free_port_block()
        server = self.start_server(name, self.server_port)
        pool: SenderPool | None = None
        try:
            time.sleep(0.5)
            run.rss_idle = rss_bytes(server.pid)
            run.rss_points.append((0, run.rss_idle))
            pool = SenderPool(self.layout, o.senders, ("127.0.0.1", self.server_port))
            self.register(run, server, pool)
            self.search(run, server, pool)
            run.rss_after_load = rss_bytes(server.pid)
            if name == "pyhbb":
                if o.punch_rate > 0:
                    self.punches(run, server, pool)
                if o.settle > 0:
                    self.settle(run, server, pool)
                if o.profile != "none":
                    self.profile(run, server, pool)
        finally:
            if pool is not None:
                pool.close()
            status = server.stop()
            if name == "pyhbb" and status not in (0, None):
                run.notes.append(f"hbbs exited with status {status}")
            if name == "pyhbb" and o.profile == "cprofile":
                out = self.workroot / name / "cprofile.out"
                if out.exists():
                    OUT.mkdir(exist_ok=True)
                    shutil.copy(out, OUT / "hbbs_cprofile.out")
                    run.profile = cprofile_summary(OUT / "hbbs_cprofile.out")
                    print(run.profile)
        return run


def cprofile_summary(path: Path, top: int = 25) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# -- report -------------------------------------------------------------------------------


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a and b else "—"


def report(runs: dict[str, ServerRun], o: Options, elapsed: float) -> str:
    today = datetime.date.today().isoformat()
    py = platform.python_version()
    cores = os.cpu_count()
    c = runs.get("C")
    u = runs.get("uvloop")
    p = runs.get("pyhbb")
    lines = [SECTION, ""]
    rev = "`" + tree_commit(ROOT) + "`"
    lines.append(
        f"Measured by `bench/hbbs_load.py` on {today}, {cores} cores, Python {py}, Linux "
        f"{platform.release()}, loopback only, pyhbb at {rev}; run took {elapsed / 60:.1f} min. "
        f"N = {o.peers:,} peers over {Layout(o.peers, o.per_addr).addrs:,} source addresses "
        f"(≤ {o.per_addr} ids each: REGISTER_IDS_PER_IP stays at the official 300; "
        f"REGISTER_BURST_PER_IP and NEW_PEERS_PER_SECOND raised to 2^30, since the official "
        f"~32 RegisterPk per IP per 61 s, or 500 new ids/s, would take minutes); "
        f"{o.senders} sender processes; server UDP receive "
        f"buffer {o.rmem // 1024} KiB (RMEM) for every server; RUST_LOG=warn, TEST_HBBS=no. "
        "Baselines built and measured in the same run: **C** = `bench/hbbs_cbaseline.py` "
        "(C source built with gcc: "
        "recvfrom/sendto, looks at the first byte, stores nothing: the upper bound and the "
        "load generator's ceiling), **uvloop** = `bench/hbbs_baseline.py` "
        "(the docs/architecture.md "
        "reference: uvloop DatagramProtocol + protobuf parse + dict update + constant reply)."
    )
    lines.append("")
    lines.append(
        "RegisterPeer heartbeats, open loop at rising rates then bisection, best rate held "
        f"for {o.confirm:.0f} s; *sustained* = answered with ≤ 1 % loss. Cores are "
        "fractions of one core over the same interval (server = the server process with its "
        "threads; client = the load generator; other = everything else on the machine)."
    )
    lines.append("")
    lines.append(
        "| server | sustained RegisterPeer/s | × uvloop | × C | server CPU µs/req "
        "| of which user | user × uvloop | server cores | client cores | other "
        "| 1-core projection |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    u_user = u.sustained.server_user_us if u and u.sustained else 0.0
    for name in ("C", "uvloop", "pyhbb"):
        r = runs.get(name)
        if r is None:
            continue
        s = r.sustained
        if s is None:
            lines.append(f"| {name} | none held | | | | | | | | | |")
            continue
        cap = " (client-limited)" if r.ceiling_hit else ""
        us = s.server_us
        lines.append(
            f"| {name} | {s.rate:,.0f}{cap} | {fmt_ratio(s.rate, u.best_rate if u else 0)} "
            f"| {fmt_ratio(s.rate, c.best_rate if c else 0)} | {us:.2f} "
            f"| {s.server_user_us:.2f} | {fmt_ratio(s.server_user_us, u_user)} "
            f"| {s.cpu.cores.get('server', 0):.2f} | {s.cpu.cores.get('client', 0):.2f} "
            f"| {s.cpu.other:.2f} | {1e6 / us:,.0f}/s |"
        )
    lines.append("")
    lines.append(
        "*1-core projection* = 10^6 / (server CPU µs per request): what the server would "
        "answer with a whole core to itself; the only figure not capped by the load "
        "generator, which needs about as much CPU per request as the servers and shares "
        "the 2 cores with them. *user* = the server's user-mode CPU (Python, protobuf, "
        "uvloop), the part pyhbb's code decides; the rest is kernel time, which on loopback "
        "in this VM is dominated by delivering each reply and waking the receiving client "
        "(`sock_def_readable` → `try_to_wake_up` in `perf`), so it is larger here than "
        "behind a real NIC and about equal for every server at a given rate."
    )
    lines.append("")
    lines.append(
        "| server | RegisterPk/s (first registration) | RSS idle | RSS with N peers "
        "| bytes/peer | marginal bytes/peer | RSS after load |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for name in ("uvloop", "pyhbb"):
        r = runs.get(name)
        if r is None or r.registration is None:
            continue
        reg = r.registration
        lines.append(
            f"| {name} | {reg.rate:,.0f} ({reg.ok:,} ok, {reg.resent} resent) "
            f"| {r.rss_idle / 2**20:.1f} MiB | {r.rss_registered / 2**20:.1f} MiB "
            f"| {r.bytes_per_peer():.0f} | {r.marginal_bytes_per_peer():.0f} "
            f"| {r.rss_after_load / 2**20:.1f} MiB |"
        )
    if p is not None and p.rss_settled:
        t, rss = p.rss_settled[-1]
        lines.append(
            f"| pyhbb after {t:.0f} s steady state | heartbeats at {p.settle_rate:,.0f}/s "
            f"(every peer once per 15 s) | | {rss / 2**20:.1f} MiB "
            f"| {(rss - p.rss_idle) / p.registration_peers:.0f} | | |"
        )
    lines.append("")
    lines.append(
        "RSS from /proc/PID/status VmRSS; bytes/peer = (RSS with N − RSS idle) / N; marginal "
        "= slope over the second half of the registration. pyhbb's figure includes its "
        "SQLite page cache and the IP blocker's id sets; RegisterPk answers wait for the "
        "database commit."
    )
    if p is not None and p.punches:
        lines.append("")
        lines.append(
            f"Punch round trips (A: TCP PunchHoleRequest with the server key → B gets "
            f"PunchHole by UDP → B: PunchHoleSent on a new TCP connection → A gets "
            f"PunchHoleResponse), {o.punch_rate:.0f} punches/s for {o.punch_duration:.0f} s "
            f"over {o.punch_targets} targets; time from A's send to A's response, TCP "
            "connect excluded:"
        )
        lines.append("")
        lines.append("| pyhbb | heartbeat load | ok | p50 | p90 | p99 | max | connect p50 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for pr in p.punches:
            load = f"{pr.load_step.rate:,.0f}/s" if pr.load_step else "none"
            lines.append(
                f"| {pr.label} | {load} | {len(pr.rtts)}/{pr.started} "
                f"| {pr.pct(50):.2f} ms | {pr.pct(90):.2f} ms | {pr.pct(99):.2f} ms "
                f"| {pr.pct(100):.2f} ms | {pr.pct(50, pr.connects):.2f} ms |"
            )
    lines.append("")
    lines.append(standing(runs))
    for r in runs.values():
        for note in r.notes:
            lines.append("")
            lines.append(f"Note ({r.name}): {note}")
    lines.append("")
    return "\n".join(lines)


def standing(runs: dict[str, ServerRun]) -> str:
    p = runs.get("pyhbb")
    if p is None or p.sustained is None:
        return "**Where we stand:** pyhbb was not measured in this run."
    s = p.sustained
    proj = 1e6 / s.server_us
    # the least flattering of: with N peers, and after the steady state
    bpp = p.bytes_per_peer()
    if p.rss_settled:
        bpp = max(bpp, (p.rss_settled[-1][1] - p.rss_idle) / p.registration_peers)
    rate_part = (
        f"{s.rate:,.0f} RegisterPeer/s sustained on this machine "
        f"({'≥ goal' if s.rate >= GOAL_RATE else f'{s.rate / GOAL_RATE:.0%} of the goal'} of "
        f"{GOAL_RATE:,}/s = {s.rate * 15 / 1e6:.2f} M peers at one heartbeat per 15 s); "
        f"with a core to itself {proj:,.0f}/s ({proj / GOAL_RATE:.2f}× the goal)"
    )
    mem_part = (
        f"{bpp:.0f} bytes per peer ({bpp / GOAL_BYTES:.1f}× the {GOAL_BYTES}-byte goal; "
        f"1 M peers ≈ {bpp * 1e6 / 2**30:.2f} GiB)"
    )
    return f"**Where we stand:** {rate_part}; {mem_part}."


# -- command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about one minute, smaller N")
    ap.add_argument("--peers", type=int, help="N registered peers (default 100000; quick 20000)")
    ap.add_argument("--per-addr", type=int, default=250, help="ids per source address (≤ 300)")
    ap.add_argument("--senders", type=int, default=2, help="load generator processes")
    ap.add_argument("--step", type=float, help="seconds per rate step (default 3; quick 1.5)")
    ap.add_argument("--confirm", type=float, help="seconds the best rate is held (default 10)")
    ap.add_argument("--start-rate", type=float, default=20_000)
    ap.add_argument("--max-rate", type=float, default=400_000)
    ap.add_argument("--rmem", type=int, default=4 << 20, help="server SO_RCVBUF (RMEM)")
    ap.add_argument("--punch-rate", type=float, default=50.0, help="punches per second")
    ap.add_argument("--punch-duration", type=float, help="seconds (default 15; quick 5)")
    ap.add_argument(
        "--punch-load", type=float, default=0.8, help="heartbeat load during punches, × sustained"
    )
    ap.add_argument("--punch-targets", type=int, default=16)
    ap.add_argument("--profile", choices=("none", "py-spy", "cprofile"), default="none")
    ap.add_argument("--profile-duration", type=float, default=10.0)
    ap.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="pyhbb: seconds of steady state (every peer heartbeating once per 15 s) before "
        "RSS is sampled again; > 360 lets hbbs drop the RegisterPk-only details (5 min TTL)",
    )
    ap.add_argument(
        "--servers", default="C,uvloop,pyhbb", help="comma-separated subset of C,uvloop,pyhbb"
    )
    ap.add_argument("--hbbs", type=Path, default=Path(sys.executable).parent / "hbbs")
    ap.add_argument(
        "--quiet-limit", type=float, default=0.3, help="cores others may use before we wait"
    )
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for quiet (s)")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep the temporary working dirs")
    a = ap.parse_args(argv)
    q = a.quick
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ("C", "uvloop", "pyhbb"):
            ap.error(f"unknown server {s}")
    if "C" in servers and shutil.which("gcc") is None:
        print("gcc not found: the C baseline is skipped")
        servers.remove("C")
    opts = Options(
        peers=a.peers or (20_000 if q else 100_000),
        per_addr=min(a.per_addr, 300),
        senders=a.senders,
        chunks=2 if q else 4,
        step=a.step or (1.5 if q else 3.0),
        rest=0.3 if q else 0.5,
        confirm=a.confirm or (3.0 if q else 10.0),
        start_rate=a.start_rate,
        growth=1.4 if q else 1.25,
        bisect=2 if q else 3,
        max_rate=a.max_rate,
        rmem=a.rmem,
        punch_rate=a.punch_rate,
        punch_duration=a.punch_duration or (5.0 if q else 15.0),
        punch_load=a.punch_load,
        punch_targets=a.punch_targets,
        profile=a.profile,
        profile_duration=a.profile_duration,
        settle=a.settle,
        servers=servers,
        hbbs=a.hbbs,
        quiet_limit=a.quiet_limit,
        quiet_wait=a.quiet_wait if not q else min(a.quiet_wait, 20.0),
        keep=a.keep,
    )
    return opts, a


def main(argv: list[str] | None = None) -> int:
    opts, a = parse_args(argv)
    if not opts.hbbs.exists() and "pyhbb" in opts.servers:
        print(f"{opts.hbbs} not found: run ./scripts/bootstrap.sh dev first", file=sys.stderr)
        return 2
    # SIGTERM becomes SystemExit, so the finally blocks stop every child we started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workroot = Path(tempfile.mkdtemp(prefix="hbbs_bench_"))
    bench = Bench(opts, workroot)
    runs: dict[str, ServerRun] = {}
    started = time.monotonic()
    try:
        for name in opts.servers:
            runs[name] = bench.run_server(name)
    finally:
        for child in bench.children:
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
        print(f"written to {a.results} ({SECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
