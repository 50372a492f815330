"""Issue 12: a spoofed RegisterPk flood is shed before it costs a table entry or an answer,
and genuine devices still register through the retry lane (sans-IO, counted, not timed)."""

from __future__ import annotations

import logging

import pytest

from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.fair_budget import REPEATED, SURELY, UNDECIDED, FairBudget
from pyhbb.rendezvous.shedding import SLIP, Shedding
from tests.rendezvous.helpers import (
    B_ADDR,
    REG_OK,
    REG_TOO_FREQUENT,
    T0,
    bring_online,
    make_core,
    reg,
    register_pk,
    resolve,
    udp_replies,
)

RATE = 30_000  # forged datagrams per simulated second, as bench/hbbs_flood.py sends
NO_ANSWER_RETRY = 3.0  # the client resends after 3 s without an answer (§12)
TOO_FREQUENT_RETRY = 15.0  # and 15 s after TOO_FREQUENT
FALSE_REPEATS = 10  # Bloom filter false positives allowed for in a test's flood
ENTRIES_PER_LOOK_UP = 7  # blocker, per-id count, peer; look-up and new-id budgets: source, prefix


def sprayed(i: int) -> tuple[str, int]:
    """A forged source, never repeated, spread over many /24 prefixes."""
    return f"{11 + i % 180}.{i // 180 % 256}.{i // 46080 % 256}.{1 + i % 250}", 1024 + i % 60000


def forged(i: int) -> bytes:
    return register_pk(f"forged{i:08d}", uuid=b"forged-uuid", pk=b"\x33" * 32)


def table_entries(core: RendezvousCore) -> int:
    """Every per-key table a RegisterPk can write (the Bloom filters are fixed memory)."""
    s, r = core.state, core.registration
    return (
        len(s.blocker.entries)
        + len(s.reg_pk_counts)
        + len(s.peers)
        + sum(b.keys for b in (r.lookups, r.new_ids, r.take_backs))
    )


def answers(
    core: RendezvousCore, data: bytes, src: tuple[str, int], now: float
) -> list[tuple[bytes, tuple[str, int]]]:
    """The UDP answers to ``data`` from ``src``, look-ups and writes done."""
    return udp_replies(resolve(core, core.on_udp(data, src, now), now))


def spend_lookups(core: RendezvousCore, now: float) -> int:
    """Forged new ids until the look-up budget's global rate is spent; returns how many."""
    i = 0
    while not core.registration.lookups.total.empty(now):
        resolve(core, core.on_udp(forged(i), sprayed(i), now), now)
        i += 1
    return i


