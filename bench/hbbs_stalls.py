"""What stalls hbbs's event loop at a million peers: the core driven in-process.

No sockets: a :class:`RendezvousCore` is driven the way ``hbbs_restart.py`` drives the
real server (one source IPv4 address per peer):

1. **register**: N RegisterPk spread over ``--register-secs`` simulated seconds (the
   registration budgets raised, as that benchmark does for this phase), each answered
   from an in-memory database (LoadPeer: absent; Persist: applied and completed);
2. **steady state**: every peer sends RegisterPeer once per 15 s of simulated time for
   ``--settle`` seconds (past the IP blocker's 61 s window).

The core's housekeeping runs every ``--interval`` simulated seconds (``core.on_timer``;
app.py: 0.1 s). Every call to it, every second's batch of ``on_udp`` and the worst
datagram in that batch are timed with ``time.perf_counter``; the steps inside housekeeping
are timed separately (the bench wraps each step's method on its instance: the core is
unchanged). Garbage collections are timed through ``gc.callbacks``, per phase and
generation; as app.py does once hbbs has started, what exists before the first datagram
is frozen (``gc.freeze``). ``--profile``: cProfile over the steady-state housekeeping
calls. Reports the worst calls per phase and which step they spent their time in.

Usage: .venv/bin/python bench/hbbs_stalls.py [--peers N] [--register-secs S] [--settle S]
       [--interval 1,0.1] [--rows named,plain] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import marshal
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pyhbb.rendezvous.actions import Action, InsertPeer, LoadPeer, Persist, UpdatePeer
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.rate_limits import BlockerLimits
from pyhbb.rendezvous.state import CoreSettings
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.wire import rendezvous_pb2 as pb

HEARTBEAT = 15  # seconds between a client's RegisterPeer (§12)
UUID = b"machine-uuid"


def peer_ip(i: int) -> str:
    """A distinct IPv4 address per peer, 256 per /24."""
    n = 0x0B000000 + i
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class Driver:
    """The adapters' part: an in-memory database and a resolver of actions."""

    def __init__(self, core: RendezvousCore, named_rows: bool = False) -> None:
        self.core = core
        self.named_rows = named_rows
        """Keep each row as the StoredPeer the core was handed (how this bench kept them
        before 2026-12-01: ``--rows named`` measures that)."""
        self.db: dict[str, Any] = {}
        """id → (guid, uuid, pk, ip) marshalled to bytes: hbbs's rows live in SQLite, not
        on the Python heap, so the bench's must cost the GC nothing either. A dict of a
        million StoredPeer named tuples (tracked for good) made the bench's own full
        collections take 0.5 s; one of plain tuples, 0.1 s (each new tuple is tracked
        until a collection sees it, and makes the whole dict one the GC walks)."""

    def row(self, peer_id: str) -> StoredPeer | None:
        row = self.db.get(peer_id)
        if row is None:
            return None
        if self.named_rows:
            assert isinstance(row, StoredPeer)
            return row
        guid, uuid, pk, ip = marshal.loads(row)
        return StoredPeer(guid, peer_id, uuid, pk, ip)

    def store(self, peer_id: str, guid: bytes, uuid: bytes, pk: bytes, ip: str) -> None:
        self.db[peer_id] = (
            StoredPeer(guid, peer_id, uuid, pk, ip)
            if self.named_rows
            else marshal.dumps((guid, uuid, pk, ip))
        )

    def run(self, actions: list[Action], now: float) -> None:
        core, db = self.core, self.db
        pending = actions
        while pending:
            nxt: list[Action] = []
            for a in pending:
                if isinstance(a, LoadPeer):
                    nxt += core.peer_loaded(a.peer_id, self.row(a.peer_id), now)
                elif isinstance(a, Persist):
                    w = a.write
                    if isinstance(w, InsertPeer):
                        self.store(w.peer_id, w.guid, w.uuid, w.pk, w.ip)
                    elif isinstance(w, UpdatePeer):
                        old = db[w.peer_id]
                        fields = old if self.named_rows else self.row(w.peer_id)
                        assert fields is not None
                        guid, uuid = fields.guid, fields.uuid
                        self.store(w.peer_id, guid, uuid, w.pk, w.ip)
                    nxt += core.write_done(a)
            pending = nxt


