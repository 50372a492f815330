"""Relay benchmark: pyhbb's hbbr beside a C splice relay, measured in the same run.

What it measures (loopback only, bounded in time and data):

1. Throughput of one relayed session, one direction and both directions at once, and the
   relay process's CPU seconds per GiB moved (user + system, from /proc/PID/stat).
2. The same for one TCP<->WebSocket session through pyhbb's message bridge, each way
   (no C counterpart: its CPU-s per GiB is compared with the C splice relay's).
3. Concurrent sessions (1, 100, 1000) at a fixed per-session rate: the relay's CPU use
   (fraction of one core) and resident memory.

The baseline is ``bench/relay_splice_baseline.c``, compiled here with gcc: a minimal
single-threaded epoll + splice relay (what pyhbb's raw mode does, minus Python).
Load generators are the same for both relays: ``sendfile`` from a page-cached file and
``splice`` into /dev/null for throughput, a uvloop client for the concurrent sessions.
The WebSocket client is a few lines of raw socket code (a zero masking key, so masking
costs the client nothing) so that the relay, not the client, is what is measured.

Usage: .venv/bin/python bench/relay_bench.py [--quick] [--no-write] [--compare LABEL=SRC]
Figures are printed and, unless --no-write, written as ratios to the
"## Relay (hbbr)" section of bench/RESULTS.md (other sections are left untouched).

``--compare before=/tmp/old/src`` also runs the hbbr of another source tree (for example
``git archive <commit> src | tar -x -C /tmp/old``), interleaved with this one in the same
invocation, and adds a table of this tree's figures relative to that one: on a shared
machine, the only fair way to tell a change's effect from the machine's mood.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from results_md import tree_commit, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pyhbb.wire.framing import encode_frame  # noqa: E402
from pyhbb.wire.rendezvous_pb2 import RendezvousMessage, RequestRelay  # noqa: E402

OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Relay (hbbr)"
MANY_SECTION = "## Relay (hbbr) at many sessions"
MANY_FDS = 200_000  # raising the hard limit needs root (CAP_SYS_RESOURCE); else the hard one
GIB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SOURCE_FILE_SIZE = 64 << 20
SPLICE_CHUNK = 1 << 20


# -- processes under test --------------------------------------------------------------


class Relay:
    """A relay process started by the benchmark; stopped by PID when done."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        probe_port: int,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", probe_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.05)
        time.sleep(0.2)

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def free_port_pair() -> int:
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "little") % 12000
        ok = True
        for off in (0, 2):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", base + off))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise RuntimeError("no free port")


def build_baseline() -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("gcc is needed to build the C baseline (apt-get install gcc)")
    OUT.mkdir(parents=True, exist_ok=True)
    exe = OUT / "relay_splice_baseline"
    src = ROOT / "bench" / "relay_splice_baseline.c"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
    return exe


C_KIND = "C splice"
PYHBB = "pyhbb"


def start_relay(kind: str, baseline: Path, workdir: Path, sources: dict[str, Path]) -> Relay:
    """``kind``: the C baseline, this tree's hbbr, or a label of ``sources``."""
    port = free_port_pair()
    if kind == C_KIND:
        return Relay(kind, [str(baseline), str(port)], port, port, workdir)
    env = {
        "RUST_LOG": "warn",
        # Limits far above loopback speed: the limiter still runs, it never throttles.
        "TOTAL_BANDWIDTH": "100000000",
        "SINGLE_BANDWIDTH": "100000000",
    }
    if kind in sources:  # the same interpreter and packages, another pyhbb
        env["PYTHONPATH"] = str(sources[kind])
        cmd = [sys.executable, "-m", "pyhbb.relay.cli"]
    else:
        cmd = [str(Path(sys.executable).with_name("hbbr"))]
    return Relay(kind, [*cmd, "-p", str(port)], port, port + 2, workdir, env)


# -- clients ---------------------------------------------------------------------------


def request_frame(uuid: str) -> bytes:
    msg = RendezvousMessage(request_relay=RequestRelay(uuid=uuid))
    return encode_frame(msg.SerializeToString())


def open_pair(
    port: int, uuid: str, i: int = 0, gap: float = 0.01
) -> tuple[socket.socket, socket.socket]:
    """Two blocking sockets paired by the relay (from different 127.x addresses)."""
    socks = []
    for side in (2, 3):
        s = socket.socket()
        s.bind((f"127.{side}.{(i >> 8) & 255}.{i & 255 or 1}", 0))
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request_frame(uuid))
        socks.append(s)
        time.sleep(gap)  # the C baseline pairs in arrival order
    return socks[0], socks[1]


