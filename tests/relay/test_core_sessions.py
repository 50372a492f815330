"""The relay core from pairing on (§8.2-8.4, §9.2): sessions, the waiting
table's deadlines, the blocklist on running sessions, the idle rule, blacklist and
downgrade, usage figures and shutdown. No sockets; time is passed in."""

from __future__ import annotations

from pyhbb.relay.actions import Cut, Drop, StartBridge, StartSplice, Wait
from pyhbb.relay.bandwidth import MEBIBIT, RelaySettings
from pyhbb.relay.conns import Phase
from pyhbb.relay.console import UsageLine
from tests.relay.core_helpers import (
    FakeMover,
    arrive_tcp,
    arrive_ws,
    make_core,
    paired,
    tcp,
    ws,
)

# -- pairing ---------------------------------------------------------------------------------


def test_two_tcp_clients_are_spliced() -> None:
    core = make_core()
    a, b = tcp("1.1.1.1", 1), tcp("2.2.2.2", 2)
    assert arrive_tcp(core, a, "u", 0.0, extra=b"early") == [Wait(a)]
    (start,) = arrive_tcp(core, b, "u", 5.0, extra=b"late")
    assert isinstance(start, StartSplice)
    s = start.session
    assert (s.first, s.second, s.uuid, s.kind, s.raw) == (a, b, "u", "tcp-tcp", True)
    assert (a.leftover, b.leftover) == (b"early", b"late")
    assert a.phase is b.phase is Phase.PAIRED
    assert core.sessions == {s} and len(core.pairing) == 0
    assert s.key == "2.2.2.2:2" and s.started == 5.0


def test_a_websocket_side_means_a_bridge() -> None:
    for first, second, kind in [
        (ws("1.1.1.1"), tcp("2.2.2.2"), "ws-tcp"),
        (tcp("1.1.1.1"), ws("2.2.2.2"), "tcp-ws"),
        (ws("1.1.1.1"), ws("2.2.2.2"), "ws-ws"),
    ]:
        core = make_core()
        arrive = arrive_tcp if first.kind.value == "tcp" else arrive_ws
        assert arrive(core, first, "u") == [Wait(first)]
        arrive = arrive_tcp if second.kind.value == "tcp" else arrive_ws
        (start,) = arrive(core, second, "u")
        assert isinstance(start, StartBridge)
        assert start.session.kind == kind and not start.session.raw


def test_waiter_that_leaves_is_forgotten() -> None:
    core = make_core()
    a = ws()
    arrive_ws(core, a, "u")
    core.closed(a, 1.0)
    assert len(core.pairing) == 0 and a.phase is Phase.CLOSED
    b = tcp()
    assert arrive_tcp(core, b, "u", 2.0) == [Wait(b)]  # waits anew, no ghost partner


def test_closing_a_paired_connection_is_left_to_the_session() -> None:
    core = make_core()
    s = paired(core, tcp("1.1.1.1"), tcp("2.2.2.2"))
    core.closed(s.first, 1.0)
    assert s.first.phase is Phase.PAIRED and core.sessions == {s}


def test_session_ended() -> None:
    core = make_core()
    s = paired(core, tcp("1.1.1.1"), ws("2.2.2.2"))
    core.session_ended(s, "websocket closed", 10.0)
    assert not core.sessions
    assert s.first.phase is s.second.phase is Phase.CLOSED
    core.session_ended(s, "again", 11.0)  # reported twice: harmless


# -- once a second ---------------------------------------------------------------------------


def test_waiter_expires_at_its_own_deadline() -> None:
    core = make_core(pair_wait_timeout=30.0)
    a = tcp("1.1.1.1")
    arrive_tcp(core, a, "u", 0.0)
    b = tcp("2.2.2.2")
    arrive_tcp(core, b, "v", 10.0)
    assert core.tick(29.0) == []
    assert core.tick(30.0) == [Drop(a, "no partner")]
    assert a.phase is Phase.CLOSED
    assert core.tick(40.0) == [Drop(b, "no partner")]
    assert len(core.pairing) == 0


