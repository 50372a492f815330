"""A real cluster on loopback: 3 nats-server (JetStream, R3) and 3 hbbs nodes on
127.0.0.11-13, started as processes and always stopped by PID (docs/cluster.md §4)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pyhbb.cluster.nats_config import NatsMember, render
from pyhbb.wire.keys import load_or_generate
from tests.support.ports import free_base_port
from tests.support.processes import wait_tcp

BIN = Path(sys.executable).parent
NATS_SERVER = BIN / "nats-server"
NODE_IPS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
RELAY_IPS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")


@dataclass
class Proc:
    args: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        os.kill(self.popen.pid, sig)

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


@dataclass
class Cluster:
    root: Path
    base: int
    nats: list[Proc] = field(default_factory=list)
    nodes: list[Proc] = field(default_factory=list)
    relays: list[Proc] = field(default_factory=list)
    nats_ports: list[int] = field(default_factory=list)

    def relay(self, i: int) -> str:
        """Node i's hbbr, as handed to clients: one concrete address."""
        return f"{RELAY_IPS[i]}:{self.base + 1}"

    @property
    def relay_addresses(self) -> set[str]:
        return {self.relay(i) for i in range(len(self.nodes))}

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.nats_ports]

    def node_addr(self, i: int) -> tuple[str, int]:
        return NODE_IPS[i], self.base

    def nat_addr(self, i: int) -> tuple[str, int]:
        return NODE_IPS[i], self.base - 1

    def nats_messages_in(self) -> int:
        """Messages the NATS servers received from clients so far (/varz in_msgs)."""
        total = 0
        for port in self.nats_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port + 200}/varz", timeout=5) as r:
                total += int(json.load(r)["in_msgs"])
        return total

    @property
    def public_key(self) -> str:
        return (self.root / "keys" / "id_ed25519.pub").read_text().strip()

    def log_of(self, i: int) -> str:
        return self.nodes[i].log.read_text(errors="replace")

    def stop(self) -> None:
        for proc in [*self.nodes, *self.relays, *self.nats]:
            proc.stop()


def start_nats(root: Path) -> tuple[list[Proc], list[int]]:
    ports = [free_base_port((0, 100, 200)) for _ in range(3)]
    members = [
        NatsMember(
            f"s{i + 1}", "127.0.0.1", port, port + 100, str(root / f"nats{i + 1}"), port + 200
        )
        for i, port in enumerate(ports)
    ]
    procs = []
    for m in members:
        routes = [f"127.0.0.1:{o.route_port}" for o in members if o is not m]
        conf = root / f"{m.name}.conf"
        conf.write_text(render(m, routes))
        procs.append(
            Proc(
                [str(NATS_SERVER), "-c", str(conf)], root, dict(os.environ), root / f"{m.name}.log"
            )
        )
    for proc in procs:
        proc.start()
    for port in ports:
        wait_tcp(port, 15)
    return procs, ports


def node_proc(cluster: Cluster, i: int, extra: list[str]) -> Proc:
    workdir = cluster.root / f"n{i + 1}"
    workdir.mkdir(exist_ok=True)
    for name in ("id_ed25519", "id_ed25519.pub"):  # one key pair for every node
        shutil.copy(cluster.root / "keys" / name, workdir / name)
    env = {**os.environ, "TEST_HBBS": "no", "RUST_LOG": "info"}
    args = [
        str(BIN / "hbbs"),
        "-b",
        NODE_IPS[i],
        "-p",
        str(cluster.base),
        "-r",
        cluster.relay(i),
        "--cluster",
        ",".join(cluster.urls),
        "--node-name",
        f"n{i + 1}",
        "--api-server",
        "none",
        "--register-burst-per-ip",
        "100000",
        "--register-ids-per-ip",
        "1000000",
        "--new-peers-per-second",
        "100000",
        *extra,
    ]
    return Proc(args, workdir, env, workdir / "hbbs.log")


def start_node(cluster: Cluster, proc: Proc, i: int, timeout: float = 30.0) -> None:
    proc.start()
    deadline = time.monotonic() + timeout
    log = proc.log
    while time.monotonic() < deadline:
        if not proc.running:
            raise RuntimeError(f"node n{i + 1} exited:\n{log.read_text(errors='replace')}")
        if log.exists() and "hbbs listening" in log.read_text(errors="replace"):
            wait_tcp(cluster.base, 5, NODE_IPS[i])
            return
        time.sleep(0.1)
    raise TimeoutError(f"node n{i + 1} did not start:\n{log.read_text(errors='replace')}")


def start_cluster(root: Path, nodes: int = 3, extra: list[str] | None = None) -> Cluster:
    (root / "keys").mkdir(parents=True)
    load_or_generate(root / "keys")
    base = free_base_port((-1, 0, 1, 2, 3))
    cluster = Cluster(root, base)
    try:
        cluster.nats, cluster.nats_ports = start_nats(root)
        env = {**os.environ, "RUST_LOG": "info"}
        for i in range(nodes):
            args = [str(BIN / "hbbr"), "-b", RELAY_IPS[i], "-p", str(base + 1)]
            cluster.relays.append(Proc(args, root, env, root / f"hbbr{i + 1}.log"))
            cluster.relays[-1].start()
        for i in range(nodes):
            wait_tcp(base + 1, 15, RELAY_IPS[i])
        cluster.nodes = [node_proc(cluster, i, extra or []) for i in range(nodes)]
        for i, proc in enumerate(cluster.nodes):
            start_node(cluster, proc, i)
        time.sleep(3.5)  # one presence round: every node knows the others and their relays
    except BaseException:
        cluster.stop()
        raise
    return cluster