def sender(sock: socket.socket, src_fd: int, nbytes: int) -> None:
    left = nbytes
    while left:
        sent = os.sendfile(
            sock.fileno(),
            src_fd,
            (nbytes - left) % SOURCE_FILE_SIZE,
            min(left, SOURCE_FILE_SIZE - (nbytes - left) % SOURCE_FILE_SIZE),
        )
        if sent == 0:
            raise RuntimeError("relay closed the connection")
        left -= sent


def receiver(sock: socket.socket, nbytes: int, done: list[float]) -> None:
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        left = nbytes
        while left:
            n = os.splice(sock.fileno(), w, min(left, SPLICE_CHUNK))
            if n == 0:
                raise RuntimeError("relay closed the connection")
            left -= n
            while n:
                n -= os.splice(r, null, n)
    finally:
        os.close(r)
        os.close(w)
        os.close(null)
    done.append(time.monotonic())


@dataclass
class Throughput:
    gbit_s: float
    cpu_per_gib: float


def run_throughput(relay: Relay, src_fd: int, nbytes: int, both: bool, uuid: str) -> Throughput:
    a, b = open_pair(relay.port, uuid)
    time.sleep(0.1)
    flows: list[tuple[socket.socket, socket.socket]] = [(a, b)] + ([(b, a)] if both else [])
    done: list[float] = []
    threads = []
    for src, dst in flows:
        threads.append(threading.Thread(target=receiver, args=(dst, nbytes, done)))
        threads.append(threading.Thread(target=sender, args=(src, src_fd, nbytes)))
    cpu0 = relay.cpu()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = max(done) - t0 if len(done) == len(flows) else float("nan")
    cpu = relay.cpu() - cpu0
    a.close()
    b.close()
    moved = nbytes * len(flows)
    return Throughput(moved * 8 / elapsed / 1e9, cpu / (moved / GIB))


# -- one TCP <-> WebSocket session through the message bridge -----------------------------

WS_PAYLOAD = 60_000  # < 64 KiB: a 4-byte WebSocket header and a 3-byte TCP frame header
WS_BLOCK_MESSAGES = 16


def ws_connect(port: int, uuid: str) -> socket.socket:
    """A WebSocket client on ws://127.0.0.1:port/ that has sent its RequestRelay."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(
        b"GET /ws/relay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(4096)
        if not data:
            raise RuntimeError("WebSocket handshake refused")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"WebSocket handshake refused: {head[:40]!r}")
    msg = RendezvousMessage(request_relay=RequestRelay(uuid=uuid)).SerializeToString()
    s.sendall(ws_client_frame(msg))
    return s


def ws_client_frame(payload: bytes) -> bytes:
    """A masked binary frame (client to server) with an all-zero masking key."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def block_sender(sock: socket.socket, block: bytes, repeats: int) -> None:
    for _ in range(repeats):
        sock.sendall(block)


