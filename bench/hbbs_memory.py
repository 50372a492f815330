"""Where pyhbb's memory per peer goes: the rendezvous core driven in-process, no sockets.

N peers register (RegisterPk, then one RegisterPeer each) through ``RendezvousCore.on_udp``
exactly as the UDP adapter feeds it; database look-ups are answered "not found" and
writes are dropped, so only the core's in-memory tables are measured. Two passes:

1. without tracing: the process's VmRSS growth per peer (what the allocator really holds);
2. with ``tracemalloc``: live Python bytes per peer, attributed to source lines.

With ``--expire-details`` the housekeeping timer is then run past the details TTL, so the
figures after it are those of a long-running server whose peers only heartbeat.

Usage: ``.venv/bin/python bench/hbbs_memory.py [--peers 300000] [--expire-details]``
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tracemalloc
from collections.abc import Callable

from hbbs_loadgen import Layout, register_peer, register_pk
from hbbs_procs import rss_bytes

from pyhbb.rendezvous.actions import LoadPeer
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.rate_limits import BlockerLimits
from pyhbb.rendezvous.state import CoreSettings

Step = Callable[[float], None]


def bench_settings() -> CoreSettings:
    """Core settings with the registration rate limits out of the way (when they exist)."""
    settings = CoreSettings(blocker=BlockerLimits(burst=1 << 30))
    for name in ("new_peers_per_second", "register_lookups_per_second"):
        if hasattr(settings, name):
            settings = dataclasses.replace(settings, **{name: float(1 << 30)})
    return settings


def populate(layout: Layout, now: float) -> RendezvousCore:
    core = RendezvousCore(bench_settings())
    for a in layout.addr_numbers():
        ip = layout.addr_ip(a)
        for k, i in enumerate(layout.addr_peers(a)):
            src = (ip, 20_000 + k)
            peer_id = layout.peer_id(i)
            for action in core.on_udp(register_pk(peer_id, i), src, now):
                if isinstance(action, LoadPeer):
                    core.peer_loaded(action.peer_id, None, now)  # not in the database
            core.on_udp(register_peer(peer_id), src, now)
    return core


def expire(core: RendezvousCore, layout: Layout, start: float, seconds: float) -> None:
    """Run the once-a-second housekeeping for ``seconds``, heartbeating every 15 s."""
    beats = [
        (register_peer(layout.peer_id(i)), (layout.addr_ip(a), 20_000 + k))
        for a in layout.addr_numbers()
        for k, i in enumerate(layout.addr_peers(a))
    ]
    t = start
    while t < start + seconds:
        t += 1.0
        core.on_timer(t)
        if int(t) % 15 == 0:
            for data, src in beats:
                core.on_udp(data, src, t)
    del beats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=300_000)
    ap.add_argument("--per-addr", type=int, default=250)
    ap.add_argument("--expire-details", action="store_true")
    ap.add_argument("--ttl", type=float, default=420.0, help="seconds of housekeeping to run")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args(argv)
    layout = Layout(a.peers, a.per_addr)
    n = a.peers
    now = 1_000.0

    gc.collect()
    rss0 = rss_bytes(os.getpid())
    core = populate(layout, now)
    gc.collect()
    rss1 = rss_bytes(os.getpid())
    print(f"{n:,} peers registered in-process: VmRSS +{(rss1 - rss0) / n:.0f} bytes/peer")
    if a.expire_details:
        expire(core, layout, now, a.ttl)
        gc.collect()
        rss2 = rss_bytes(os.getpid())
        print(
            f"after {a.ttl:.0f} s of housekeeping and heartbeats: VmRSS "
            f"+{(rss2 - rss0) / n:.0f} bytes/peer over the start (freed memory that the "
            "allocator keeps shows up here)"
        )
    del core
    gc.collect()

    tracemalloc.start(1)
    snap0 = tracemalloc.take_snapshot()
    core = populate(layout, now)
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    report(snap1.compare_to(snap0, "lineno"), n, "after registration", a.top)
    if a.expire_details:
        expire(core, layout, now, a.ttl)
        gc.collect()
        snap2 = tracemalloc.take_snapshot()
        report(snap2.compare_to(snap0, "lineno"), n, f"after {a.ttl:.0f} s", a.top)
    tracemalloc.stop()
    return 0


def report(diffs: list[tracemalloc.StatisticDiff], n: int, label: str, top: int) -> None:
    total = sum(d.size_diff for d in diffs)
    print(f"\nlive Python bytes per peer {label}: {total / n:.0f} (tracemalloc), by line:")
    for d in sorted(diffs, key=lambda d: -d.size_diff)[:top]:
        frame = d.traceback[0]
        name = frame.filename
        for marker in ("/src/", "/lib/python3"):
            if marker in name:
                name = name.split(marker, 1)[1]
        line = _source_line(frame.filename, frame.lineno)
        print(
            f"  {d.size_diff / n:7.1f} B/peer  {d.count_diff / n:5.2f} objs/peer  "
            f"{name}:{frame.lineno}  {line}"
        )


def _source_line(path: str, lineno: int) -> str:
    try:
        with open(path) as f:
            for k, text in enumerate(f, 1):
                if k == lineno:
                    return text.strip()[:70]
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
