"""AddrMangle encoding and try_into_v4, with every vector of docs/protocol.md §14.2 and §4.3."""

from __future__ import annotations

import pytest

from pyhbb.wire import addr_mangle as am

ENCODE_VECTORS = [
    (("192.168.16.32", 21116), 0x10212000, "7c720040422080916360", ("192.168.16.32", 21116)),
    (("203.0.113.7", 50000), 0x10212000, "50e3004042209641242f", ("203.0.113.7", 50000)),
    (("1.2.3.4", 80), 0x12345678, "c856f0ac6824f2b06e2c", ("1.2.3.4", 80)),
    (("255.255.255.255", 65535), 0xFFFFFFFF, "fefffffffffffdffffff03", ("255.255.255.255", 65535)),
    (("10.0.0.1", 443), 0, "bb010000000014000002", ("10.0.0.1", 443)),
    (("0.0.0.0", 21116), 0, "7c52", ("0.0.0.0", 21116)),
    (("0.0.0.0", 0), 0, "", ("0.0.0.0", 0)),
    (("::ffff:198.51.100.20", 40000), 0x00ABCDEF, "2f6adf9b57016a03202a", ("198.51.100.20", 40000)),
    (("2001:db8::1", 8080), 0, "20010db8000000000000000000000001901f", ("2001:db8::1", 8080)),
    (("::1", 21116), 0, "000000000000000000000000000000017c52", ("::1", 21116)),
]


@pytest.mark.parametrize(("addr", "t", "hexed", "decoded"), ENCODE_VECTORS)
def test_encode_vectors(addr: am.Addr, t: int, hexed: str, decoded: am.Addr) -> None:
    enc = am.encode(addr, t)
    assert enc.hex() == hexed
    assert am.decode(enc) == decoded


@pytest.mark.parametrize(
    ("hexed", "decoded"),
    [
        ("", ("0.0.0.0", 0)),
        ("01", ("0.0.0.0", 1)),
        ("00" * 16, ("0.0.0.0", 0)),
        ("00" * 17, ("::", 0)),
        ("00112233445566778899aabbccddeeff0011", ("11:2233:4455:6677:8899:aabb:ccdd:eeff", 4352)),
        ("c0a8010a527c", ("0.251.214.193", 41920)),
        ("00" * 19, ("::", 0)),
    ],
)
def test_decode_edge_cases(hexed: str, decoded: am.Addr) -> None:
    assert am.decode(bytes.fromhex(hexed)) == decoded


@pytest.mark.parametrize("t", [0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_any_time_decodes_the_same(t: int) -> None:
    for addr in [("192.168.16.32", 21116), ("8.8.4.4", 1), ("255.255.255.255", 65535)]:
        assert am.decode(am.encode(addr, t)) == addr


def test_default_time_round_trips() -> None:
    assert am.decode(am.encode(("127.0.0.1", 1234))) == ("127.0.0.1", 1234)


@pytest.mark.parametrize(
    ("ip", "v4"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("::", "0.0.0.0"),
        ("::1", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("1.2.3.4", "1.2.3.4"),
        ("::ffff:0:1.2.3.4", "::ffff:0:1.2.3.4"),
        ("fe80::1%lo", "fe80::1%lo"),
    ],
)
def test_try_into_v4(ip: str, v4: str) -> None:
    assert am.try_into_v4(ip) == v4


def test_normalize_socket_tuples() -> None:
    assert am.normalize(("::ffff:127.0.0.2", 5, 0, 0)) == ("127.0.0.2", 5)
    assert am.normalize(("::1", 7, 0, 0)) == ("::1", 7)
