"""Limiters and the downgrade rule of §8.4, with injected time."""

from __future__ import annotations

import pytest

from pyhbb.relay.bandwidth import (
    MEBIBIT,
    MIN_CHUNK,
    RelaySettings,
    SessionBudget,
    TokenBucket,
)


def settings(**kw: float) -> RelaySettings:
    values: dict[str, float] = dict(
        total_bandwidth=1024,
        single_bandwidth=128,
        limit_speed=32,
        downgrade_threshold_pct=66,
        downgrade_start_check=1800,
    )
    values.update(kw)
    return RelaySettings(**values)  # type: ignore[arg-type]


def test_bucket_average_rate() -> None:
    bucket = TokenBucket(8_000_000, now=0.0)  # 1 MB/s
    t = 0.0
    for _ in range(100):
        t += bucket.consume(80_000, t)  # 10 kB chunks, each waits what it is told
    # 1 MB after the initial burst took close to one second.
    assert 0.85 <= t <= 1.0


def test_bucket_burst_then_delay() -> None:
    bucket = TokenBucket(10 * MEBIBIT, now=0.0)
    assert bucket.consume(0.5 * MEBIBIT, 0.0) == 0.0  # within the 0.1 s burst
    delay = bucket.consume(10 * MEBIBIT, 0.0)
    assert delay == pytest.approx(0.95)
    assert bucket.consume(1, 0.95) == pytest.approx(0.1 / MEBIBIT)


def test_bucket_set_rate_keeps_debt() -> None:
    bucket = TokenBucket(MEBIBIT, now=0.0)
    bucket.consume(3 * MEBIBIT, 0.0)
    bucket.set_rate(2 * MEBIBIT, 1.0)
    assert bucket.rate == 2 * MEBIBIT
    # 3 Mbit spent, burst + 1 s of 1 Mb/s refilled: still in debt at the new rate.
    assert bucket.consume(0, 1.0) > 0


def test_session_shares_one_budget_for_both_directions() -> None:
    total = TokenBucket(1024 * MEBIBIT, 0.0)
    budget = SessionBudget(settings(single_bandwidth=8), total, 0.0)
    d1 = budget.consume(512 * 1024, 0.0)  # 4 Mbit one way
    d2 = budget.consume(512 * 1024, 0.0)  # 4 Mbit the other way
    assert d2 > d1
    assert d2 == pytest.approx((8 * MEBIBIT - 0.8 * MEBIBIT) / (8 * MEBIBIT))


def test_total_limiter_is_shared() -> None:
    total = TokenBucket(8 * MEBIBIT, 0.0)
    a = SessionBudget(settings(), total, 0.0)
    b = SessionBudget(settings(), total, 0.0)
    assert a.consume(MEBIBIT // 8, 0.0) == pytest.approx(0.0, abs=0.06)
    assert b.consume(MEBIBIT // 8, 0.0) > 0.1  # b pays for a's traffic too


def test_blacklisted_session_uses_limit_speed() -> None:
    total = TokenBucket(1024 * MEBIBIT, 0.0)
    budget = SessionBudget(settings(single_bandwidth=100, limit_speed=1), total, 0.0)
    assert budget.consume(MEBIBIT // 8, 0.0) == 0.0
    budget.tick(1.0, blacklisted=True, downgrade_start_check=1800)
    assert budget.limited
    assert budget.consume(MEBIBIT // 8, 1.0) == pytest.approx(0.5)  # 1 Mbit - 0.5 Mbit burst
    budget.tick(2.0, blacklisted=False, downgrade_start_check=1800)
    assert not budget.limited


def test_downgrade_after_start_check_when_average_above_threshold() -> None:
    total = TokenBucket(1e9 * MEBIBIT, 0.0)
    # 10 Mb/s single, threshold 50 %: downgrade when the average exceeds 5 Mb/s.
    s = settings(single_bandwidth=10, downgrade_threshold_pct=50, downgrade_start_check=10)
    busy = SessionBudget(s, total, 0.0)
    calm = SessionBudget(s, total, 0.0)
    for second in range(1, 13):
        busy.consume(6 * MEBIBIT // 8, float(second))  # 6 Mb/s average
        calm.consume(4 * MEBIBIT // 8, float(second))  # 4 Mb/s average
        busy.tick(float(second), False, 10)
        calm.tick(float(second), False, 10)
        if second <= 10:
            assert not busy.downgraded  # not before DOWNGRADE_START_CHECK
    assert busy.downgraded and busy.limited
    assert not calm.downgraded
    # Downgrade is for life, even if the session calms down.
    busy.tick(100.0, False, 10)
    assert busy.downgraded


def test_downgrade_start_check_is_read_at_each_tick() -> None:
    total = TokenBucket(1e9 * MEBIBIT, 0.0)
    budget = SessionBudget(settings(single_bandwidth=1), total, 0.0)
    budget.consume(10 * MEBIBIT, 1.0)
    budget.tick(5.0, False, 1800)
    assert not budget.downgraded
    budget.tick(6.0, False, 3)  # the console lowered it: effective immediately
    assert budget.downgraded


def test_usage_figures() -> None:
    total = TokenBucket(1e9 * MEBIBIT, 0.0)
    budget = SessionBudget(settings(), total, 0.0)
    assert budget.elapsed_ms == 0
    budget.consume(125_000, 0.5)  # 1,000,000 bits
    budget.tick(1.0, False, 1800)
    assert (budget.elapsed_ms, budget.total_bits, budget.current) == (1000, 1_000_000, 1000)
    budget.consume(25_000, 1.5)
    budget.tick(2.0, False, 1800)
    assert budget.current == 200 and budget.highest == 1000 and budget.elapsed_ms == 2000


def test_chunk_follows_the_rate() -> None:
    total = TokenBucket(1024 * MEBIBIT, 0.0)
    fast = SessionBudget(settings(single_bandwidth=1024), total, 0.0)
    slow = SessionBudget(settings(single_bandwidth=0.01), total, 0.0)
    assert fast.chunk == 1024 * MEBIBIT // 8 // 4
    assert slow.chunk == MIN_CHUNK


def test_threshold_is_whole_percent() -> None:
    assert RelaySettings.threshold_pct(0.66) == 66
    assert RelaySettings.threshold_pct(0.555) == 55
