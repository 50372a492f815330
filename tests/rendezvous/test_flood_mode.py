"""Flood mode of the new-id budget: while first-time requests come faster than the rate,
they draw from a fifth of it, the minute-long burst is kept, and repeats still get in."""

from __future__ import annotations

from pyhbb.rendezvous.fair_budget import (
    ADMITTED,
    FLOOD_HOLD,
    FLOOD_MIN,
    GLOBAL_LIMIT,
    FairBudget,
)

RATE = 100.0  # burst 6,000; in flood mode 20 a second (burst 20); retry lane 20 a second


def src(i: int) -> tuple[str, int]:
    """A source of its own in a prefix of its own: the shares never refuse it."""
    return (f"10.{i // 256}.{i % 256}.1", 40000)


def offer(budget: FairBudget, first: int, count: int, now: float) -> list[str]:
    return [budget.admit(src(i), f"id{i}", now) for i in range(first, first + count)]


def test_at_the_rate_the_burst_serves_and_no_flood_is_seen() -> None:
    budget = FairBudget(RATE, flood_mode=True)
    for second in range(30):
        assert offer(budget, second * 100, 100, 100.0 + second) == [ADMITTED] * 100
    assert not budget.flooded(130.0) and budget.floods == 0


def test_faster_than_the_rate_first_time_requests_get_a_fifth_and_the_burst_is_kept() -> None:
    budget = FairBudget(RATE, flood_mode=True)
    # the 101st request within a second starts flood mode: it and what follows draw from
    # the flood bucket (20 at once), the rest are refused
    verdicts = offer(budget, 0, 200, 100.0)
    assert verdicts[:100] == [ADMITTED] * 100
    assert verdicts[100:120] == [ADMITTED] * 20
    assert verdicts[120:] == [GLOBAL_LIMIT] * 80
    assert budget.flooded(100.0) and budget.floods == 1
    assert not budget.total.empty(100.0)  # the burst is kept for after the flood
    # a second later: 20 more first-time requests, however many are offered
    assert offer(budget, 1000, 200, 101.0).count(ADMITTED) == 20


def test_a_repeated_request_gets_in_through_the_retry_lane_during_a_flood() -> None:
    budget = FairBudget(RATE, flood_mode=True)
    offer(budget, 0, 200, 100.0)  # flood mode; id199 from src(199) refused
    assert budget.admit(src(500), "id500", 100.0) == GLOBAL_LIMIT  # first-time: refused
    assert budget.admit(src(199), "id199", 100.0) == ADMITTED  # a repeat: the retry lane
    assert budget.retried == 1


def test_flood_mode_ends_once_nothing_came_too_fast_for_the_hold() -> None:
    budget = FairBudget(RATE, flood_mode=True)
    offer(budget, 0, 200, 100.0)
    offer(budget, 1000, 200, 110.0)  # still flooding: the hold starts again
    assert budget.flooded(110.0 + FLOOD_HOLD - 0.1)
    assert not budget.flooded(110.0 + FLOOD_HOLD)
    # back to the burst: 100 at once are admitted again
    assert offer(budget, 2000, 100, 141.0) == [ADMITTED] * 100
    assert budget.floods == 1


def test_a_small_rate_is_not_a_flood_below_the_minimum() -> None:
    budget = FairBudget(1.0, flood_mode=True)  # burst 60
    assert offer(budget, 0, FLOOD_MIN, 100.0) == [ADMITTED] * FLOOD_MIN
    assert not budget.flooded(100.0)
    assert offer(budget, FLOOD_MIN, 20, 100.0).count(ADMITTED) < 20
    assert budget.flooded(100.0)


def test_without_flood_mode_the_same_flood_spends_the_burst() -> None:
    budget = FairBudget(RATE)
    verdicts = offer(budget, 0, 7000, 100.0)
    assert verdicts.count(ADMITTED) == 6000  # the minute-long burst, at once
    assert budget.total.empty(100.0) and not budget.flooded(100.0)
