"""The cyclic GC walks nothing per peer: a full collection at a million peers costs what
the core's fixed set of containers costs, not a walk over a million records (issue 11
item 5: no loop stall over 10 ms, full collections included).

Counted, not timed: the objects the GC tracks that the core reaches, after a collection
has untracked what it can (tuples and dicts holding only atomic values), as it does in
hbbs. A per-peer object the GC has to track (a record object, a tuple holding one, a
list) makes the count grow with the peers, and the tests fail.
"""

from __future__ import annotations

import gc

from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.packed_table import PackedTable
from pyhbb.rendezvous.peer_registry import PeerRecord
from pyhbb.rendezvous.rate_limits import BlockerLimits, IpBlocker
from tests.rendezvous.helpers import (
    T0,
    make_core,
    register_peer,
    resolve,
)
from tests.rendezvous.helpers import register_pk as register_pk_msg

BATCH = 1500
PER_PEER_LIMIT = 0.01  # tracked objects per peer: a fixed handful for thousands of peers


def tracked_reachable(root: object) -> int:
    """How many objects the GC tracks among those ``root`` reaches (``root`` included),
    not counting modules, classes and functions: code, not data."""
    seen: set[int] = set()
    stack = [root]
    count = 0
    skip = (type, type(gc), type(tracked_reachable))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if not gc.is_tracked(obj):
            continue  # an untracked container holds nothing tracked
        count += 1
        stack.extend(gc.get_referents(obj))
    return count


def core_for_many() -> RendezvousCore:
    # as in bench/hbbs_stalls.py: budgets that let thousands of new ids in at once
    return make_core(
        blocker=BlockerLimits(burst=1 << 30),
        new_peers_per_second=float(1 << 30),
        register_lookups_per_second=float(1 << 30),
    )


def peer(i: int) -> tuple[str, tuple[str, int]]:
    """A distinct id and source IPv4 address per peer (as hbbs_stalls.py drives it)."""
    return f"{300_000_000 + i}", (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 21_000)


def register(core: RendezvousCore, lo: int, hi: int, now: float) -> None:
    for i in range(lo, hi):
        peer_id, src = peer(i)
        pk = bytes([i & 255]) * 32
        resolve(core, core.on_udp(register_pk_msg(peer_id, pk=pk), src, now), now)


def heartbeat(core: RendezvousCore, lo: int, hi: int, now: float) -> None:
    for i in range(lo, hi):
        peer_id, src = peer(i)
        resolve(core, core.on_udp(register_peer(peer_id), src, now), now)


def housekeeping(core: RendezvousCore, start: float, secs: int) -> None:
    for k in range(secs * 10):
        core.on_timer(start + k * 0.1)


def settled(core: RendezvousCore) -> int:
    gc.collect()
    return tracked_reachable(core)


def test_registered_peers_add_no_tracked_objects() -> None:
    core = core_for_many()
    now = T0
    register(core, 0, BATCH, now)
    housekeeping(core, now, 2)
    base = settled(core)
    now += 2
    register(core, BATCH, 3 * BATCH, now)
    heartbeat(core, 0, 3 * BATCH, now + 1)
    housekeeping(core, now, 2)
    grown = settled(core) - base
    assert len(core.state.peers) == 3 * BATCH
    assert core.state.peers.online_count(now + 2) == 3 * BATCH
    assert grown <= PER_PEER_LIMIT * 2 * BATCH, (base, grown)
    # the big tables themselves: dicts the GC no longer looks into
    assert not any(gc.is_tracked(shard) for shard in core.state.peers._shards)


