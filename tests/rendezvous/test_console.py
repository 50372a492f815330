"""The hbbs admin console: every command and alias, official output (docs/protocol.md §9.1)."""

from __future__ import annotations

import calendar

import pytest

from pyhbb.rendezvous.actions import SendUdp
from pyhbb.rendezvous.console import COMMANDS, HELP, Console
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    REG_OK,
    REG_TOO_FREQUENT,
    T0,
    bring_online,
    decode,
    make_core,
    punch_request,
    register_pk,
    resolve,
    tcp,
    udp_replies,
)

SPEC_HELP = (
    "relay-servers(rs) <separated by ,>\n"
    "reload-geo(rg)\n"
    "ip-blocker(ib) [<ip>|<number>] [-]\n"
    "ip-changes(ic) [<id>|<number>] [-]\n"
    "punch-requests(pr) [<number>] [-]\n"
    "always-use-relay(aur)\n"
    "test-geo(tg) <ip1> <ip2>\n"
)
RESOLVABLE = {"relay1.example", "relay2.example:21117", "10.0.0.5"}
WALL = calendar.timegm((2024, 1, 1, 0, 0, 0))  # 2024-01-01T00:00:00Z


class Clock:
    """The caller's two readings: the core's monotonic ``now`` and the Unix time ``wall``
    at that moment (the console reads no clock itself)."""

    def __init__(self, now: float = T0, wall: float = WALL) -> None:
        self.now = now
        self.wall = wall


class Fixture:
    def __init__(self, **settings) -> None:
        self.core = make_core(**settings)
        self.clock = Clock()
        self.resolved: list[str] = []
        self.console = Console(self.core.admin, self.resolve)

    async def resolve(self, host: str) -> bool:
        self.resolved.append(host)
        return host in RESOLVABLE

    async def run(self, line: str) -> str:
        # The adapter trims the text and splits it on single spaces (§9).
        return await self.execute(line.strip().split(" "))

    async def execute(self, args: list[str], console: Console | None = None) -> str:
        return await (console or self.console).execute(args, self.clock.now, self.clock.wall)


async def test_help_has_the_official_lines_first() -> None:
    f = Fixture()
    out = await f.run("h")
    assert out == HELP
    assert out.startswith(SPEC_HELP)
    # pyhbb's additions are documented each on its own line.
    assert out[len(SPEC_HELP) :] == (
        "stats: pyhbb counters and table sizes\n"
        "forget-peer <id>: pyhbb: drop the record of an ID deleted from the database\n"
        "disable-peer <id>: pyhbb: answer for an ID as for an offline peer\n"
        "enable-peer <id>: pyhbb: undo disable-peer\n"
        "disabled-peers [<number>]: pyhbb: how many IDs are disabled, and 10 of them\n"
    )


async def test_unknown_and_unimplemented_commands_print_nothing() -> None:
    f = Fixture()
    for line in ("", "x", "help", "H", "reload-geo", "rg", "relay-servers-x", "rs2"):
        assert await f.run(line) == "", line
    assert await f.execute([]) == ""


def test_command_words_include_every_alias() -> None:
    for word in ("h", "relay-servers", "rs", "reload-geo", "rg", "ip-blocker", "ib"):
        assert word in COMMANDS
    for word in ("ip-changes", "ic", "punch-requests", "pr", "always-use-relay", "aur"):
        assert word in COMMANDS
    assert {"test-geo", "tg"} <= COMMANDS


# -- relay-servers ---------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["rs", "relay-servers"])
async def test_relay_servers_list_and_set(cmd: str) -> None:
    f = Fixture(relay_servers=["r1.example", "r2.example"])
    assert await f.run(cmd) == "r1.example\nr2.example\n"
    line = f"{cmd} relay1.example,unresolvable.invalid,relay2.example:21117"
    assert await f.run(line) == ""
    assert f.resolved == ["relay1.example", "unresolvable.invalid", "relay2.example:21117"]
    assert await f.run(cmd) == "relay1.example\nrelay2.example:21117\n"


