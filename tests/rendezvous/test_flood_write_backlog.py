"""Issue 12: brand-new ids that the database has not stored yet are bounded in number.

A forged new-id flood that the budgets admit (the new-id budget's minute-long burst) used
to queue every registration behind the database writer: 25,000 writes in flight after
12 s, each a task with its futures and answers, and every full garbage collection walked
them all (0.6 s stalls, bench/RESULTS.md). Counted, not timed: registrations waiting for
their write never exceed ``max_writes_in_flight``, and what is refused spends no budget.
"""

from __future__ import annotations

import gc

from pyhbb.rendezvous.actions import Action, Persist
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.rate_limits import BlockerLimits
from tests.rendezvous.helpers import (
    REG_OK,
    REG_TOO_FREQUENT,
    T0,
    loaded,
    make_core,
    register_pk,
    udp_replies,
)
from tests.rendezvous.test_gc_tracking import tracked_reachable

CAP = 200


def source(i: int) -> tuple[str, int]:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 20_000 + i % 1000


def flood_core(cap: int = CAP) -> RendezvousCore:
    # budgets wide open: only the backlog bound is left to say no
    return make_core(
        blocker=BlockerLimits(burst=1 << 30),
        new_peers_per_second=float(1 << 30),
        register_lookups_per_second=float(1 << 30),
        max_writes_in_flight=cap,
    )


def new_id(core: RendezvousCore, i: int, now: float) -> list[Action]:
    """RegisterPk for a brand-new id from a new source, the database read answered (not
    found) and the write left in flight, as while the writer is behind."""
    return loaded(core, core.on_udp(register_pk(f"new{i:07d}"), source(i), now), now)


def test_new_ids_beyond_the_backlog_are_refused_without_a_write() -> None:
    core = flood_core()
    in_flight: list[Persist] = []
    refused = 0
    for i in range(3 * CAP):
        actions = new_id(core, i, T0)
        writes = [a for a in actions if isinstance(a, Persist)]
        if writes:
            assert actions == writes  # answered once stored
            in_flight += writes
        else:
            assert udp_replies(actions) == [(REG_TOO_FREQUENT, source(i))]
            refused += 1
    assert len(in_flight) == CAP == core.registration.writes_in_flight()
    assert refused == 2 * CAP
    assert core.state.stats["register_pk_write_backlog_refused"] == 2 * CAP
    # the refused ids are not kept as peers: they would answer heartbeats unstored
    assert len(core.state.peers) == CAP
    # one write done makes room for exactly one more new id
    first = in_flight.pop(0)
    assert udp_replies(core.write_done(first)) == [(REG_OK, source(0))]
    assert core.registration.writes_in_flight() == CAP - 1
    assert any(isinstance(a, Persist) for a in new_id(core, 10_000, T0))
    assert not any(isinstance(a, Persist) for a in new_id(core, 10_001, T0))


def spread(i: int) -> tuple[str, int]:
    """A source in a /24 of its own: no prefix share gets in the way."""
    return f"{11 + i % 180}.{i // 180 % 256}.{i // 46080 % 256}.1", 20_000


def test_refusals_by_the_backlog_spend_no_new_id_budget() -> None:
    core = make_core(
        blocker=BlockerLimits(burst=1 << 30),
        register_lookups_per_second=float(1 << 30),
        new_peers_per_second=1.0,  # a burst of 60 new ids in all
        new_id_flood_mode=False,  # the burst's own accounting (flood mode: its own tests)
        max_writes_in_flight=10,
    )

    def writes(lo: int, hi: int) -> list[Persist]:
        out: list[Persist] = []
        for i in range(lo, hi):
            actions = core.on_udp(register_pk(f"new{i:07d}"), spread(i), T0)
            out += [a for a in loaded(core, actions, T0) if isinstance(a, Persist)]
        return out

    first = writes(0, 1000)
    assert len(first) == 10
    assert core.state.stats["register_pk_write_backlog_refused"] == 990
    for persist in first:
        core.write_done(persist)
    # the 990 refusals took nothing from the burst: 50 of its 60 are left
    for round_ in range(1, 6):
        batch = writes(1000 * round_, 1000 * round_ + 10)
        assert len(batch) == 10
        for persist in batch:
            core.write_done(persist)
    assert core.state.stats["register_pk_new_id_global_refused"] == 0
    assert writes(9000, 9010) == []  # now the budget is spent, and says so
    assert core.state.stats["register_pk_new_id_global_refused"] == 10


def test_waiting_registrations_keep_what_the_gc_walks_bounded() -> None:
    """What a full collection walks for the writes in flight stops growing at the cap,
    however many new ids arrive."""
    core = flood_core()
    held: list[Action] = []  # the executor holds the writes until they are done

    def hold(actions: list[Action]) -> None:
        held.extend(a for a in actions if isinstance(a, Persist))

    for i in range(CAP):
        hold(new_id(core, i, T0))
    gc.collect()
    at_cap = tracked_reachable(core) + tracked_reachable(held)
    for i in range(CAP, 20 * CAP):
        hold(new_id(core, i, T0))
    gc.collect()
    after = tracked_reachable(core) + tracked_reachable(held)
    # the refusals' answers are sent and forgotten; only a handful of fixed containers grow
    assert len(held) == CAP
    assert after - at_cap < CAP // 10, (at_cap, after)


def test_the_default_backlog_bound() -> None:
    core = make_core()
    assert 100 <= core.state.settings.max_writes_in_flight <= 5000


def test_a_repeated_request_uses_the_backlog_reserve_and_a_new_one_does_not() -> None:
    """A genuine client repeats its refused RegisterPk from the same address and port; a
    forger spraying new ids does not. Repeats may go a fifth beyond the bound, no further."""
    core = flood_core()
    in_flight: list[Action] = []  # kept, as the executor keeps the writes it runs
    for i in range(CAP):
        in_flight += [a for a in new_id(core, i, T0) if isinstance(a, Persist)]
    assert len(in_flight) == CAP == core.registration.writes_in_flight()
    reserve = CAP // 5
    # first tries beyond the bound: all refused (and remembered)
    for i in range(CAP, CAP + reserve + 10):
        assert udp_replies(new_id(core, i, T0 + 1)) == [(REG_TOO_FREQUENT, source(i))]
    assert core.registration.writes_in_flight() == CAP
    # their repeats 15 s later, from the same address and port: the reserve, then no more
    for i in range(CAP, CAP + reserve + 10):
        actions = new_id(core, i, T0 + 16)
        writes = [a for a in actions if isinstance(a, Persist)]
        if writes:
            assert i < CAP + reserve and actions == writes
            in_flight += writes
        else:
            assert i >= CAP + reserve
            assert udp_replies(actions) == [(REG_TOO_FREQUENT, source(i))]
    assert core.registration.writes_in_flight() == CAP + reserve
    # a write done: a new id never seen before is still refused (above the bound) ...
    done = in_flight.pop(0)
    assert isinstance(done, Persist)
    assert udp_replies(core.write_done(done)) == [(REG_OK, source(0))]
    assert udp_replies(new_id(core, 50_000, T0 + 17)) == [(REG_TOO_FREQUENT, source(50_000))]
    # ... while a repeat refused for want of reserve now gets the room
    in_flight += [a for a in new_id(core, CAP + reserve, T0 + 18) if isinstance(a, Persist)]
    assert core.registration.writes_in_flight() == CAP + reserve
    assert core.state.stats["register_pk_write_backlog_refused"] == reserve + 10 + 10 + 1
