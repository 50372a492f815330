"""Brand-new IDs are rate-limited globally: each is a database row (spoofed UDP sources
must not fill the disk), while known peers are never affected."""

from __future__ import annotations

from pyhbb.rendezvous.rate_limits import TokenBucket
from tests.rendezvous.helpers import (
    REG_OK,
    REG_TOO_FREQUENT,
    T0,
    make_core,
    register_pk,
    resolve,
    stored,
    udp_replies,
)


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # 2 per second
    assert not bucket.take(0.4)  # time going backwards refills nothing


def test_new_ids_beyond_the_global_rate_are_refused() -> None:
    # burst of 60, all of it usable at once without flood mode (test_flood_mode.py)
    core = make_core(new_peers_per_second=1.0, new_id_flood_mode=False)
    results = []
    for i in range(70):
        src = (f"10.0.{i}.1", 5000)  # many sources: the per-IP blocker is not involved
        out = resolve(core, core.on_udp(register_pk(f"newpeer{i:03d}"), src, T0), T0)
        results.append(udp_replies(out)[0][0])
    assert results.count(REG_OK) == 60
    assert results[60:] == [REG_TOO_FREQUENT] * 10
    # A known peer (in the database) is not a new row: never limited.
    rows = {"oldpeer1": stored("oldpeer1", ip="10.9.9.9")}
    out = resolve(core, core.on_udp(register_pk("oldpeer1"), ("10.9.9.9", 5000), T0), T0, rows)
    assert udp_replies(out)[0][0] == REG_OK
    # The rate refills with time.
    later = T0 + 2.0
    out = resolve(core, core.on_udp(register_pk("newpeer999"), ("10.1.1.1", 1), later), later)
    assert udp_replies(out)[0][0] == REG_OK


def test_in_flood_mode_a_burst_of_new_ids_keeps_most_of_the_budget() -> None:
    """The default: 70 new ids at once (more than the rate and than FLOOD_MIN) start flood
    mode at the 51st: it takes the flood bucket's one, the rest are refused."""
    core = make_core(new_peers_per_second=1.0)
    results = []
    for i in range(70):
        src = (f"10.0.{i}.1", 5000)
        out = resolve(core, core.on_udp(register_pk(f"newpeer{i:03d}"), src, T0), T0)
        results.append(udp_replies(out)[0][0])
    assert results[:51] == [REG_OK] * 51
    assert results[51:] == [REG_TOO_FREQUENT] * 19
    assert core.state.stats["register_pk_new_id_global_refused"] == 19
    assert core.registration.new_ids.flooded(T0)