async def test_relay_servers_list_shows_only_reachable_ones() -> None:
    f = Fixture(relay_servers=["r1", "r2", "r3"])
    f.core.admin.relays_checked(["r3", "r1"])
    assert await f.run("rs") == "r1\nr3\n"


async def test_relay_servers_set_is_used_by_punching() -> None:
    f = Fixture()
    bring_online(f.core, T0)
    await f.run("rs 10.0.0.5")
    ((payload, _),) = udp_replies(f.core.on_frame(tcp(), punch_request(), T0 + 1))
    assert decode(payload).punch_hole.relay_server == "10.0.0.5"


async def test_relay_servers_empty_list() -> None:
    f = Fixture()
    assert await f.run("rs") == ""
    await f.run("rs unresolvable.invalid")
    assert await f.run("rs") == ""


# -- always-use-relay ------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["aur", "always-use-relay"])
async def test_always_use_relay_show_and_set_without_wiping_relays(cmd: str) -> None:
    f = Fixture(relay_servers=["r1.example"])
    assert await f.run(cmd) == "ALWAYS_USE_RELAY: false\n"
    assert await f.run(f"{cmd} Y") == ""
    assert await f.run(cmd) == "ALWAYS_USE_RELAY: true\n"
    assert await f.run(f"{cmd} n") == ""
    assert await f.run(cmd) == "ALWAYS_USE_RELAY: false\n"
    assert await f.run(f"{cmd} y") == ""
    assert await f.run(cmd) == "ALWAYS_USE_RELAY: true\n"
    assert await f.run(f"{cmd} yes") == ""  # only "Y" (any case) means yes
    assert await f.run(cmd) == "ALWAYS_USE_RELAY: false\n"
    # §9.1 / §13: upstream also replaced the relay list with "Y"/"N"; pyhbb does not.
    assert await f.run("rs") == "r1.example\n"
    assert f.resolved == []


async def test_always_use_relay_starts_from_the_setting_and_drives_punching() -> None:
    f = Fixture(always_use_relay=True)
    assert await f.run("aur") == "ALWAYS_USE_RELAY: true\n"
    bring_online(f.core, T0)
    await f.run("aur N")
    ((payload, _),) = udp_replies(
        f.core.on_frame(tcp(), punch_request(nat_type=pb.ASYMMETRIC), T0 + 1)
    )
    assert decode(payload).punch_hole.nat_type == pb.ASYMMETRIC
    await f.run("aur Y")
    ((payload, _),) = udp_replies(
        f.core.on_frame(tcp(), punch_request(nat_type=pb.ASYMMETRIC), T0 + 1)
    )
    assert decode(payload).punch_hole.nat_type == pb.SYMMETRIC


# -- test-geo --------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["tg", "test-geo"])
async def test_test_geo_prints_the_next_relay_quoted_and_rotates(cmd: str) -> None:
    f = Fixture(relay_servers=["r1", "r2"])
    outs = [await f.run(f"{cmd} 1.2.3.4 5.6.7.8") for _ in range(4)]
    assert sorted(outs[:2]) == ['"r1"\n', '"r2"\n']
    assert outs[2:] == outs[:2]
    assert await f.run(f"{cmd} 1.2.3.4") in ('"r1"\n', '"r2"\n')


async def test_test_geo_without_relays_prints_empty_quotes() -> None:
    f = Fixture()
    assert await f.run("tg 1.2.3.4") == '""\n'


# -- ip-blocker ------------------------------------------------------------------------------


def blocker_fixture() -> Fixture:
    f = Fixture()
    core = f.core
    # 198.51.100.1: first request at T0 (free), then 3 more with 2 ids, the last at T0+10.
    src = ("198.51.100.1", 1)
    for dt, peer_id in ((0, "peer001"), (5, "peer001"), (8, "peer002"), (10, "peer002")):
        resolve(core, core.on_udp(register_pk(peer_id), src, T0 + dt), T0 + dt)
    resolve(core, core.on_udp(register_pk("peer003"), ("198.51.100.2", 1), T0), T0)
    return f