class StepTimer:
    """Wraps named methods of the core's parts to time each call (per housekeeping)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        inner: Callable[..., Any] = getattr(obj, attr)
        current = self.current

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                current[name] += time.perf_counter() - t

        setattr(obj, attr, timed)

    def take(self) -> dict[str, float]:
        out = dict(self.current)
        self.current.clear()
        return out


def instrument(core: RendezvousCore) -> StepTimer:
    s, reg = core.state, core.registration
    st = StepTimer()
    st.wrap(s.blocker, "prune_step", "blocker.prune_step")
    st.wrap(s.ip_changes, "prune_step", "ip_changes.prune_step")
    st.wrap(s.reg_pk_counts, "sweep", "reg_pk_counts.sweep")
    st.wrap(s.peers, "evict_step", "peers.evict_step")
    for name in ("new_ids", "lookups", "take_backs"):
        st.wrap(getattr(reg, name), "housekeeping", f"registration.{name}")
    st.wrap(reg._software_asks, "sweep", "registration.software_asks")
    st.wrap(reg, "housekeeping", "registration (all)")
    return st


@dataclasses.dataclass
class Call:
    what: str
    now: float
    secs: float
    steps: dict[str, float]
    gc_secs: float


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=100_000, help="peers (one source IP each)")
    ap.add_argument("--register-secs", type=int, default=500, help="simulated registration time")
    ap.add_argument("--settle", type=int, default=150, help="simulated heartbeat seconds")
    ap.add_argument("--top", type=int, default=8, help="worst calls listed per phase")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile the steady-state housekeeping calls"
    )
    ap.add_argument(
        "--interval",
        default="0.1",
        help="housekeeping intervals in seconds, one run each (1 = how hbbs ran it before "
        "its calls were spread over a second; 0.1 = app.py now)",
    )
    ap.add_argument(
        "--rows",
        default="plain",
        help="how the bench's in-memory database keeps rows, one run each: plain (bytes, "
        "untracked by the GC, as rows in SQLite cost the GC nothing) or named (the "
        "StoredPeer objects, tracked: how this bench measured before 2026-12-01)",
    )
    args = ap.parse_args()
    worst: dict[tuple[str, float], Worst] = {}
    for rows in args.rows.split(","):
        for interval in (float(x) for x in args.interval.split(",")):
            print(f"\n# rows {rows}, housekeeping every {interval:g} s")
            worst[rows, interval] = run(args, interval, rows == "named")
            gc.unfreeze()  # the next run starts from a clean heap
            gc.collect()
    base = next(iter(worst.values()))
    print("\n# worst steady-state housekeeping call / worst full collection anywhere / worst")
    print("# single datagram anywhere, ratio to the first run's")
    for (rows, interval), w in worst.items():
        print(
            f"  rows {rows}, every {interval:g} s: {w.housekeeping * 1e3:.2f} ms "
            f"({w.housekeeping / base.housekeeping:.2f}x) / {w.full_gc * 1e3:.2f} ms "
            f"({w.full_gc / max(base.full_gc, 1e-9):.2f}x) / {w.datagram * 1e3:.2f} ms "
            f"({w.datagram / base.datagram:.2f}x)"
        )


@dataclasses.dataclass
class Worst:
    housekeeping: float
    full_gc: float
    datagram: float


def run(args: argparse.Namespace, interval: float, named_rows: bool) -> Worst:
    n = args.peers

    settings = CoreSettings(
        blocker=BlockerLimits(burst=1 << 30),
        new_peers_per_second=float(1 << 30),
        register_lookups_per_second=float(1 << 30),
    )
    core = RendezvousCore(settings)
    drv = Driver(core, named_rows)
    steps = instrument(core)
    gc_time = [0.0, 0.0]
    phase_now = ["register"]
    collections: list[tuple[str, int, float]] = []  # (phase, generation, seconds)

    def on_gc(phase: str, info: dict[str, int]) -> None:
        # CPU time of this thread: on a shared machine, wall time adds waits for a core
        if phase == "start":
            gc_time[1] = time.thread_time()
        else:
            secs = time.thread_time() - gc_time[1]
            gc_time[0] += secs
            collections.append((phase_now[0], info["generation"], secs))

    gc.callbacks.append(on_gc)
    ids = [f"{100_000_000 + i}" for i in range(n)]
    srcs = [(peer_ip(i), 21_000) for i in range(n)]
    pk_of = [bytes([i & 255]) * 32 for i in range(256)]
    calls: list[Call] = []
    t_start = time.perf_counter()
    now = 10_000.0

    profiler = cProfile.Profile() if args.profile else None

    def housekeeping(phase: str, at: float) -> None:
        gc_time[0] = 0.0
        profiling = profiler if phase == "steady" else None
        if profiling is not None:
            profiling.enable()
        t = time.perf_counter()
        core.on_timer(at)
        if profiling is not None:
            profiling.disable()
        calls.append(
            Call(f"{phase} housekeeping", now, time.perf_counter() - t, steps.take(), gc_time[0])
        )

    def batch(phase: str, lo: int, hi: int, make: Callable[[int], bytes]) -> None:
        gc_time[0] = 0.0
        worst = 0.0
        clock = time.perf_counter
        t = clock()
        for i in range(lo, hi):
            t1 = clock()
            drv.run(core.on_udp(make(i), srcs[i], now), now)
            worst = max(worst, clock() - t1)
        calls.append(
            Call(
                f"{phase} on_udp x{hi - lo}",
                now,
                clock() - t,
                {"worst single datagram": worst},
                gc_time[0],
            )
        )

    def register_pk(i: int) -> bytes:
        msg = pb.RegisterPk(id=ids[i], uuid=UUID, pk=pk_of[i & 255])
        return pb.RendezvousMessage(register_pk=msg).SerializeToString()

    heartbeats = [
        pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=ids[i], serial=0)).SerializeToString()
        for i in range(n)
    ]

    # as app.py does once the server has started: what exists now lives for good (here
    # also the clients' ids, addresses and datagrams, which are not the server's heap)
    gc.collect()
    gc.freeze()
    per_sec = -(-n // args.register_secs)
    for sec in range(args.register_secs):
        lo = sec * per_sec
        if lo < n:
            batch("register", lo, min(n, lo + per_sec), register_pk)
        # peers already registered keep heartbeating (every 15 s, spread over the period)
        slot = sec % HEARTBEAT
        done = min(n, lo)
        hb_lo, hb_hi = done * slot // HEARTBEAT, done * (slot + 1) // HEARTBEAT
        if hb_hi > hb_lo:
            batch("register-hb", hb_lo, hb_hi, heartbeats.__getitem__)
        for k in range(round(1 / interval)):
            housekeeping("register", now + k * interval)
        now += 1.0
    t_reg = time.perf_counter() - t_start
    phase_now[0] = "steady"
    for sec in range(args.settle):
        slot = sec % HEARTBEAT
        lo, hi = n * slot // HEARTBEAT, n * (slot + 1) // HEARTBEAT
        batch("steady", lo, hi, heartbeats.__getitem__)
        for k in range(round(1 / interval)):
            housekeeping("steady", now + k * interval)
        now += 1.0
    wall = time.perf_counter() - t_start
    gc.callbacks.remove(on_gc)
    tracked = len(gc.get_objects())
    t = time.thread_time()
    gc.collect()
    full_now = time.thread_time() - t

    s = core.state
    print(
        f"# {n} peers, {args.register_secs} s registering + {args.settle} s steady "
        f"(simulated); wall {wall:.0f} s (registration {t_reg:.0f} s)"
    )
    print(
        f"# tables: peers {len(s.peers)}, blocker {len(s.blocker.entries)}, "
        f"ip_changes {len(s.ip_changes.entries)}, reg_pk_counts {len(s.reg_pk_counts)}"
    )
    for kind in ("housekeeping", "on_udp"):
        for phase in ("register", "steady"):
            sel = [c for c in calls if c.what.startswith(phase + " ") and kind in c.what]
            if not sel:
                continue
            sel.sort(key=lambda c: c.secs, reverse=True)
            secs = sorted(c.secs for c in sel)
            med = secs[len(secs) // 2]
            print(
                f"\n## {phase} {kind}: {len(sel)} calls, median {med * 1e3:.2f} ms, "
                f"worst {sel[0].secs * 1e3:.2f} ms, over 10 ms: "
                f"{sum(c.secs > 0.010 for c in sel)}"
            )
            for c in sel[: args.top]:
                top = sorted(c.steps.items(), key=lambda kv: kv[1], reverse=True)[:3]
                where = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in top)
                print(
                    f"  t={c.now - 10_000:6.0f} {c.what:28} {c.secs * 1e3:8.2f} ms "
                    f"(gc {c.gc_secs * 1e3:.2f}) {where}"
                )
    print(
        f"\n## garbage collections (rows {'named' if named_rows else 'plain'}); at the end "
        f"{tracked} objects tracked outside the frozen ones, a full collection "
        f"{full_now * 1e3:.2f} ms (collections: CPU time of the thread)"
    )
    for phase in ("register", "steady"):
        for generation in (0, 1, 2):
            secs = sorted(s for p, g, s in collections if p == phase and g == generation)
            if secs:
                print(
                    f"  {phase:8} gen {generation}: {len(secs):6} collections, median "
                    f"{secs[len(secs) // 2] * 1e3:.2f} ms, worst {secs[-1] * 1e3:.2f} ms, "
                    f"over 10 ms: {sum(s > 0.010 for s in secs)}"
                )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print("\n## cProfile of the steady-state housekeeping calls (own time)")
        print(out.getvalue())
    sys.stdout.flush()
    steady = [c.secs for c in calls if c.what == "steady housekeeping"]
    datagrams = [c.steps["worst single datagram"] for c in calls if "on_udp" in c.what]
    worst = Worst(
        max(steady, default=0.0),
        max((s for _, g, s in collections if g == 2), default=0.0),
        max(datagrams, default=0.0),
    )
    return worst


if __name__ == "__main__":
    main()
