"""What monitoring costs the heartbeat path: hbbs's UDP RegisterPeer path timed with
metrics off and on, interleaved in the same run.

"On" is what ``--metrics`` adds on a real server: the loop-lag timer (every 25 ms), the
database probe, and a scraper reading /metrics over HTTP from another thread every
``--scrape-every`` seconds (1 s by default, 15 times Prometheus' usual rate), whose
families are built on the event loop. The core's counters are kept in both modes (they
are not switchable); ``--compare-src`` times the same "off" path in another source tree
(e.g. main before the counters were added) and this tree's, each in new processes,
interleaved too.

The heartbeats go through ``UdpEndpoint.datagram_received`` in chunks of 1,000 with the
event loop running between chunks, so the timer, the probe and the scrapes really run.
Each round is measured in CPU time of the whole process (all its threads), so other
load on the machine barely matters. Figures are the median and best round of each mode,
per heartbeat; compare the ratios.

Usage: .venv/bin/python bench/metrics_overhead.py [--peers 20000] [--rounds 7]
       [--passes 5] [--scrape-every 1.0] [--compare-src /path/to/other/src]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any, cast

from hbbs_corebench import NullTransport, datagrams
from hbbs_loadgen import Layout, register_peer, register_pk
from hbbs_memory import bench_settings

from pyhbb.rendezvous.actions import LoadPeer
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.store.base import PeerStore
from pyhbb.wire.addr_mangle import try_into_v4

CHUNK = 1000
SRC = Path(__file__).resolve().parents[1] / "src"


async def endpoint_and_beats(peers: int) -> tuple[RendezvousCore, Executor, UdpEndpoint, list[Any]]:
    layout = Layout(peers, 250)
    settings = bench_settings()
    if hasattr(settings, "register_lookups_per_second"):  # not raised by bench_settings
        settings = dataclasses.replace(settings, register_lookups_per_second=float(1 << 30))
    core = RendezvousCore(settings)
    proxy = HttpProxy("http://127.0.0.1:9", 1024)
    executor = Executor(core, cast(PeerStore, None), time.monotonic, proxy.handle)
    endpoint = UdpEndpoint(core, executor)
    endpoint.connection_made(cast(Any, NullTransport()))
    now = time.monotonic()
    for data, addr in datagrams(layout, register_pk, False):
        for action in core.on_udp(data, (try_into_v4(addr[0]), addr[1]), now):
            if isinstance(action, LoadPeer):
                core.peer_loaded(action.peer_id, None, now)
    beats = datagrams(layout, lambda peer_id, _i: register_peer(peer_id), False)
    assert len(core.state.peers) == peers, "every peer must be registered"
    return core, executor, endpoint, beats


async def one_round(endpoint: UdpEndpoint, beats: list[Any], passes: int) -> float:
    """CPU seconds the whole process spent per heartbeat over ``passes`` passes over
    every peer, the event loop running between chunks: whatever monitoring does meanwhile
    (timer callbacks, probes, scrapes in other threads) is in it. Process CPU time, not
    wall time: other processes on the machine do not count."""
    receive = endpoint.datagram_received
    t0 = time.process_time()
    for _ in range(passes):
        for start in range(0, len(beats), CHUNK):
            for data, addr in beats[start : start + CHUNK]:
                receive(data, addr)
            await asyncio.sleep(0)
    return (time.process_time() - t0) / (len(beats) * passes)


class Scraper(threading.Thread):
    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.stop = threading.Event()
        self.scrapes = 0
        self.bytes = 0

    def run(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self.stop.wait(self.every):
            with opener.open(self.url, timeout=10) as answer:
                self.bytes = len(answer.read())
            self.scrapes += 1


async def measure(a: argparse.Namespace) -> int:
    core, executor, endpoint, beats = await endpoint_and_beats(a.peers)
    if a.child:  # only the "off" path, in whatever tree PYTHONPATH names
        print(min([await one_round(endpoint, beats, a.passes) for _ in range(a.rounds)]))
        return 0
    # imported here: the tree given by --compare-src may have no monitoring at all
    from pyhbb.observability.hbbs import hbbs_families
    from pyhbb.observability.metrics import Monitoring
    from pyhbb.store.database import SqliteDatabase

    with tempfile.TemporaryDirectory() as tmp:
        db = await SqliteDatabase.open(str(Path(tmp) / "db_v2.sqlite3"))

        async def monitored_round() -> tuple[float, Scraper]:
            """One round with monitoring running, started for it and stopped after it."""
            monitoring = Monitoring.bind("hbbs", ("127.0.0.1", 0))
            monitoring.add_loop_families(lambda: hbbs_families(core, executor, Counter(), endpoint))
            monitoring.watch_database(db)
            monitoring.start()
            host, port = monitoring.address
            scraper = Scraper(f"http://{host}:{port}/metrics", a.scrape_every)
            scraper.start()
            await asyncio.sleep(a.scrape_every * 1.5)  # the first scrape is done
            try:
                return await one_round(endpoint, beats, a.passes), scraper
            finally:
                scraper.stop.set()
                await asyncio.to_thread(scraper.join)
                await monitoring.stop()

        off: list[float] = []
        on: list[float] = []
        mine: list[float] = []
        other: list[float] = []
        scrapes = size = 0
        print(f"{len(beats):,} heartbeats per round, {a.rounds} rounds per mode, interleaved")
        for r in range(a.rounds):
            await asyncio.sleep(a.scrape_every * 1.5)  # as long a pause as before "on"
            off.append(await one_round(endpoint, beats, a.passes))
            t, scraper = await monitored_round()
            on.append(t)
            scrapes += scraper.scrapes
            size = scraper.bytes
            line = f"  round {r + 1}: off {off[-1] * 1e6:.2f} µs, on {on[-1] * 1e6:.2f} µs"
            if a.compare_src:
                mine.append(await asyncio.to_thread(child_round, a, str(SRC)))
                other.append(await asyncio.to_thread(child_round, a, a.compare_src))
                line += f"; new processes: this tree {mine[-1] * 1e6:.2f} µs, "
                line += f"other tree {other[-1] * 1e6:.2f} µs"
            print(line)
        per_scrape = await scrape_cost(core, executor, endpoint, db)
        await db.close()

    def show(values: list[float]) -> str:
        return f"median {median(values) * 1e6:.2f} µs, best {min(values) * 1e6:.2f} µs"

    print(f"metrics off: {show(off)} CPU per heartbeat")
    print(f"metrics on:  {show(on)}; {scrapes} scrapes of {size:,} bytes, lag timer 25 ms")
    print(f"on / off: median {median(on) / median(off):.3f}, best {min(on) / min(off):.3f}")
    print(
        f"one scrape of /metrics: {per_scrape * 1e3:.2f} ms of process CPU (loop idle), "
        f"{per_scrape / 15 * 100:.3f} % of a core at Prometheus' 15 s interval"
    )
    if other:
        print(f"monitoring off, new processes: this tree {show(mine)}")
        print(f"                               {a.compare_src}: {show(other)}")
        print(
            f"this / other: median {median(mine) / median(other):.3f}, "
            f"best {min(mine) / min(other):.3f}"
        )
    return 0


async def scrape_cost(
    core: RendezvousCore, executor: Executor, endpoint: UdpEndpoint, db: Any
) -> float:
    """Process CPU seconds per scrape (HTTP, families built on the loop, text), measured
    over 50 scrapes while the event loop has nothing else to do."""
    from pyhbb.observability.hbbs import hbbs_families
    from pyhbb.observability.metrics import Monitoring

    monitoring = Monitoring.bind("hbbs", ("127.0.0.1", 0))
    monitoring.add_loop_families(lambda: hbbs_families(core, executor, Counter(), endpoint))
    monitoring.watch_database(db)
    monitoring.start()
    host, port = monitoring.address
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch() -> None:
        with opener.open(f"http://{host}:{port}/metrics", timeout=10) as answer:
            answer.read()

    await asyncio.to_thread(fetch)  # warm up
    t0 = time.process_time()
    for _ in range(50):
        await asyncio.to_thread(fetch)
    spent = (time.process_time() - t0) / 50
    await monitoring.stop()
    return spent


def child_round(a: argparse.Namespace, src: str) -> float:
    """One round of the "off" path in a new process importing pyhbb from ``src``."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).parent}"}
    argv = [sys.executable, __file__, "--child", "--peers", str(a.peers), "--rounds", "1"]
    argv += ["--passes", str(a.passes)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--passes", type=int, default=5, help="passes over every peer per round")
    ap.add_argument("--scrape-every", type=float, default=1.0)
    ap.add_argument("--compare-src", help="another tree's src/ to time (metrics off) too")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return asyncio.run(measure(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
