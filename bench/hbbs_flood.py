"""hbbs under a spoofed RegisterPk flood (issue 12): does it stay up, and fair?

For each flood kind, a fresh ``.venv/bin/hbbs -p P`` (UDP self-test on, RUST_LOG=info) is
started in a temporary directory on free loopback ports and stopped by PID afterwards.
Then, while measuring, first without flood (the baseline of the same run) and then during
the flood:

* a registered peer B's heartbeat round trips (RegisterPeer every 10 ms, one in flight);
* the NAT test (TCP P then P-1, TestNatRequest each) every 0.5 s;
* genuine new devices: one starts every 5 s from its own address and port and behaves as
  the client does (RegisterPk; after TOO_FREQUENT the next try 15 s later; after no
  answer 3 s later) until it gets OK;
* hbbs's RSS, CPU, log lines, and whether it is still running at the end.

The flood is sent by one process through a raw socket (root): every datagram carries a
new forged source address in 127.0.0.0/8 (16 M of them; replies go nowhere), like a
spoofed flood from the Internet. Kinds: ``one-id`` (RegisterPk for B's id with a foreign
uuid: the issue's reproduction) and ``new-ids`` (a new id in every datagram).

Usage: .venv/bin/python bench/hbbs_flood.py [--rate 30000] [--seconds 60]
       [--kinds one-id,new-ids] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing as mp
import os
import platform
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from hbbs_procs import (
    cpu_seconds,
    die_with_parent,
    free_port_block,
    rss_bytes,
    start_child,
    wait_tcp_listening,
    wait_udp_answer,
)
from results_md import tree_commit, write_section

from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import FrameDecoder, encode_frame

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
SECTION = "## Rendezvous (hbbs) under a spoofed flood"
B_ID = "1234567890"
B_ADDR = "127.0.0.2"
DEVICE_ADDR = "127.0.0.3"
OK = pb.RegisterPkResponse.OK
TOO_FREQUENT = pb.RegisterPkResponse.TOO_FREQUENT


def msg(**fields: object) -> bytes:
    return pb.RendezvousMessage(**fields).SerializeToString()  # type: ignore[arg-type]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))] * 1000


# -- the flood --------------------------------------------------------------------------------


def forged_source(i: int) -> bytes:
    """127.1.0.0 and up: 16 M addresses, never 127.0.0.x where the measurers live."""
    return bytes((127, 1 + (i >> 16) % 254, (i >> 8) & 255, i & 255))


def flood_main(conn: Connection, port: int, kind: str, rate: float, seconds: float) -> None:
    die_with_parent()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = socket.inet_aton("127.0.0.1")
    uuid, pk = b"forged-machine-uuid", os.urandom(32)
    template = msg(register_pk=pb.RegisterPk(id="9" * 10, uuid=uuid, pk=pk))
    at = template.index(b"9" * 10)
    one = msg(register_pk=pb.RegisterPk(id=B_ID, uuid=uuid, pk=pk))
    conn.send("ready")
    start_at = conn.recv()
    while time.time() < start_at:
        time.sleep(0.001)
    start = time.monotonic()
    end = start + seconds
    sent = 0
    pack = struct.Struct("!BBHHHBBH4s4sHHHH").pack
    now = start
    while now < end:
        due = min(int((now - start) * rate) - sent, 2000)
        for _ in range(due):
            i = sent
            if kind == "one-id":
                payload = one
            else:
                payload = template[:at] + b"%010d" % (2_000_000_000 + i) + template[at + 10 :]
            udp_len = 8 + len(payload)
            header = pack(
                0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0, forged_source(i), dst,
                1024 + i % 60000, port, udp_len, 0,
            )  # fmt: skip
            with contextlib.suppress(OSError):
                raw.sendto(header + payload, ("127.0.0.1", 0))
            sent += 1
        if due <= 0:
            time.sleep(0.0005)
        now = time.monotonic()
    conn.send((sent, time.monotonic() - start))


# -- the measurers ----------------------------------------------------------------------------


@dataclass
class Phase:
    heartbeats: list[float] = field(default_factory=list)
    heartbeat_lost: int = 0
    nat_tests: list[float] = field(default_factory=list)
    nat_failed: int = 0


@dataclass
class Device:
    name: str
    tries: list[str] = field(default_factory=list)
    registered_after: float | None = None


class Measure:
    def __init__(self, port: int) -> None:
        self.port = port
        self.phase = Phase()
        self.stop = threading.Event()
        self.devices: list[Device] = []
        self.threads: list[threading.Thread] = []

    def start(self, devices: bool) -> None:
        targets = [self._heartbeats, self._nat_tests] + ([self._devices] if devices else [])
        self.threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.stop.clear()

    def _heartbeats(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((B_ADDR, 0))
            s.settimeout(1.0)
            beat = msg(register_peer=pb.RegisterPeer(id=B_ID, serial=3))
            while not self.stop.is_set():
                t0 = time.monotonic()
                s.sendto(beat, ("127.0.0.1", self.port))
                try:
                    s.recvfrom(256)
                    self.phase.heartbeats.append(time.monotonic() - t0)
                except TimeoutError:
                    self.phase.heartbeat_lost += 1
                time.sleep(max(0.0, 0.01 - (time.monotonic() - t0)))

    def _nat_once(self, port: int, local: int) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(5.0)
            s.bind(("127.0.0.1", local))
            s.connect(("127.0.0.1", port))
            s.sendall(encode_frame(msg(test_nat_request=pb.TestNatRequest(serial=3))))
            decoder = FrameDecoder(1 << 16)
            while True:
                data = s.recv(4096)
                if not data:
                    raise OSError("closed")
                for frame in decoder.feed(data):
                    m = pb.RendezvousMessage()
                    m.ParseFromString(frame)
                    if m.WhichOneof("union") == "test_nat_response":
                        return m.test_nat_response.port

    def _nat_tests(self) -> None:
        local = 42000
        while not self.stop.is_set():
            local = 42000 + (local - 41999) % 2000
            t0 = time.monotonic()
            try:
                self._nat_once(self.port, local)
                self._nat_once(self.port - 1, local)
                self.phase.nat_tests.append(time.monotonic() - t0)
            except OSError:
                self.phase.nat_failed += 1
            self.stop.wait(0.5)

    def _devices(self) -> None:
        started = time.monotonic()
        threads = []
        k = 0
        while not self.stop.wait(0 if k == 0 else 5.0):
            device = Device(f"genuine{k:04d}")
            self.devices.append(device)
            t = threading.Thread(target=self._device, args=(device, started), daemon=True)
            t.start()
            threads.append(t)
            k += 1
        for t in threads:
            t.join(30)

    def _device(self, device: Device, started: float) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((DEVICE_ADDR, 0))
            s.settimeout(3.0)
            request = msg(
                register_pk=pb.RegisterPk(id=device.name, uuid=os.urandom(16), pk=os.urandom(32))
            )
            t0 = time.monotonic()
            while not self.stop.is_set():
                s.sendto(request, ("127.0.0.1", self.port))
                try:
                    data, _ = s.recvfrom(256)
                except TimeoutError:
                    device.tries.append("no answer")
                    continue  # the client resends after 3 s
                m = pb.RendezvousMessage()
                m.ParseFromString(data)
                result = m.register_pk_response.result
                if result == OK:
                    device.tries.append("OK")
                    device.registered_after = time.monotonic() - t0
                    return
                device.tries.append(pb.RegisterPkResponse.Result.Name(result))
                self.stop.wait(15.0)  # the client's next registration round


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    kind: str
    rate: float
    seconds: float
    baseline: Phase
    flood: Phase
    devices: list[Device]
    sent: int
    send_time: float
    rss_idle: int
    rss_max: int
    rss_end: int
    server_cores: float
    alive: bool
    exit_status: int | None
    log_lines: int
    log_tail: str


def run_kind(kind: str, rate: float, seconds: float, baseline_s: float, hbbs: Path) -> Run:
    port = free_port_block()
    with tempfile.TemporaryDirectory(prefix="hbbs-flood-") as tmp:
        workdir = Path(tmp)
        env = {"RUST_LOG": "info"}  # TEST_HBBS unset: the self-test runs
        child = start_child("pyhbb", [str(hbbs), "-p", str(port)], workdir, env)
        try:
            wait_udp_answer(port, msg(register_peer=pb.RegisterPeer(id="probe01")), child)
            wait_tcp_listening(port, child)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                b.bind((B_ADDR, 0))
                b.settimeout(5)
                reg = msg(register_pk=pb.RegisterPk(id=B_ID, uuid=b"b-uuid", pk=os.urandom(32)))
                b.sendto(reg, ("127.0.0.1", port))
                b.recvfrom(64)
            time.sleep(1.0)
            rss_idle = rss_bytes(child.pid)
            measure = Measure(port)
            measure.start(devices=False)
            time.sleep(baseline_s)
            measure.finish()
            baseline = measure.phase
            measure.phase = Phase()

            ctx = mp.get_context("fork")
            parent, conn = ctx.Pipe()
            proc = ctx.Process(target=flood_main, args=(conn, port, kind, rate, seconds))
            proc.start()
            assert parent.recv() == "ready"
            cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
            parent.send(time.time() + 0.2)
            measure.start(devices=True)
            rss_max = rss_idle
            while proc.is_alive() and not parent.poll(1.0):
                if child.alive():
                    rss_max = max(rss_max, rss_bytes(child.pid))
            sent, send_time = parent.recv()
            proc.join(10)
            measure.finish()
            server_cores = (cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)
            alive = child.alive()
            rss_end = rss_bytes(child.pid) if alive else 0
            status = child.stop()
            log = child.log_path.read_text(errors="replace")
            return Run(
                kind, rate, seconds, baseline, measure.phase, measure.devices, sent, send_time,
                rss_idle, rss_max, rss_end, server_cores, alive,
                status if not alive else None, len(log.splitlines()), child.log_tail(12),
            )  # fmt: skip
        finally:
            child.stop()


# -- report -----------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    mib = 1 / (1 << 20)
    out = [
        "| flood | sent | hbbs cores | heartbeat p50 / p99 / max (lost) | NAT test p50 / p99 "
        "(failed) | genuine new devices registered | tries per device | RSS idle → max "
        "(growth) | log lines | hbbs still up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for label, ph, devs in (
            ("none (baseline)", r.baseline, None),
            (r.kind, r.flood, r.devices),
        ):
            hb = (
                f"{pct(ph.heartbeats, 50):.2f} / {pct(ph.heartbeats, 99):.2f} / "
                f"{pct(ph.heartbeats, 100):.2f} ms ({ph.heartbeat_lost})"
            )
            nat = f"{pct(ph.nat_tests, 50):.1f} / {pct(ph.nat_tests, 99):.1f} ms ({ph.nat_failed})"
            if devs is None:
                out.append(f"| {label} | | | {hb} | {nat} | | | | | |")
                continue
            ok = [d for d in devs if d.registered_after is not None]
            tries = [len(d.tries) for d in ok]
            flood = f"{r.kind}, {r.sent / r.send_time:,.0f}/s for {r.send_time:.0f} s"
            out.append(
                f"| {flood} | {r.sent:,} | {r.server_cores:.2f} | {hb} | {nat} | "
                f"{len(ok)}/{len(devs)} | {', '.join(map(str, tries)) or '-'} | "
                f"{r.rss_idle * mib:.0f} → {r.rss_max * mib:.0f} MiB "
                f"(+{(r.rss_max - r.rss_idle) * mib:.0f}) | {r.log_lines} | "
                f"{'yes' if r.alive else f'NO (exit {r.exit_status})'} |"
            )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=30_000, help="forged datagrams per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="flood duration")
    ap.add_argument("--baseline", type=float, default=10.0, help="seconds measured before")
    ap.add_argument("--kinds", default="one-id,new-ids")
    ap.add_argument("--hbbs", type=Path, default=ROOT / ".venv" / "bin" / "hbbs")
    ap.add_argument("--no-write", action="store_true")
    o = ap.parse_args()
    if os.geteuid() != 0:
        print("the flood needs a raw socket: run as root", file=sys.stderr)
        return 2
    started = time.monotonic()
    runs = []
    for kind in o.kinds.split(","):
        print(f"flood {kind}: {o.rate:,.0f}/s for {o.seconds:.0f} s ...", flush=True)
        run = run_kind(kind, o.rate, o.seconds, o.baseline, o.hbbs)
        runs.append(run)
        if not run.alive:
            print(run.log_tail)
    commit = tree_commit(ROOT)
    head = (
        f"Measured by `bench/hbbs_flood.py` on {datetime.date.today()}, "
        f"{os.cpu_count()} cores (shared with other work: figures are noisy), Python "
        f"{platform.python_version()}, loopback only, pyhbb at `{commit}`; run took "
        f"{(time.monotonic() - started) / 60:.1f} min. One sender process forges every "
        "RegisterPk with a new source address in 127.0.0.0/8 (raw socket); hbbs runs with "
        "its defaults (UDP self-test on, RUST_LOG=info). Baseline = the same server, the "
        "same measurers, before the flood. Genuine new devices: one starts every 5 s and "
        "retries as the client does (15 s after TOO_FREQUENT, 3 s after no answer)."
    )
    text = head + "\n\n" + table(runs)
    print(text)
    if not o.no_write:
        write_section(RESULTS, f"{SECTION}\n\n{text}")
    return 0 if all(r.alive for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
