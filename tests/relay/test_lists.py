"""blacklist.txt / blocklist.txt parsing and matching (§8.5, §13)."""

from __future__ import annotations

from pathlib import Path

from pyhbb.relay.list_files import read_ip_list
from pyhbb.relay.lists import IpList, normalize_ip


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("1.2.3.4\n  5.6.7.8 comment here\n\n::ffff:9.9.9.9\n2001:DB8::1 x\n")
    lst = read_ip_list(path)
    assert list(lst) == ["1.2.3.4", "5.6.7.8", "9.9.9.9", "2001:db8::1"]


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert len(read_ip_list(tmp_path / "nope.txt")) == 0


def test_mapped_addresses_match_ipv4_entries() -> None:
    lst = IpList(["1.2.3.4"])
    assert "1.2.3.4" in lst
    assert "::ffff:1.2.3.4" in lst
    assert "1.2.3.5" not in lst
    v6 = IpList(["2001:db8::1"])
    assert "2001:0db8:0:0::1" in v6


def test_add_remove_clear() -> None:
    lst = IpList()
    lst.add(["1.1.1.1", "2.2.2.2", "1.1.1.1"])
    assert list(lst) == ["1.1.1.1", "2.2.2.2"]
    lst.remove(["::ffff:1.1.1.1", "3.3.3.3"])
    assert list(lst) == ["2.2.2.2"]
    lst.clear()
    assert len(lst) == 0


def test_non_ip_text_is_kept_verbatim() -> None:
    assert normalize_ip(" host.example ") == "host.example"
    assert "host.example" in IpList(["host.example"])