def test_genuine_device_registers_within_a_few_tries_during_a_30k_new_id_flood() -> None:
    core = make_core()
    genuine = ("192.0.2.10", 50123)
    data = register_pk("genuine01")
    next_try, tries, registered = T0 + 2.0, [], False
    i = 0
    for tick in range(40 * 10):  # 40 s in steps of 0.1 s, 3,000 forged datagrams each
        now = T0 + tick / 10
        for _ in range(RATE // 10):
            resolve(core, core.on_udp(forged(i), sprayed(i), now), now)
            i += 1
        if now >= next_try:
            answers = udp_replies(resolve(core, core.on_udp(data, genuine, now), now))
            tries.append(answers[0][0] if answers else None)
            if tries[-1] == REG_OK:
                registered = True
                break
            next_try = now + (TOO_FREQUENT_RETRY if answers else NO_ANSWER_RETRY)
    assert registered, tries
    # the first try meets the spent budget (dropped, or now and then answered); the
    # client's repeat of the same bytes from the same address gets in by the retry lane
    assert tries[0] in (None, REG_TOO_FREQUENT) and len(tries) <= 3, tries
    assert core.registration.shedding.dropped > 0.8 * i


def flood(core: RendezvousCore, datagrams: list[tuple[bytes, tuple[str, int]]], now: float) -> int:
    """Feed ``datagrams`` at ``now``, look-ups and writes done; how many were not shed."""
    shedding = core.registration.shedding
    dropped = shedding.dropped
    for data, src in datagrams:
        answered = udp_replies(resolve(core, core.on_udp(data, src, now), now))
        assert len(answered) <= 1 and all(to == src for _, to in answered)
    return len(datagrams) - (shedding.dropped - dropped)


def test_a_shed_datagram_writes_no_table_entry_and_costs_no_look_up() -> None:
    core = make_core()
    now = T0
    i = spend_lookups(core, now)
    before = table_entries(core)
    n = 3 * RATE  # three seconds' worth, all at once: the budget stays spent
    passed = flood(core, [(forged(k), sprayed(k)) for k in range(i, i + n)], now)
    # counted: no entry for a shed datagram. The retry marks are a Bloom filter: now and
    # then (~1 in 100,000 here) a new request is taken for a repeat and let into the
    # retry lane, which then writes a few entries, as for a genuine repeat.
    assert passed <= FALSE_REPEATS
    assert table_entries(core) - before <= ENTRIES_PER_LOOK_UP * passed
    shedding = core.registration.shedding
    assert shedding.dropped == n - passed
    # one in SLIP gets TOO_FREQUENT (DNS response-rate limiting's slip); the rest nothing
    assert shedding.slipped == shedding.dropped // SLIP
    assert core.state.outcomes["register_pk", "udp", "shed"] == shedding.dropped - shedding.slipped


def test_table_entries_per_forged_datagram_stay_bounded_over_a_flood() -> None:
    core = make_core()
    i = 0
    before = table_entries(core)
    for tick in range(10 * 10):  # 10 s in steps of 0.1 s, housekeeping as often
        now = T0 + tick / 10
        flood(core, [(forged(k), sprayed(k)) for k in range(i, i + RATE // 10)], now)
        i += RATE // 10
        core.on_timer(now)
    added = table_entries(core) - before
    lookups = core.registration.lookups
    # what got through is bounded by the look-up rate (a second's burst, then the rate,
    # and the retry lane's share), each writing a handful of entries; the rest wrote none
    admitted = lookups.rate * (1 + 10) + lookups.retries.burst
    assert added <= ENTRIES_PER_LOOK_UP * admitted, (added, i)
    assert added / i < 0.5  # before the gate: at least 1 (every forged source in the blocker)
    assert core.registration.shedding.dropped >= i - admitted


def test_one_id_flood_is_shed_too_and_the_owner_still_registers() -> None:
    core = make_core()
    bring_online(core, T0)  # B, registered from B_ADDR
    now = T0 + 10
    spend_lookups(core, now)
    entries = table_entries(core)
    data = register_pk(uuid=b"forged-uuid")  # B's id, a foreign uuid, ever-new sources
    passed = flood(core, [(data, sprayed(k)) for k in range(RATE)], now)
    assert passed <= FALSE_REPEATS
    assert table_entries(core) - entries <= ENTRIES_PER_LOOK_UP * passed
    # B's own re-registration: dropped once, its repeat 3 s later is let in
    assert answers(core, register_pk(), B_ADDR, now) in ([], [(REG_TOO_FREQUENT, B_ADDR)])
    assert answers(core, register_pk(), B_ADDR, now + 3) == [(REG_OK, B_ADDR)]


def test_any_encoding_of_a_register_pk_meets_the_gate() -> None:
    core = make_core()
    now = T0
    i = spend_lookups(core, now)
    entries = table_entries(core)
    unknown_field = bytes([100 << 3 & 0x7F | 0x80, 100 >> 4, 1])  # field 100, varint 1
    assert unknown_field[:1] != register_pk()[:1]
    # parsed first, then shed all the same
    passed = flood(core, [(unknown_field + forged(k), sprayed(k)) for k in range(i, i + 1000)], now)
    assert passed <= FALSE_REPEATS
    assert table_entries(core) - entries <= ENTRIES_PER_LOOK_UP * passed
    assert core.registration.shedding.dropped >= 1000 - FALSE_REPEATS


def test_the_gate_keeps_the_ip_blocker_and_the_per_id_limit() -> None:
    core = make_core()
    src = ("198.51.100.1", 1000)
    for k in range(32):  # the blocker's burst from one source, while nothing is shed
        assert answers(core, register_pk(f"peer{k:05d}"), src, T0) == [(REG_OK, src)]
    now = T0 + 1
    spend_lookups(core, now)
    data = register_pk("peer99999")
    assert answers(core, data, src, now) in ([], [(REG_TOO_FREQUENT, src)])
    # its repeat passes the gate (the retry lane has room) but the blocker still refuses
    assert answers(core, data, src, now + 3) == [(REG_TOO_FREQUENT, src)]
    assert core.state.pending_loads == 0 and core.state.peers.get("peer99999") is None


def test_a_request_refused_by_the_per_id_limit_leaves_no_blocker_entry() -> None:
    core = make_core()
    bring_online(core, T0)
    reg(core, register_pk(), B_ADDR, T0)
    reg(core, register_pk(), B_ADDR, T0)  # three in the burst: the id's limit is reached
    entries = len(core.state.blocker.entries)
    for k in range(100):
        src = (f"192.0.2.{k + 1}", 1)
        assert answers(core, register_pk(uuid=b"x"), src, T0 + 1) == [(REG_TOO_FREQUENT, src)]
    assert len(core.state.blocker.entries) == entries


def test_refuses_surely_agrees_with_admit() -> None:
    budget = FairBudget(10.0, burst_seconds=1.0)
    now = T0
    for k in range(10):  # the global burst
        assert budget.refuses_surely((f"10.0.{k}.1", 1), "r", now) == UNDECIDED
        assert budget.admit((f"10.0.{k}.1", 1), "r", now) == ""
    new, keys = ("10.1.0.1", 7), budget.keys
    assert budget.refuses_surely(new, "first", now) == SURELY  # marked, no table written
    assert budget.keys == keys
    assert budget.refuses_surely(new, "first", now) == REPEATED  # the repeat
    assert budget.admit(new, "first", now, repeated=True) == ""  # by the retry lane
    assert budget.retried == 1
    # a source that spent its share is refused surely, global rate or not
    hog = FairBudget(1000.0, burst_seconds=1.0)
    while hog.admit(("10.2.0.1", 1), "x", now) == "":
        pass
    assert hog.admit(("10.2.0.1", 1), "x", now) != ""
    assert hog.refuses_surely(("10.2.0.1", 1), "y", now) == SURELY
    assert hog.refuses_surely(("10.3.0.1", 1), "y", now) == UNDECIDED


def test_shedding_is_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    core = make_core()
    caplog.set_level(logging.WARNING, logger="pyhbb.rendezvous")
    i = 0
    for tick in range(30 * 10):  # 30 s
        now = T0 + tick / 10
        for _ in range(300):
            core.on_udp(forged(i), sprayed(i), now)
            i += 1
        core.on_timer(now)
    lines = [r.getMessage() for r in caplog.records if "shedding RegisterPk" in r.getMessage()]
    assert 2 <= len(lines) <= 4, lines
    assert "dropped in the last" in lines[-1]


def test_slip_zero_never_answers() -> None:
    budget = FairBudget(1.0, burst_seconds=1.0)
    budget.admit(("10.0.0.1", 1), "r", T0)
    shedding = Shedding(budget, slip=0)
    verdicts = {shedding.check((f"10.9.{k // 250}.{k % 250}", 1), k, T0) for k in range(100)}
    assert len(verdicts) == 1 and shedding.slipped == 0 and shedding.dropped == 100
    with pytest.raises(ValueError):
        Shedding(budget, slip=-1)
