"""Every hbbr console command and alias with the official output (§9.2)."""

from __future__ import annotations

import pytest

from pyhbb.relay.bandwidth import RelaySettings
from pyhbb.relay.console import COMMANDS, HELP, UsageLine, execute, fmt_number
from pyhbb.relay.lists import IpList


class Target:
    def __init__(self) -> None:
        self._settings = RelaySettings(1024, 128, 32, 66, 1800)
        self._blacklist = IpList()
        self._blocklist = IpList()
        self.total_calls: list[float] = []
        self.lines: list[UsageLine] = []

    @property
    def settings(self) -> RelaySettings:
        return self._settings

    @property
    def blacklist(self) -> IpList:
        return self._blacklist

    @property
    def blocklist(self) -> IpList:
        return self._blocklist

    def set_total_bandwidth(self, mbps: float, now: float) -> None:
        assert now == NOW
        self.total_calls.append(mbps)
        self._settings.total_bandwidth = mbps

    def usage(self) -> list[UsageLine]:
        return self.lines


NOW = 123.0


def run(t: Target, line: str) -> str:
    return execute(line.split(" "), t, NOW)


def test_help() -> None:
    t = Target()
    assert run(t, "h") == HELP
    assert HELP.count("\n") == 12
    assert HELP.startswith("blacklist-add(ba) <ip>\n")
    assert HELP.endswith("single-bandwidth(sb) [value(Mb/s)]\nusage(u)\n")


@pytest.mark.parametrize(
    ("add", "remove", "show", "attr"),
    [
        ("blacklist-add", "blacklist-remove", "blacklist", "blacklist"),
        ("ba", "br", "b", "blacklist"),
        ("blocklist-add", "blocklist-remove", "blocklist", "blocklist"),
        ("Ba", "Br", "B", "blocklist"),
    ],
)
def test_lists(add: str, remove: str, show: str, attr: str) -> None:
    t = Target()
    other = "blocklist" if attr == "blacklist" else "blacklist"
    assert run(t, f"{add} 1.1.1.1|2.2.2.2") == ""
    assert run(t, f"{add} ::ffff:3.3.3.3") == ""
    assert run(t, show) == "1.1.1.1\n2.2.2.2\n3.3.3.3\n"
    assert run(t, f"{show} 2.2.2.2") == "true\n"
    assert run(t, f"{show} ::ffff:1.1.1.1") == "true\n"
    assert run(t, f"{show} 9.9.9.9") == "false\n"
    assert len(getattr(t, other)) == 0
    assert run(t, f"{remove} 1.1.1.1|3.3.3.3") == ""
    assert run(t, show) == "2.2.2.2\n"
    assert run(t, f"{remove} all") == ""
    assert run(t, show) == ""
    assert run(t, add) == "" and run(t, remove) == ""  # no argument: nothing happens


@pytest.mark.parametrize("cmd", ["downgrade-threshold", "dt"])
def test_downgrade_threshold(cmd: str) -> None:
    t = Target()
    assert run(t, cmd) == "0.66\n"
    assert run(t, f"{cmd} 0.5") == ""
    assert run(t, cmd) == "0.5\n"
    assert t.settings.downgrade_threshold_pct == 50
    for bad in ("0", "-1", "x"):
        assert run(t, f"{cmd} {bad}") == ""
    assert run(t, cmd) == "0.5\n"
    run(t, f"{cmd} 2")
    assert run(t, cmd) == "2\n"


@pytest.mark.parametrize("cmd", ["downgrade-start-check", "t"])
def test_downgrade_start_check(cmd: str) -> None:
    t = Target()
    assert run(t, cmd) == "1800s\n"
    assert run(t, f"{cmd} 60") == ""
    assert run(t, cmd) == "60s\n"
    for bad in ("0", "-5", "1.5", "abc"):
        assert run(t, f"{cmd} {bad}") == ""
    assert t.settings.downgrade_start_check == 60


@pytest.mark.parametrize(
    ("cmds", "attr", "default"),
    [
        (("limit-speed", "ls"), "limit_speed", "32Mb/s\n"),
        (("single-bandwidth", "sb"), "single_bandwidth", "128Mb/s\n"),
        (("total-bandwidth", "tb"), "total_bandwidth", "1024Mb/s\n"),
    ],
)
def test_rates(cmds: tuple[str, str], attr: str, default: str) -> None:
    for cmd in cmds:
        t = Target()
        assert run(t, cmd) == default
        assert run(t, f"{cmd} 0.5") == ""
        assert run(t, cmd) == "0.5Mb/s\n"
        assert getattr(t.settings, attr) == 0.5
        for bad in ("0", "-3", "fast"):
            assert run(t, f"{cmd} {bad}") == ""
        assert run(t, cmd) == "0.5Mb/s\n"
        assert t.total_calls == ([0.5] if attr == "total_bandwidth" else [])


@pytest.mark.parametrize("cmd", ["usage", "u"])
def test_usage(cmd: str) -> None:
    t = Target()
    assert run(t, cmd) == ""
    t.lines = [
        UsageLine("1.1.1.1:5", 3000, 8 * 1024 * 1024, 5000, 100),
        UsageLine("[::1]:7", 0, 10**12, 0, 0),  # no full interval yet: not shown
        UsageLine("2.2.2.2:6", 2500, 3 * 8 * 1024 * 1024, 20000, 7),
    ]
    assert run(t, cmd) == (
        "2.2.2.2:6: 2s 3.00MB 20000kb/s 10066kb/s 7kb/s\n"
        "1.1.1.1:5: 3s 1.00MB 5000kb/s 2796kb/s 100kb/s\n"
    )


def test_unknown_and_empty() -> None:
    t = Target()
    assert run(t, "nonsense") == ""
    assert run(t, "") == ""
    assert execute([], t, NOW) == ""
    assert run(t, "blacklist-frobnicate 1.1.1.1") == ""


def test_command_words_for_the_gate() -> None:
    for word in ("h", "ba", "br", "b", "Ba", "Br", "B", "dt", "t", "ls", "tb", "sb", "u"):
        assert word in COMMANDS
    assert "blocklist-add" in COMMANDS and "usage" in COMMANDS


def test_fmt_number() -> None:
    assert fmt_number(32.0) == "32"
    assert fmt_number(0.5) == "0.5"
    assert fmt_number(1e-7) == "0.0000001"
    assert fmt_number(0.66) == "0.66"
