"""host[:port] text helpers: parsing with IPv6 brackets and default ports, lists, formatting."""

from __future__ import annotations

import pytest

from pyhbb.net.hostport import (
    format_addr,
    host_of,
    is_loopback,
    parse_host_port,
    split_host_port,
    split_list,
)


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (("192.0.2.1", 21116), "192.0.2.1:21116"),
        (("2001:db8::1", 21116), "[2001:db8::1]:21116"),
        (("::1", 0), "[::1]:0"),
        (("relay.example.com", 21117), "relay.example.com:21117"),
    ],
)
def test_format_addr(addr: tuple[str, int], text: str) -> None:
    assert format_addr(addr) == text


def test_format_addr_round_trips_through_the_parser() -> None:
    for addr in (("192.0.2.1", 1), ("2001:db8::1", 65535), ("fe80::1%eth0", 80)):
        assert parse_host_port(format_addr(addr), 9) == addr


def test_split_list() -> None:
    assert split_list("") == []
    assert split_list(" a , b,,c ,") == ["a", "b", "c"]
    assert split_list(" , ") == []


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("host", ("host", None)),
        ("host:21117", ("host", "21117")),
        ("host:", ("host", "")),
        ("[2001:db8::1]:21117", ("2001:db8::1", "21117")),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),  # bare IPv6: no port
        ("::1", ("::1", None)),
        ("1.2.3.4:x", ("1.2.3.4", "x")),
    ],
)
def test_split_host_port(text: str, split: tuple[str, str | None]) -> None:
    assert split_host_port(text) == split
    assert host_of(text) == split[0]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("relay.example.com", ("relay.example.com", 21117)),
        ("relay.example.com:1", ("relay.example.com", 1)),
        ("10.0.0.5:65535", ("10.0.0.5", 65535)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", 21117)),
        ("2001:db8::1", ("2001:db8::1", 21117)),
        (" host:80 ", ("host", 80)),
    ],
)
def test_parse_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(text, 21117) == parsed


@pytest.mark.parametrize("text", ["host:", "host:x", "host:0", "host:65536", "h:²", ":80", "[]:80"])
def test_parse_host_port_refuses_with_the_text_in_the_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|host") as e:
        parse_host_port(text, 21117)
    assert repr(text.strip()) in str(e.value)


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("10.0.0.1", False), ("::2", False)],
)
def test_is_loopback(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback
