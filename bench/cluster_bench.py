"""Cluster mode figures (issue 10 item 8), on a real 3-server NATS cluster and 3 hbbs
nodes on loopback (the test harness, tests/cluster/harness.py), all in one run:

1. punch round trip, cross-node (A on n2, B held by n1) against same-node (A and B on
   n1): PunchHoleRequest sent → PunchHole received by B, p50/p99;
2. heartbeat cost with the cluster on against off: ``RendezvousCore.on_udp`` over
   RegisterPeer datagrams of N held peers, in-process, node_name "" vs "n1";
3. ``kill -9`` of n1 holding K peers: time until a punch to one of them gets OFFLINE, then
   the re-registration storm on n2 (all K at once, 64 in flight): claims/s and the time
   until 99 % are served again;
4. nats-server memory (sum of the 3 RSS) per 100k directory entries, from M entries.

Bounded: K <= 10k peers, M <= 30k entries, loopback only; every process stopped by PID.
Usage: .venv/bin/python bench/cluster_bench.py [--punches 300] [--peers 2000] [--entries 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from pyhbb.cluster.messages import PEERS_BUCKET, Entry, encode_entry  # noqa: E402
from pyhbb.rendezvous.actions import LoadPeer, Persist  # noqa: E402
from pyhbb.rendezvous.core import RendezvousCore  # noqa: E402
from pyhbb.rendezvous.state import CoreSettings  # noqa: E402
from pyhbb.wire import rendezvous_pb2 as pb  # noqa: E402
from tests.cluster.harness import Cluster, start_cluster  # noqa: E402
from tests.cluster.peers import connected_peer  # noqa: E402
from tests.support.rdclient import Msg, TcpClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def punch_latency(c: Cluster, n: int) -> dict[str, tuple[float, float]]:
    b = await connected_peer(c.node_addr(0), "127.0.0.150")
    assert await b.register_pk("benchb0001", b"u-bench", bytes(32)) == 0
    out = {}
    for label, node in (("same-node", 0), ("cross-node", 1)):
        times = []
        for i in range(n):
            # one request per connection, as clients do (hbbs bounds messages per link)
            a = await TcpClient.connect(c.node_addr(node), f"127.0.5.{1 + i % 250}")
            request = pb.PunchHoleRequest(id="benchb0001", licence_key=c.public_key)
            t0 = time.perf_counter()
            a.send(Msg(punch_hole_request=request))
            await b.recv_kind("punch_hole")
            times.append(time.perf_counter() - t0)
            a.close()
            if i % 50 == 49:
                b.send(Msg(register_peer=pb.RegisterPeer(id="benchb0001", serial=3)))
        out[label] = (pct(times, 0.5), pct(times, 0.99))
    b.close()
    return out


def heartbeat_ratio(peers: int, rounds: int = 9) -> tuple[float, float]:
    """Best-of-``rounds`` heartbeat rate of two cores (cluster off / on), their rounds
    interleaved so that the machine's noise hits both alike."""

    def prepared(node: str) -> tuple[RendezvousCore, list[tuple[bytes, tuple[str, int]]]]:
        core = RendezvousCore(
            CoreSettings(node_name=node, new_peers_per_second=1e9, register_lookups_per_second=1e9)
        )
        beats = []
        now = time.monotonic()
        for i in range(peers):
            src = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 40000)
            peer_id = f"hb{i:08d}"
            msg = Msg(register_pk=pb.RegisterPk(id=peer_id, uuid=b"u", pk=bytes(32)))
            for action in core.on_udp(msg.SerializeToString(), src, now):
                if isinstance(action, LoadPeer):
                    for done in core.peer_loaded(peer_id, None, now):
                        if isinstance(done, Persist):
                            core.write_done(done, 1)
            beat = Msg(register_peer=pb.RegisterPeer(id=peer_id, serial=3))
            beats.append((beat.SerializeToString(), src))
        return core, beats

    cores = {"": prepared(""), "n1": prepared("n1")}
    best = dict.fromkeys(cores, 0.0)
    for _ in range(rounds):
        for node, (core, beats) in cores.items():
            on_udp, t = core.on_udp, time.monotonic()
            t0 = time.perf_counter()
            for data, src in beats:
                on_udp(data, src, t)
            best[node] = max(best[node], len(beats) / (time.perf_counter() - t0))
    return best[""], best["n1"]


async def kill_and_storm(c: Cluster, k: int) -> dict[str, float]:
    sem = asyncio.Semaphore(64)

    async def reg(i: int, node: int) -> tuple[int, float]:
        async with sem:
            p = await connected_peer(c.node_addr(node), f"127.0.{10 + i // 250}.{1 + i % 250}")
            result = -1
            for _ in range(10):
                try:
                    result = await p.register_pk(f"storm{i:06d}", f"u{i}".encode(), bytes(32))
                except TimeoutError:
                    continue
                if result == 0:
                    break
                await asyncio.sleep(0.2)
            p.close()
            return result, time.monotonic()

    await asyncio.gather(*(reg(i, 0) for i in range(k)))
    c.nodes[0].kill9()
    killed = time.monotonic()
    a = await TcpClient.connect(c.node_addr(1), "127.0.0.160")
    a.send(Msg(punch_hole_request=pb.PunchHoleRequest(id="storm000001", licence_key=c.public_key)))
    resp = (await a.recv_nonkeyexchange()).punch_hole_response
    offline = time.monotonic() - killed
    assert resp.failure == pb.PunchHoleResponse.OFFLINE
    a.close()
    t0 = time.monotonic()
    done = await asyncio.gather(*(reg(i, 1) for i in range(k)))
    finished = sorted(t for r, t in done if r == 0)
    ok = len(finished)
    t99 = finished[int(0.99 * k) - 1] - t0 if ok >= int(0.99 * k) else float("nan")
    return {
        "offline_ms": offline * 1000,
        "storm_s": (finished[-1] - t0) if finished else float("nan"),
        "claims_per_s": ok / max(1e-9, (finished[-1] - t0)) if finished else 0.0,
        "t99_s": t99,
        "ok": ok,
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def nats_memory(c: Cluster, m: int) -> float:
    pids = [p.popen.pid for p in c.nats if p.popen is not None]
    before = sum(rss_kib(p) for p in pids)
    nc = await nats.connect(servers=c.urls)
    kv = await nc.jetstream().key_value(PEERS_BUCKET)
    sem = asyncio.Semaphore(128)

    async def put(i: int) -> None:
        entry = Entry(
            os.urandom(16),
            f"mem{i:07d}",
            os.urandom(16),
            os.urandom(32),
            '{"ip":"203.0.113.9"}',
            "2026-01-01 00:00:00",
            owner="n2",
            claimed_at=time.time(),
        )
        async with sem:
            await kv.put(f"mem{i:07d}", encode_entry(entry))

    await asyncio.gather(*(put(i) for i in range(m)))
    await nc.close()
    await asyncio.sleep(2)
    after = sum(rss_kib(p) for p in pids)
    return (after - before) / m * 100_000 / 1024  # MiB per 100k, all three servers


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--punches", type=int, default=300)
    ap.add_argument("--peers", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=20000)
    a = ap.parse_args()
    a.peers, a.entries = min(a.peers, 10_000), min(a.entries, 30_000)
    off, on = heartbeat_ratio(20_000)
    print(
        f"heartbeat (core on_udp): cluster off {off:,.0f}/s, on {on:,.0f}/s, ratio {on / off:.3f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        c = start_cluster(Path(tmp))
        try:
            lat = await punch_latency(c, a.punches)
            for label, (p50, p99) in lat.items():
                print(f"punch round trip {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            mem = await nats_memory(c, a.entries)
            print(f"nats-server RSS (3 servers) per 100k entries: {mem:.0f} MiB (from {a.entries})")
            storm = await kill_and_storm(c, a.peers)
            print(
                f"kill -9 of n1 with {a.peers} peers: OFFLINE after {storm['offline_ms']:.1f} ms; "
                f"re-registration storm on n2: {storm['claims_per_s']:.0f} claims/s, 99 % served "
                f"after {storm['t99_s']:.2f} s, all {storm['ok']} after {storm['storm_s']:.2f} s"
            )
        finally:
            c.stop()


if __name__ == "__main__":
    asyncio.run(main())
