"""Issue 12 through the core: a forged registration flood spends neither the database nor
the new-id budget of genuine devices (the flood benchmark measures the same end to end)."""

from __future__ import annotations

from pyhbb.rendezvous.actions import LoadPeer
from tests.rendezvous.helpers import (
    REG_OK,
    REG_TOO_FREQUENT,
    T0,
    make_core,
    register_pk,
    resolve,
    udp_replies,
)


def sprayed(i: int) -> tuple[str, int]:
    """A forged source: spread over thousands of /24 prefixes, never repeated."""
    return f"{11 + i % 180}.{i // 180 % 256}.{i // 46080 % 256}.{1 + i % 250}", 1024 + i % 60000


def test_genuine_new_device_registers_during_a_forged_new_id_flood() -> None:
    core = make_core(new_peers_per_second=10.0)  # burst of 600 new ids
    genuine = ("192.0.2.10", 50123)
    results = []
    now = T0
    i = 0
    for second in range(60):  # 800 forged new ids per second, a genuine try every 15 s
        for _ in range(800):
            resolve(core, core.on_udp(register_pk(f"forged{i:07d}"), sprayed(i), now), now)
            i += 1
        if second % 15 == 5:
            out = resolve(core, core.on_udp(register_pk("genuine01"), genuine, now), now)
            results.append(udp_replies(out)[0][0])
            if results[-1] == REG_OK:
                break
        now += 1.0
    # the first try meets an empty budget; the same request repeated gets through
    assert results[0] == REG_TOO_FREQUENT
    assert results[-1] == REG_OK and len(results) <= 3, results


def test_forged_flood_reads_the_database_at_the_lookup_rate_only() -> None:
    core = make_core(register_lookups_per_second=100.0)  # burst of one second's worth
    loads = 0
    now = T0
    for second in range(10):
        for k in range(3000):
            i = second * 3000 + k
            actions = core.on_udp(register_pk(f"forged{i:07d}"), sprayed(i), now)
            loads += sum(isinstance(a, LoadPeer) for a in actions)
            resolve(core, actions, now)
        now += 1.0
    assert loads <= 100 * 10 + 100 + 20 * 10  # rate, burst, and the retry lane's share


def test_one_id_flood_from_new_sources_costs_no_database_read_once_refused() -> None:
    core = make_core()
    now = T0
    resolve(core, core.on_udp(register_pk("victim01"), ("192.0.2.1", 1), now), now)
    loads = 0
    for i in range(20_000):  # the flood: one id, ever-new sources
        actions = core.on_udp(register_pk("victim01"), sprayed(i), now + i / 30_000)
        loads += sum(isinstance(a, LoadPeer) for a in actions)
        resolve(core, actions, now)
    assert loads <= 5_000  # bounded by the lookup budget's one-second burst
    assert len(core.state.blocker.entries) <= core.state.blocker.limits.max_entries
