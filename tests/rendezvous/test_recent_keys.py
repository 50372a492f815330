"""RecentKeys, the two-generation Bloom filter behind the take-back's negative cache and the
fair budgets' retry marks: how long a key is remembered, when memory is held, carry-over."""

from __future__ import annotations

import pytest

from pyhbb.rendezvous.recent_keys import RecentKeys
from pyhbb.rendezvous.registration import ABSENT_IDS_BITS_LOG2, ABSENT_IDS_PERIOD
from tests.rendezvous.helpers import T0

PERIOD = 60.0


def remembered_for(mark_offset: float, carry: bool = False) -> float:
    """Seconds a key marked ``mark_offset`` s into a generation stays seen, with
    housekeeping once a second as the server runs it (asked about once a second too
    when ``carry``)."""
    keys = RecentKeys(bits_log2=12, period=PERIOD)
    keys.rotate(T0)  # the server's first housekeeping
    t = T0
    while t < T0 + mark_offset:
        t += 1.0
        keys.rotate(t)
    keys.mark("peer001")
    marked_at = t
    while keys.seen("peer001", carry=carry):
        t += 1.0
        keys.rotate(t)
        if t - marked_at > 10 * PERIOD:
            break
    return t - marked_at


@pytest.mark.parametrize("offset", [0.0, 1.0, 30.0, 59.0, 60.0, 61.0])
def test_a_key_is_remembered_one_to_two_periods_after_it_was_marked(offset: float) -> None:
    assert PERIOD <= remembered_for(offset) <= 2 * PERIOD


def test_a_key_asked_about_with_carry_is_never_forgotten() -> None:
    assert remembered_for(30.0, carry=True) > 10 * PERIOD


def test_carry_moves_a_hit_in_the_older_generation_into_the_current_one() -> None:
    keys = RecentKeys(bits_log2=12, period=PERIOD)
    keys.mark("carried1")
    keys.mark("plain001")
    keys.rotate(T0)  # both now in the older generation
    assert keys.marked == 0
    assert keys.seen("carried1", carry=True)
    assert keys.seen("plain001")  # seen, but not carried
    assert keys.marked == 1
    keys.rotate(T0 + PERIOD)
    assert keys.seen("carried1")
    assert not keys.seen("plain001")


def test_seen_or_mark_marks_only_what_it_has_not_seen() -> None:
    keys = RecentKeys(bits_log2=12, period=PERIOD)
    pair = ("192.0.2.1", 5000, "peer001")
    assert not keys.seen_or_mark(pair)
    assert keys.seen_or_mark(pair) and keys.marked == 1
    keys.rotate(T0)
    assert keys.seen_or_mark(pair)  # found in the older generation: not marked again
    assert keys.marked == 0
    keys.rotate(T0 + PERIOD)
    assert not keys.seen_or_mark(pair)  # forgotten, so marked afresh
    assert keys.marked == 1


def test_memory_is_taken_on_the_first_mark_and_given_back_after_two_quiet_periods() -> None:
    keys = RecentKeys(bits_log2=16, period=PERIOD)
    assert keys.size == 8192
    keys.rotate(T0)
    assert not keys.seen("peer001") and not keys.seen("peer001", carry=True)
    assert keys.allocated == 0  # look-ups and housekeeping alone take nothing
    keys.mark("peer001")
    assert keys.allocated == keys.size
    keys.rotate(T0 + PERIOD)
    assert keys.allocated == keys.size  # the older generation only
    keys.mark("peer002")
    assert keys.allocated == 2 * keys.size
    keys.rotate(T0 + 2 * PERIOD)
    assert keys.allocated == keys.size
    keys.rotate(T0 + 3 * PERIOD)
    assert keys.allocated == 0 and not keys.seen("peer002")


def test_rotation_happens_once_per_period_however_often_housekeeping_runs() -> None:
    keys = RecentKeys(bits_log2=12, period=PERIOD)
    keys.rotate(T0)
    keys.mark("peer001")
    for second in range(1, 60):
        keys.rotate(T0 + second)
        assert keys.marked == 1  # still the current generation
    keys.rotate(T0 + PERIOD)
    assert keys.marked == 0 and keys.seen("peer001")


def test_false_positives_at_the_negative_cache_size_are_rare() -> None:
    keys = RecentKeys(ABSENT_IDS_BITS_LOG2, ABSENT_IDS_PERIOD)  # 2^24 bits per generation
    for i in range(100_000):
        keys.mark(f"absent{i:07d}")
    assert all(keys.seen(f"absent{i:07d}") for i in range(100_000))  # never a false negative
    false = sum(keys.seen(f"other{i:07d}") for i in range(100_000))
    assert false < 100  # under 0.1 % (about 0.014 % expected, see recent_keys.py)


@pytest.mark.parametrize(("bits_log2", "period"), [(2, 1.0), (33, 1.0), (16, 0.0), (16, -5.0)])
def test_impossible_sizes_and_periods_are_refused(bits_log2: int, period: float) -> None:
    with pytest.raises(ValueError):
        RecentKeys(bits_log2, period)
