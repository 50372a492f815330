"""Issue 12: every table network input can fill is bounded and costs O(1) per packet when
full, whatever filled it. Costs are counted as dict operations, never timed."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.fair_budget import (
    ADMITTED,
    GLOBAL_LIMIT,
    PREFIX_LIMIT,
    RETRY_MARKS_BITS_LOG2,
    RETRY_MARKS_PERIOD,
    SOURCE_LIMIT,
    FairBudget,
    RateTable,
)
from pyhbb.rendezvous.rate_limits import BlockerLimits, IpBlocker, IpChanges, prefix_key
from pyhbb.rendezvous.recent_keys import RecentKeys
from tests.rendezvous.helpers import T0


class CountingDict(dict[Any, Any]):
    """A dict that counts what is done to it: reads, writes, deletions and scans."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ops = 0
        self.scans = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.ops += 1
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.ops += 1
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.ops += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.ops += 1
        super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        self.ops += 1
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self.scans += 1
        return super().__iter__()

    def items(self) -> Any:
        self.scans += 1
        return super().items()

    def values(self) -> Any:
        self.scans += 1
        return super().values()


def counted(table: BoundedTable[Any, Any]) -> CountingDict:
    """Swap the table's dict for a counting one (same content)."""
    counting = CountingDict(table._map)
    table._map = counting
    table.get = counting.get  # type: ignore[method-assign]
    return counting


def ring_matches(table: BoundedTable[Any, Any]) -> bool:
    return sorted(map(str, table._ring)) == sorted(map(str, table._map))


# -- BoundedTable ---------------------------------------------------------------------------


def test_bounded_table_evicts_the_oldest_when_full_and_stays_consistent() -> None:
    t: BoundedTable[str, int] = BoundedTable(3)
    for i in range(3):
        t[f"k{i}"] = i
    t["k1"] = 10  # an update moves nothing
    t["k3"] = 3  # full: k0, the oldest, goes
    assert dict(t) == {"k1": 10, "k2": 2, "k3": 3} and t.evicted == 1
    assert t == {"k1": 10, "k2": 2, "k3": 3}
    del t["k2"]  # the console's removal
    t["k4"] = 4
    t["k5"] = 5  # full again: the oldest remaining (k1) goes
    assert set(t) == {"k3", "k4", "k5"} and ring_matches(t)


def test_bounded_table_sweep_drops_stale_and_requeues_live_entries() -> None:
    t: BoundedTable[str, int] = BoundedTable(10)
    for i in range(6):
        t[f"k{i}"] = i
    assert t.sweep(3, lambda v: v % 2 == 0) == 2  # k0, k2 dropped; k1 to the back
    assert set(t) == {"k1", "k3", "k4", "k5"} and ring_matches(t)
    assert t.sweep(100, lambda v: False) == 0  # the budget is capped by the size
    # k1 was swept most recently: after the full pass the oldest-swept is k3
    assert t._ring[0] == "k3"
    assert t.remove_where(lambda v: v > 3) == 2 and set(t) == {"k1", "k3"} and ring_matches(t)


@pytest.mark.parametrize("size", [1_000, 50_000])
def test_bounded_table_costs_o1_per_insert_when_full(size: int) -> None:
    t: BoundedTable[int, int] = BoundedTable(size)
    for i in range(size):
        t[i] = i
    d = counted(t)
    for i in range(size, size + 1000):
        t[i] = i
    assert d.scans == 0
    assert d.ops <= 3 * 1000  # contains + delete + set per insert, at any size
    assert len(t) == size and ring_matches(t)


# -- the IP blocker and IP_CHANGES ----------------------------------------------------------