@pytest.mark.parametrize("cmd", ["ib", "ip-blocker"])
async def test_ip_blocker_pages(cmd: str) -> None:
    f = blocker_fixture()
    f.clock.now = T0 + 12.7
    assert await f.run(cmd) == ("2\n198.51.100.1: 3/2s 2/2s\n198.51.100.2: 0/12s 0/12s\n")
    assert await f.run(f"{cmd} 0") == await f.run(cmd)
    assert await f.run(f"{cmd} 1") == "2\n198.51.100.2: 0/12s 0/12s\n"
    assert await f.run(f"{cmd} 5") == "2\n"


@pytest.mark.parametrize("cmd", ["ib", "ip-blocker"])
async def test_ip_blocker_by_ip_and_removal(cmd: str) -> None:
    f = blocker_fixture()
    f.clock.now = T0 + 12.7
    assert await f.run(f"{cmd} 198.51.100.1") == "2\n3/2s 2/2s\n"
    assert await f.run(f"{cmd} 192.0.2.99") == "2\n"
    assert await f.run(f"{cmd} 198.51.100.1 -") == "2\n3/2s 2/2s\n"
    assert await f.run(cmd) == "1\n198.51.100.2: 0/12s 0/12s\n"


async def test_ip_blocker_removal_unblocks_the_ip() -> None:
    f = Fixture()
    src = ("198.51.100.1", 1)
    for i in range(32):
        resolve(f.core, f.core.on_udp(register_pk(f"peer{i:03d}"), src, T0), T0)
    assert f.core.on_udp(register_pk("peerxyz"), src, T0) == [SendUdp(REG_TOO_FREQUENT, src)]
    await f.run("ib 198.51.100.1 -")
    actions = resolve(f.core, f.core.on_udp(register_pk("peerxyz"), src, T0), T0)
    assert actions == [SendUdp(REG_OK, src)]


async def test_ip_blocker_drops_expired_entries_first() -> None:
    f = blocker_fixture()
    f.clock.now = T0 + 10 + 86_400.5  # 198.51.100.2 (last seen at T0) has expired
    assert await f.run("ib") == "1\n198.51.100.1: 3/86400s 2/86400s\n"
    f.clock.now = T0 + 10 + 86_401
    assert await f.run("ib") == "0\n"


# -- ip-changes ------------------------------------------------------------------------------


def changes_fixture() -> Fixture:
    f = Fixture()
    changes = f.core.state.ip_changes
    changes.record("123456789", "192.0.2.1", T0)
    changes.record("123456789", "192.0.2.2", T0 + 1)
    changes.record("123456789", "192.0.2.2", T0 + 2)
    changes.record("1234567", "192.0.2.3", T0 + 5)
    changes.record("1234567", "192.0.2.4", T0 + 5)
    changes.record("single1", "192.0.2.5", T0)
    return f


@pytest.mark.parametrize("cmd", ["ic", "ip-changes"])
async def test_ip_changes_pages_after_pruning_single_ip_entries(cmd: str) -> None:
    f = changes_fixture()
    f.clock.now = T0 + 20.5
    expected = (
        "2\n"
        '123456789: 20s {"192.0.2.1": 1, "192.0.2.2": 2}\n'
        '1234567: 15s {"192.0.2.3": 1, "192.0.2.4": 1}\n'
    )
    assert await f.run(cmd) == expected
    assert await f.run(f"{cmd} 0") == expected
    assert await f.run(f"{cmd} 1") == '2\n1234567: 15s {"192.0.2.3": 1, "192.0.2.4": 1}\n'
    assert "single1" not in f.core.state.ip_changes.entries