def test_blocklist_cuts_waiters() -> None:
    core = make_core()
    a, b = tcp("1.1.1.4"), tcp("1.1.1.5")
    arrive_tcp(core, a, "u")
    arrive_tcp(core, b, "v")
    core.blocklist.add(["1.1.1.4"])
    assert core.tick(1.0) == [Drop(a, "blocked")]
    assert core.pairing.waiting() == [("v", b, "1.1.1.5")]


def test_blocklist_cuts_sessions_from_either_side() -> None:
    for blocked in ("1.1.1.1", "2.2.2.2", "::ffff:2.2.2.2"):
        core = make_core()
        s = paired(core, tcp("1.1.1.1"), ws("2.2.2.2"))
        s.mover = mover = FakeMover()
        assert core.tick(1.0) == []
        core.blocklist.add([blocked])
        assert core.tick(2.0) == [Cut(s, "blocked")]
        assert s.ending == "blocked"
        assert core.tick(3.0) == []  # asked once; the mover reports the end
        assert mover.closed == []  # the adapter performs Cut, not the core


def test_idle_session_is_cut_after_idle_timeout_without_activity() -> None:
    core = make_core(idle_timeout=30.0)
    s = paired(core, tcp("1.1.1.1"), tcp("2.2.2.2"))
    s.mover = mover = FakeMover()
    for t in range(1, 30):
        assert core.tick(float(t)) == []
    assert core.tick(30.0) == [Cut(s, "no traffic")]
    core2 = make_core(idle_timeout=30.0)
    busy = paired(core2, tcp("1.1.1.1"), tcp("2.2.2.2"))
    busy.mover = mover = FakeMover()
    for t in range(1, 100):
        mover.activity += 1  # anything moved (or a paused side resumed)
        assert core2.tick(float(t)) == []
    assert core2.tick(128.0) == []  # 29 s after the last activity
    assert core2.tick(129.0) == [Cut(busy, "no traffic")]


def test_blacklist_limits_a_session_from_the_next_tick() -> None:
    core = make_core()
    s = paired(core, tcp("1.1.1.1"), tcp("2.2.2.2"))
    s.mover = FakeMover()
    core.tick(1.0)
    assert not s.budget.limited
    core.blacklist.add(["1.1.1.1"])
    core.tick(2.0)
    assert s.budget.blacklisted and s.budget.limited
    core.blacklist.remove(["1.1.1.1"])
    core.tick(3.0)
    assert not s.budget.limited


def test_downgrade_after_start_check() -> None:
    settings = RelaySettings(1e6, 10, 1, 50, 10)  # 10 Mb/s, 50 %, after 10 s
    core = make_core(settings=settings)
    s = paired(core, tcp("1.1.1.1"), tcp("2.2.2.2"))
    s.mover = mover = FakeMover()
    for t in range(1, 13):
        s.budget.consume(6 * MEBIBIT // 8, float(t))  # 6 Mb/s average
        mover.activity += 1
        core.tick(float(t))
        if t <= 10:
            assert not s.budget.downgraded
    assert s.budget.downgraded


def test_usage_lines_and_total_bandwidth() -> None:
    core = make_core()
    s = paired(core, tcp("1.1.1.1", 1), tcp("2.2.2.2", 2), now=0.0)
    s.mover = mover = FakeMover()
    s.budget.consume(125_000, 0.5)
    mover.activity += 1
    core.tick(1.0)
    assert core.usage() == [UsageLine("2.2.2.2:2", 1000, 1_000_000, 1000, 1000)]
    core.set_total_bandwidth(0.01, 1.0)
    assert core.settings.total_bandwidth == 0.01
    assert core.total.rate == 0.01 * MEBIBIT
    assert s.budget.chunk == 16 * 1024  # read chunks follow the new rate at once


def test_shutdown_cuts_sessions_and_drops_waiters() -> None:
    core = make_core()
    s = paired(core, tcp("1.1.1.1"), tcp("2.2.2.2"))
    c = tcp("3.3.3.3")
    arrive_tcp(core, c, "w")
    actions = core.shutdown()
    assert actions == [Cut(s, "server shutting down"), Drop(c, "server shutting down")]
    assert len(core.pairing) == 0 and c.phase is Phase.CLOSED