def run_ws_bridge(relay: Relay, nbytes: int, to_ws: bool, uuid: str) -> Throughput:
    """One TCP client and one WebSocket client paired; ``nbytes`` of payload one way."""
    tcp = socket.create_connection(("127.0.0.1", relay.port))
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp.sendall(request_frame(uuid))
    time.sleep(0.05)
    ws = ws_connect(relay.port + 2, uuid)
    time.sleep(0.1)
    payload = os.urandom(WS_PAYLOAD)
    repeats = max(1, nbytes // (WS_PAYLOAD * WS_BLOCK_MESSAGES))
    messages = repeats * WS_BLOCK_MESSAGES
    if to_ws:
        src, dst = tcp, ws
        block = encode_frame(payload) * WS_BLOCK_MESSAGES
        arriving = messages * (4 + WS_PAYLOAD)  # server-to-client frames are not masked
    else:
        src, dst = ws, tcp
        block = ws_client_frame(payload) * WS_BLOCK_MESSAGES
        arriving = messages * len(encode_frame(payload))
    done: list[float] = []
    threads = [
        threading.Thread(target=receiver, args=(dst, arriving, done)),
        threading.Thread(target=block_sender, args=(src, block, repeats)),
    ]
    cpu0 = relay.cpu()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = done[0] - t0 if done else float("nan")
    cpu = relay.cpu() - cpu0
    tcp.close()
    ws.close()
    moved = messages * WS_PAYLOAD
    return Throughput(moved * 8 / elapsed / 1e9, cpu / (moved / GIB))


# -- concurrent sessions at a fixed rate -----------------------------------------------


@dataclass
class Scaling:
    sessions: int
    cpu_share: float  # of one core
    rss_mib: float
    rss_idle_mib: float
    received_ratio: float  # received / expected: the relay kept up


async def run_scaling(relay: Relay, sessions: int, rate_bps: int, seconds: float) -> Scaling:
    loop = asyncio.get_running_loop()
    chunk = 16 * 1024
    interval = chunk / rate_bps
    received = 0

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            nonlocal received
            received += len(data)

    rss_idle = relay.rss()
    writers: list[asyncio.Transport] = []
    sinks: list[asyncio.BaseTransport] = []
    for i in range(sessions):
        a, b = await asyncio.to_thread(open_pair, relay.port, f"scale-{i}", i)
        a.setblocking(False)
        b.setblocking(False)
        wa, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        tb, _ = await loop.connect_accepted_socket(Sink, b)
        writers.append(wa)
        sinks.append(tb)
    payload = b"\x5a" * chunk
    stop = False

    async def feed(t: asyncio.Transport, phase: float) -> None:
        await asyncio.sleep(phase)
        nxt = loop.time()
        while not stop:
            t.write(payload)
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - loop.time()))

    tasks = [
        asyncio.ensure_future(feed(t, interval * i / max(sessions, 1)))
        for i, t in enumerate(writers)
    ]
    await asyncio.sleep(1.0)  # warm up
    cpu0, got0, t0 = relay.cpu(), received, loop.time()
    await asyncio.sleep(seconds)
    cpu1, got1, t1 = relay.cpu(), received, loop.time()
    rss = relay.rss()
    stop = True
    await asyncio.gather(*tasks)
    for t in (*writers, *sinks):
        t.close()
    await asyncio.sleep(0.5)
    expected = sessions * rate_bps * (t1 - t0)
    return Scaling(
        sessions, (cpu1 - cpu0) / (t1 - t0), rss / 2**20, rss_idle / 2**20, (got1 - got0) / expected
    )


async def run_many(relay: Relay, sessions: int, rate_bps: int, seconds: float) -> Scaling:
    """Like :func:`run_scaling`, for thousands of sessions: pairs opened with a short gap,
    and one feeder that writes to each phase group of sessions in turn (a task per
    session would make the load generator, not the relay, the bottleneck)."""
    loop = asyncio.get_running_loop()
    chunk = 16 * 1024
    interval = chunk / rate_bps
    received = 0

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            nonlocal received
            received += len(data)

    rss_idle = relay.rss()
    writers: list[asyncio.WriteTransport] = []
    sinks: list[asyncio.BaseTransport] = []

    def open_all() -> list[tuple[socket.socket, socket.socket]]:
        return [open_pair(relay.port, f"many-{i}", i, gap=0.0015) for i in range(sessions)]

    for a, b in await asyncio.to_thread(open_all):
        a.setblocking(False)
        b.setblocking(False)
        wa, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        tb, _ = await loop.connect_accepted_socket(Sink, b)
        writers.append(wa)
        sinks.append(tb)
    payload = b"\x5a" * chunk
    tick = 0.01
    groups = max(1, round(interval / tick))
    by_phase = [writers[g::groups] for g in range(groups)]
    stop = False

    async def feed() -> None:
        nxt = loop.time()
        g = 0
        while not stop:
            for t in by_phase[g]:
                t.write(payload)
            g = (g + 1) % groups
            nxt += interval / groups
            await asyncio.sleep(max(0.0, nxt - loop.time()))

    feeder = asyncio.ensure_future(feed())
    await asyncio.sleep(2.0)  # warm up
    cpu0, got0, t0 = relay.cpu(), received, loop.time()
    await asyncio.sleep(seconds)
    cpu1, got1, t1 = relay.cpu(), received, loop.time()
    rss = relay.rss()
    stop = True
    await feeder
    for t in (*writers, *sinks):
        t.close()
    await asyncio.sleep(1.0)
    expected = sessions * rate_bps * (t1 - t0)
    return Scaling(
        sessions, (cpu1 - cpu0) / (t1 - t0), rss / 2**20, rss_idle / 2**20, (got1 - got0) / expected
    )