@pytest.mark.parametrize("size", [1_000, 20_000])
def test_full_blocker_costs_o1_per_packet_from_a_new_source(size: int) -> None:
    b = IpBlocker(BlockerLimits(max_entries=size))
    for i in range(size):
        assert b.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "peer001", T0)
    d = counted(b.entries)
    for i in range(2000):  # the flood: one id, ever-new sources, table full
        assert b.allow(f"11.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "peer001", T0 + 1)
    assert d.scans == 0 and d.ops <= 4 * 2000
    assert len(b.entries) == size and b.entries.evicted == 2000 and ring_matches(b.entries)


def test_blocker_sweep_by_the_timer_is_bounded_by_its_budget() -> None:
    b = IpBlocker(BlockerLimits(max_entries=10_000))
    for i in range(10_000):
        b.allow(f"10.0.{i >> 8}.{i & 255}", "peer001", T0)
    d = counted(b.entries)
    assert b.prune_step(T0 + 100, 500) == 500
    assert d.ops <= 2 * 500 and d.scans == 0


def test_full_ip_changes_cost_o1_per_record() -> None:
    c = IpChanges()
    c.entries = BoundedTable(1000)
    for i in range(1000):
        c.record(f"peer{i:05d}", "192.0.2.1", T0)
    d = counted(c.entries)
    for i in range(1000, 3000):
        c.record(f"peer{i:05d}", "192.0.2.1", T0 + 1)
    assert d.scans == 0 and d.ops <= 4 * 2000 and len(c.entries) == 1000


def test_blocker_memory_per_entry_is_small() -> None:
    # Measured, with a generous bound: the flood benchmark reports the real figure.
    b = IpBlocker(BlockerLimits(max_entries=100_000))
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(50_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ip in ips:
        b.allow(ip, "peer001", T0)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(ips)
    tracemalloc.stop()
    assert per_entry < 250, per_entry  # entry, its times, dict slot and ring slot (not the key)


# -- fair budgets ---------------------------------------------------------------------------


def test_rate_table_burst_then_rate_and_sweep() -> None:
    r = RateTable(rate=2.0, burst=3, cap=10)
    assert [r.take("a", T0) for _ in range(4)] == [True, True, True, False]
    assert r.take("b", T0)  # keys are independent
    assert r.take("a", T0 + 0.5) and not r.take("a", T0 + 0.5)
    assert not r.take("a", T0)  # time going backwards refills nothing
    assert r.sweep(T0 + 10, 100) == 2 and len(r.table) == 0  # whole again = forgotten


def test_rate_table_is_bounded() -> None:
    r = RateTable(rate=1.0, burst=1, cap=100)
    for i in range(1000):
        assert r.take(i, T0)
    assert len(r.table) == 100


def test_retry_marks_remember_pairs_for_one_to_two_periods() -> None:
    m = RecentKeys(bits_log2=16, period=30.0)
    pair = ("192.0.2.1", 5000, "peer001")
    assert not m.seen_or_mark(pair)  # T0: marked
    assert m.seen_or_mark(pair)  # T0 + 15
    m.rotate(T0 + 30)
    assert m.seen_or_mark(pair)  # T0 + 45: in the older generation, not marked again
    m.rotate(T0 + 60)  # two periods after it was marked: forgotten
    assert not m.seen(pair)
    m.rotate(T0 + 80)
    m.rotate(T0 + 200)
    assert not m.seen_or_mark(pair)  # T0 + 200


def test_retry_marks_rarely_mistake_a_new_pair_for_a_repeated_one() -> None:
    m = RecentKeys(RETRY_MARKS_BITS_LOG2, RETRY_MARKS_PERIOD)  # 2^25 bits per generation
    for i in range(900_000):  # a 30k/s flood of distinct pairs for 30 s
        m.seen_or_mark((i, 7))
    false = sum(m.seen_or_mark((i, 8)) for i in range(100_000))
    assert false < 1000  # under 1 %


def test_one_source_and_one_prefix_get_only_their_share() -> None:
    budget = FairBudget(rate=100.0)  # burst 6000; prefix 1/50, source 1/100 of it
    src = ("198.51.100.7", 1)
    results = [budget.admit(src, f"id{i}", T0) for i in range(100)]
    assert results.count(ADMITTED) == 60 and results[-1] == SOURCE_LIMIT
    results = [budget.admit((f"198.51.100.{i}", 1), f"x{i}", T0) for i in range(8, 200)]
    assert results.count(ADMITTED) == 120 - 60 and PREFIX_LIMIT in results
    assert budget.admit(("203.0.113.1", 1), "other1", T0) == ADMITTED  # other prefixes


def test_spraying_forger_cannot_use_the_retry_lane_but_a_repeating_client_can() -> None:
    budget = FairBudget(rate=10.0)  # burst 600
    forged = 0
    for i in range(5000):  # every source new, spread over the whole address space
        src = (f"{10 + i % 200}.{i // 200 % 256}.{i % 7}.1", 40000 + i)
        forged += budget.admit(src, f"forged{i}", T0) == ADMITTED
    assert forged == 600  # the global burst, then nothing
    genuine = ("192.0.2.50", 51000)
    assert budget.admit(genuine, "genuine1", T0 + 0.01) == GLOBAL_LIMIT
    for i in range(5000, 6000):  # the flood goes on and drains the refill
        src = (f"{10 + i % 200}.{i // 200 % 256}.{i % 7}.1", 40000 + i)
        budget.admit(src, f"forged{i}", T0 + 15)
    assert budget.admit(genuine, "genuine1", T0 + 15) == ADMITTED  # its retry gets in
    assert budget.retried == 1


def test_prefixes_are_ipv4_24_and_ipv6_56() -> None:
    assert prefix_key("192.0.2.77") == prefix_key("192.0.2.1") != prefix_key("192.0.3.1")
    assert prefix_key("2001:db8:0:ff::1") == prefix_key("2001:db8:0:1::1")
    assert prefix_key("2001:db8:0:100::1") != prefix_key("2001:db8:0:1::1")