def test_steady_heartbeats_and_sweeps_add_no_tracked_objects() -> None:
    core = core_for_many()
    now = T0
    register(core, 0, 2 * BATCH, now)
    housekeeping(core, now, 1)
    base = settled(core)
    for sec in range(1, 31):  # every peer heartbeats twice; the sweeps run throughout
        lo = (sec % 15) * 2 * BATCH // 15
        heartbeat(core, lo, lo + 2 * BATCH // 15, now + sec)
        housekeeping(core, now + sec, 1)
    assert settled(core) - base <= PER_PEER_LIMIT * 2 * BATCH


def test_record_objects_are_counted_and_the_sweep_compacts_them() -> None:
    """The counter sees per-peer objects (the tests above could fail): records held as
    objects are tracked; once nobody holds them, the sweep turns them back into bytes."""
    core = core_for_many()
    now = T0
    register(core, 0, BATCH, now)
    base = settled(core)
    peers = core.state.peers
    for i in range(BATCH):
        record = peers.get(peer(i)[0])
        assert isinstance(record, PeerRecord)
    del record
    assert peers.objects == BATCH
    assert settled(core) - base >= BATCH
    housekeeping(core, now, 60)  # a pass over every record
    assert peers.objects == 0
    assert settled(core) - base <= PER_PEER_LIMIT * BATCH


def test_the_counter_follows_references() -> None:
    holder = {"a": [[1], [2]], "b": (object(),)}
    gc.collect()
    # the dict, the list and its two lists; not the strings and ints, nor a plain
    # object() (no references to walk), nor the tuple holding only it (untracked by the
    # collection)
    assert tracked_reachable(holder) == 4
    holder["c"] = [holder]  # a cycle: counted once
    assert tracked_reachable(holder) == 5
    assert tracked_reachable(b"bytes") == 0  # nothing to walk


def test_a_packed_table_stays_out_of_the_gcs_sight() -> None:
    """Fresh tuples make a plain table's dict tracked (a full collection walks every
    entry); the packed table keeps the same values and costs the GC nothing per entry."""
    plain: BoundedTable[str, tuple[int, float]] = BoundedTable(10_000)
    packed: PackedTable[tuple[int, float]] = PackedTable(10_000, "<Id")
    for i in range(5000):
        plain[str(i)] = packed[str(i)] = (i, T0 + i)
    gc.collect()
    plain["new"] = packed["new"] = (1, T0)  # each registration writes a fresh tuple
    assert tracked_reachable(plain) >= 3  # the table, its ring and its dict (with the tuple)
    walked_packed = tracked_reachable(packed)
    for i in range(5000, 9000):
        packed[str(i)] = (i, T0 + i)
    assert tracked_reachable(packed) == walked_packed  # the same few objects: no dict
    # the same values, read and swept as tuples
    assert packed["7"] == (7, T0 + 7) and packed.get("7", None) == (7, T0 + 7)
    assert packed.get("absent", (0, 0.0)) == (0, 0.0) and "absent" not in packed
    assert packed.sweep(20_000, lambda v: v[1] - T0 >= 4500) == 4500
    assert len(packed) == 4501 and packed["new"] == (1, T0)
    packed["7"] = (8, T0)
    assert packed["7"] == (8, T0) and len(packed) == 4501


def test_the_ip_blockers_table_stays_out_of_the_gcs_sight() -> None:
    """Every new source a registration admits writes a blocker entry: held as a fresh
    tuple, it made the whole table tracked again, so every collection (young ones too)
    walked every entry (issue 12: 8-40 ms pauses at 40,000 sources)."""
    blocker = IpBlocker()
    for i in range(BATCH):
        assert blocker.allow(peer(i)[1][0], peer(i)[0], T0)
    gc.collect()
    walked = tracked_reachable(blocker)
    for i in range(BATCH, 3 * BATCH):  # new sources, and sources registering more ids
        assert blocker.allow(peer(i)[1][0], peer(i)[0], T0 + 1)
        assert blocker.allow(peer(i - BATCH)[1][0], f"other{i}", T0 + 1)
    assert not gc.is_tracked(blocker.entries._map)
    assert tracked_reachable(blocker) == walked  # no collection needed to get there
    # what was stored reads back, a source's several ids included
    assert blocker.allow(peer(0)[1][0], "third", T0 + 2)
    entry = blocker.entry(peer(0)[1][0])
    assert entry == (2, T0 + 2, T0 + 2, frozenset({f"other{BATCH}", "third"}))
    assert entry is not None and entry.ids == {f"other{BATCH}", "third"}
    assert blocker.entry(peer(2 * BATCH)[1][0]) == (0, T0 + 1, T0 + 1, None)
    assert not gc.is_tracked(blocker.entries._map)