@pytest.mark.parametrize("cmd", ["ic", "ip-changes"])
async def test_ip_changes_by_id_and_removal(cmd: str) -> None:
    f = changes_fixture()
    f.clock.now = T0 + 20.5
    assert await f.run(f"{cmd} 123456789") == '2\n20s {"192.0.2.1": 1, "192.0.2.2": 2}\n'
    assert await f.run(f"{cmd} 123456789 -") == '2\n20s {"192.0.2.1": 1, "192.0.2.2": 2}\n'
    assert await f.run(f"{cmd} 123456789") == "1\n"
    # Quirk kept (§9.1): a numeric ID up to 10 000 000 is a page number.
    assert await f.run(f"{cmd} 1234567") == "1\n"
    assert await f.run(f"{cmd} 10000000") == "1\n"


async def test_ip_changes_older_than_360_seconds_are_dropped() -> None:
    f = changes_fixture()
    f.clock.now = T0 + 361
    assert await f.run("ic") == '1\n1234567: 356s {"192.0.2.3": 1, "192.0.2.4": 1}\n'
    f.clock.now = T0 + 366
    assert await f.run("ic") == "0\n"


# -- punch-requests --------------------------------------------------------------------------


def punch_fixture(n: int) -> Fixture:
    f = Fixture()
    for i in range(n):
        f.core.state.punch_log.record(f"10.0.0.{i}", "203.0.113.7", B_ID, T0 + i)
    f.clock.now = T0 + 100
    return f


@pytest.mark.parametrize("cmd", ["pr", "punch-requests"])
async def test_punch_requests_pages_with_rfc3339_times(cmd: str) -> None:
    f = punch_fixture(12)
    out = await f.run(cmd)
    lines = out.splitlines()
    assert len(lines) == 10 and out.endswith("\n")
    # Entry i was recorded 100 - i seconds before "now" (= WALL).
    assert lines[0] == f"2023-12-31T23:58:20Z 10.0.0.0 -> {B_ID}@203.0.113.7"
    assert lines[9] == f"2023-12-31T23:58:29Z 10.0.0.9 -> {B_ID}@203.0.113.7"
    assert await f.run(f"{cmd} 0") == out
    assert await f.run(f"{cmd} 0 0") == out  # page size 0 means 10
    assert await f.run(f"{cmd} 10") == (
        f"2023-12-31T23:58:30Z 10.0.0.10 -> {B_ID}@203.0.113.7\n"
        f"2023-12-31T23:58:31Z 10.0.0.11 -> {B_ID}@203.0.113.7\n"
    )
    assert (await f.run(f"{cmd} 3 2")).splitlines() == [
        f"2023-12-31T23:58:23Z 10.0.0.3 -> {B_ID}@203.0.113.7",
        f"2023-12-31T23:58:24Z 10.0.0.4 -> {B_ID}@203.0.113.7",
    ]
    assert await f.run(f"{cmd} 12") == ""


@pytest.mark.parametrize("cmd", ["pr", "punch-requests"])
async def test_punch_requests_clear(cmd: str) -> None:
    f = punch_fixture(3)
    assert await f.run(f"{cmd} -") == ""
    assert await f.run(cmd) == ""
    assert len(f.core.state.punch_log.entries) == 0


async def test_punch_requests_from_real_punches() -> None:
    f = Fixture()
    bring_online(f.core, T0)
    f.core.on_frame(tcp(("198.51.100.20", 4000)), punch_request(), T0 + 1)
    f.clock.now = T0 + 1
    assert await f.run("pr") == f"2024-01-01T00:00:00Z 198.51.100.20 -> {B_ID}@{B_ADDR[0]}\n"


# -- stats (pyhbb) ---------------------------------------------------------------------------


async def test_stats_lists_table_sizes_and_counters() -> None:
    f = Fixture()
    bring_online(f.core, T0)
    f.clock.now = T0 + 1
    lines = dict(line.split(": ") for line in (await f.run("stats")).splitlines())
    assert lines["peers_in_memory"] == "1"
    assert lines["peers_online"] == "1"
    assert lines["register_pk_stored"] == "1"
    extra = Console(f.core.admin, f.resolve, lambda: {"connections_open": 7})
    assert "connections_open: 7\n" in await f.execute(["stats"], extra)