def many_sessions(args: argparse.Namespace, sources: dict[str, Path]) -> str:
    """``--sessions``: C and pyhbb (and ``--compare``) interleaved, ``--session-reps``
    times per count; medians. Returns the RESULTS.md section."""
    import uvloop

    counts = [int(x) for x in args.sessions.split(",")]
    rate = 128 * 1024
    window = args.window
    baseline = build_baseline()
    kinds = (C_KIND, PYHBB, *sources)
    runs: dict[tuple[str, int], list[Scaling]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.session_reps):
            for n in counts:
                for kind in kinds:
                    relay = start_relay(kind, baseline, Path(tmp), sources)
                    try:
                        loop = uvloop.new_event_loop()
                        try:
                            s = loop.run_until_complete(run_many(relay, n, rate, window))
                        finally:
                            loop.close()
                    finally:
                        relay.stop()
                    runs.setdefault((kind, n), []).append(s)
                    print(
                        f"  rep {rep + 1} {kind:9s} {n:6d} sessions: {100 * s.cpu_share:5.1f} % "
                        f"CPU, RSS {s.rss_mib:.1f} MiB (idle {s.rss_idle_mib:.1f}), delivered "
                        f"{100 * s.received_ratio:.0f} %",
                        flush=True,
                    )

    def med(kind: str, n: int, field: str) -> float:
        return statistics.median(getattr(s, field) for s in runs[kind, n])

    load = os.getloadavg()
    lines = [
        MANY_SECTION,
        "",
        f"Measured by `bench/relay_bench.py --sessions {args.sessions} --session-reps "
        f"{args.session_reps}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, loopback, pyhbb at `{tree_commit(ROOT)}`; load "
        f"average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: "
        "the relays were run one after the other, interleaved, and the medians compared). "
        f"Each session sends 16 KiB every 125 ms one way (1 Mb/s) for a {window:g} s window; "
        "CPU in % of one core (user + system of the relay process), RSS of the relay "
        "process, per session above its idle RSS.",
        "",
        "| sessions | C splice: CPU | pyhbb: CPU | **pyhbb / C** | C: RSS per session "
        "| pyhbb: RSS per session | delivered (C / pyhbb) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in counts:
        c_cpu, p_cpu = med(C_KIND, n, "cpu_share"), med(PYHBB, n, "cpu_share")
        c_rss = (med(C_KIND, n, "rss_mib") - med(C_KIND, n, "rss_idle_mib")) * 1024 / n
        p_rss = (med(PYHBB, n, "rss_mib") - med(PYHBB, n, "rss_idle_mib")) * 1024 / n
        lines.append(
            f"| {n:,} | {100 * c_cpu:.1f} % | {100 * p_cpu:.1f} % | **{p_cpu / c_cpu:.2f}** "
            f"(goal ≤ 1.2) | {c_rss:.2f} KiB | {p_rss:.2f} KiB "
            f"| {100 * med(C_KIND, n, 'received_ratio'):.0f} % / "
            f"{100 * med(PYHBB, n, 'received_ratio'):.0f} % |"
        )
    for label in sources:
        lines += ["", f"`{label}` (another source tree, interleaved in the same run):", ""]
        lines += ["| sessions | this tree / that: CPU | that / C |", "|---|---|---|"]
        for n in counts:
            this, that = med(PYHBB, n, "cpu_share"), med(label, n, "cpu_share")
            lines.append(
                f"| {n:,} | **{this / that:.2f}** | {that / med(C_KIND, n, 'cpu_share'):.2f} |"
            )
    return "\n".join(lines)


# -- reporting -------------------------------------------------------------------------


def compare_table(
    label: str,
    med: Callable[[str, bool], Throughput],
    median: Callable[[list[Throughput]], Throughput],
    ws_tput: dict[tuple[str, bool], list[Throughput]],
    scaling: dict[str, list[Scaling]],
) -> list[str]:
    """This tree's figures next to ``label``'s, measured interleaved in the same run."""
    rows: list[tuple[str, float, float, str]] = []
    for both in (False, True):
        name = "splice, " + ("both directions" if both else "one direction")
        old, new = med(label, both), med(PYHBB, both)
        rows.append((f"{name}: throughput (Gb/s)", old.gbit_s, new.gbit_s, "higher"))
        rows.append((f"{name}: CPU-s per GiB", old.cpu_per_gib, new.cpu_per_gib, "lower"))
    for to_ws in (True, False):
        name = "WebSocket bridge, " + ("TCP → WS" if to_ws else "WS → TCP")
        old, new = median(ws_tput[(label, to_ws)]), median(ws_tput[(PYHBB, to_ws)])
        rows.append((f"{name}: throughput (Gb/s)", old.gbit_s, new.gbit_s, "higher"))
        rows.append((f"{name}: CPU-s per GiB", old.cpu_per_gib, new.cpu_per_gib, "lower"))
    for o, n in zip(scaling[label], scaling[PYHBB], strict=True):
        name = f"{n.sessions} sessions"
        rows.append((f"{name}: CPU (% of a core)", 100 * o.cpu_share, 100 * n.cpu_share, "lower"))
        rows.append((f"{name}: RSS (MiB)", o.rss_mib, n.rss_mib, "lower"))
        rows.append(
            (f"{name}: delivered (%)", 100 * o.received_ratio, 100 * n.received_ratio, "higher")
        )
    out = [
        f"This tree (`{tree_commit(ROOT)}`) against `{label}`, interleaved in the same run "
        "(medians as above):",
        "",
        f"| figure | {label} | this tree | this / {label} | better is |",
        "|---|---|---|---|---|",
    ]
    for name, old, new, better in rows:
        ratio = f"{new / old:.2f}" if old else "–"
        out.append(f"| {name} | {old:.3g} | {new:.3g} | **{ratio}** | {better} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="less data, shorter windows")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    ap.add_argument(
        "--compare",
        metavar="LABEL=SRC",
        help="also run the pyhbb in SRC (a directory holding the pyhbb package) as LABEL",
    )
    ap.add_argument(
        "--sessions",
        metavar="N,N",
        help="only the many-sessions comparison, at these counts (e.g. 1000,10000)",
    )
    ap.add_argument("--session-reps", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    args = ap.parse_args()
    sources: dict[str, Path] = {}
    if args.compare:
        label, _, path = args.compare.partition("=")
        if not label or not (Path(path) / "pyhbb" / "relay" / "cli.py").is_file():
            raise SystemExit("--compare wants LABEL=SRC, SRC holding pyhbb/relay/cli.py")
        sources[label] = Path(path).resolve()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # 10,000 sessions: 20,000 sockets here, 60,000 descriptors in each relay
        resource.setrlimit(resource.RLIMIT_NOFILE, (MANY_FDS, MANY_FDS))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.sessions:
        body = many_sessions(args, sources)
        print()
        print(body)
        if not args.no_write:
            write_section(RESULTS, body)
            print(f"\nwritten to {RESULTS.relative_to(ROOT)} ({MANY_SECTION})")
        return
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop

    per_flow = (256 << 20) if args.quick else (2 * GIB)
    ws_bytes = (64 << 20) if args.quick else (512 << 20)
    reps = 1 if args.quick else 5
    window = 3.0 if args.quick else 8.0
    counts = (1, 100, 1000)
    rate = 128 * 1024  # bytes/s per session, one way: 1 Mb/s, a typical desktop stream

    baseline = build_baseline()
    kinds = (C_KIND, PYHBB, *sources)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile(dir=tmp) as src:
        workdir = Path(tmp)
        src.write(os.urandom(1 << 20) * (SOURCE_FILE_SIZE >> 20))
        src.flush()
        tput: dict[tuple[str, bool], list[Throughput]] = {}
        ws_tput: dict[tuple[str, bool], list[Throughput]] = {}
        for rep in range(reps):
            for kind in kinds:  # alternate, so drift hits both relays alike
                relay = start_relay(kind, baseline, workdir, sources)
                try:
                    for both in (False, True):
                        r = run_throughput(relay, src.fileno(), per_flow, both, f"t-{rep}-{both}")
                        tput.setdefault((kind, both), []).append(r)
                        print(
                            f"  {kind:9s} {'both' if both else 'one '} run {rep + 1}: "
                            f"{r.gbit_s:6.2f} Gb/s, {r.cpu_per_gib:.3f} CPU-s/GiB",
                            flush=True,
                        )
                    if kind != C_KIND:
                        for to_ws in (True, False):
                            r = run_ws_bridge(relay, ws_bytes, to_ws, f"w-{rep}-{to_ws}")
                            ws_tput.setdefault((kind, to_ws), []).append(r)
                            print(
                                f"  {kind:9s} {'tcp->ws' if to_ws else 'ws->tcp'} run "
                                f"{rep + 1}: {r.gbit_s:6.2f} Gb/s, {r.cpu_per_gib:.3f} CPU-s/GiB",
                                flush=True,
                            )
                finally:
                    relay.stop()
        scaling: dict[str, list[Scaling]] = {}
        for kind in kinds:
            for n in counts:
                relay = start_relay(kind, baseline, workdir, sources)
                try:
                    loop = new_loop()
                    try:
                        s = loop.run_until_complete(run_scaling(relay, n, rate, window))
                    finally:
                        loop.close()
                finally:
                    relay.stop()
                scaling.setdefault(kind, []).append(s)
                print(
                    f"  {kind:9s} {n:5d} sessions: {100 * s.cpu_share:5.1f} % CPU, "
                    f"RSS {s.rss_mib:.1f} MiB (idle {s.rss_idle_mib:.1f}), "
                    f"delivered {100 * s.received_ratio:.0f} %",
                    flush=True,
                )

    def median(runs: list[Throughput]) -> Throughput:
        return Throughput(
            statistics.median(r.gbit_s for r in runs),
            statistics.median(r.cpu_per_gib for r in runs),
        )

    def med(kind: str, both: bool) -> Throughput:
        return median(tput[(kind, both)])

    lines = [
        f"Measured by `bench/relay_bench.py`{' --quick' if args.quick else ''} on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, loopback. Baseline: `bench/relay_splice_baseline.c` "
        "(single-threaded epoll + splice, built by the benchmark). pyhbb: `.venv/bin/hbbr` "
        f"at `{tree_commit(ROOT)}` "
        "(uvloop, splice pump, limiter active with caps far above loopback speed). "
        f"Median of {reps} run(s); {per_flow >> 20} MiB per direction per run. "
        "Single runs spread by about ±15 % on this 2-core machine (the load generator "
        "shares the cores), so read the ratios, not the absolute figures.",
        "",
        "| one session | C splice | pyhbb | pyhbb / C |",
        "|---|---|---|---|",
    ]
    for both in (False, True):
        c, p = med(C_KIND, both), med(PYHBB, both)
        label = "both directions" if both else "one direction"
        lines.append(
            f"| {label}: throughput | {c.gbit_s:.2f} Gb/s | {p.gbit_s:.2f} Gb/s | "
            f"**{p.gbit_s / c.gbit_s:.2f}** (goal ≥ 0.95) |"
        )
        lines.append(
            f"| {label}: CPU-s per GiB | {c.cpu_per_gib:.3f} | {p.cpu_per_gib:.3f} | "
            f"**{p.cpu_per_gib / c.cpu_per_gib:.2f}** (goal ≤ 1.2) |"
        )
    c_cpu = med(C_KIND, False).cpu_per_gib
    lines += [
        "",
        f"One TCP<->WebSocket session through the message bridge, {ws_bytes >> 20} MiB of "
        f"payload one way in {WS_PAYLOAD:,}-byte messages (median of {reps}); no C "
        "counterpart, so its CPU per GiB is compared with the C splice relay's (one direction):",
        "",
        "| WebSocket bridge | pyhbb throughput | pyhbb CPU-s per GiB | CPU × C splice |",
        "|---|---|---|---|",
    ]
    for to_ws in (True, False):
        w = median(ws_tput[(PYHBB, to_ws)])
        label = "TCP → WebSocket" if to_ws else "WebSocket → TCP"
        lines.append(
            f"| {label} | {w.gbit_s:.2f} Gb/s | {w.cpu_per_gib:.3f} | "
            f"**{w.cpu_per_gib / c_cpu:.1f}** |"
        )
    lines += [
        "",
        f"Concurrent sessions, each sending {rate * 8 // 1024} kb/s one way "
        f"({window:g} s window); CPU in % of one core, RSS of the relay process:",
        "",
        "| sessions | C: CPU | C: RSS MiB | pyhbb: CPU | pyhbb: RSS MiB | pyhbb RSS per session "
        "| delivered (C / pyhbb) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, p in zip(scaling[C_KIND], scaling[PYHBB], strict=True):
        per = (p.rss_mib - p.rss_idle_mib) * 1024 / p.sessions
        lines.append(
            f"| {p.sessions} | {100 * c.cpu_share:.1f} % | {c.rss_mib:.1f} | "
            f"{100 * p.cpu_share:.1f} % | {p.rss_mib:.1f} | {per:.1f} KiB | "
            f"{100 * c.received_ratio:.0f} % / {100 * p.received_ratio:.0f} % |"
        )
    for label in sources:
        lines += ["", *compare_table(label, med, median, ws_tput, scaling)]
    body = "\n".join(lines)
    print()
    print(body)
    if not args.no_write:
        write_section(RESULTS, f"{SECTION}\n\n{body}")
        print(f"\nwritten to {RESULTS.relative_to(ROOT)} ({SECTION})")


if __name__ == "__main__":
    main()
