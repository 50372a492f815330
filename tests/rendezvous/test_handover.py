"""The restart-in-place formats (rendezvous/handover.py): the peer snapshot and the
environment variable naming the inherited sockets; every malformed input is refused with
a reason, never half-read."""

from __future__ import annotations

import math
import struct
import zlib

import pytest

from pyhbb.rendezvous.handover import (
    MAX_AGE,
    HandoverEnvError,
    SnapshotError,
    decode_fds,
    decode_snapshot,
    encode_fds,
    encode_snapshot,
    max_snapshot_bytes,
)
from pyhbb.rendezvous.peer_registry import (
    EXPIRED,
    PeerRecord,
    PeerRegistry,
    addr_key,
    last_reg_of,
)

WALL = 1_764_600_000.0
PK = bytes(range(32))


def record(pk: bytes = PK, last_reg: float = 990.0, addr: bytes = b"") -> bytes:
    return bytes((len(pk),)) + pk + struct.pack("<d", last_reg) + addr


RECORDS = {
    "123456789": record(addr=addr_key(("203.0.113.7", 40001))),
    "ipv6-peer": record(last_reg=980.0, addr=addr_key(("2001:db8::1", 21116))),
    "ip-only": record(last_reg=EXPIRED, addr=addr_key(("198.51.100.1", 0))),
    "no-key": record(pk=b"", addr=addr_key(("192.0.2.1", 5))),
    "no-address": record(),
    "ünïcode-id": record(addr=addr_key(("10.0.0.1", 1))),
}


def snapshot(
    records: dict[str, bytes] = RECORDS, clock: float = 1000.0, complete: bool = True
) -> bytes:
    return encode_snapshot(list(records), list(records.values()), clock, WALL, complete)


def resign(data: bytes) -> bytes:
    """``data`` with a valid checksum again (to reach the checks behind it)."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_same_clock_gives_the_records_back_unchanged() -> None:
    # the reader's clock went on as the wall clock did: 2 s later on both
    decoded = decode_snapshot(snapshot(), 1002.0, WALL + 2, 100)
    assert decoded.records == RECORDS
    assert decoded.complete is True and decoded.age == 2.0


def test_another_clock_keeps_each_records_age() -> None:
    # a reader whose clock started elsewhere, 3 s of wall time after the writing
    decoded = decode_snapshot(snapshot(), 50.0, WALL + 3, 100)
    for peer_id, original in RECORDS.items():
        got = decoded.records[peer_id]
        age_then = 1000.0 - last_reg_of(original)
        assert got[: 1 + got[0]] == original[: 1 + original[0]]  # key unchanged
        assert got[9 + got[0] :] == original[9 + original[0] :]  # address unchanged
        if last_reg_of(original) == EXPIRED:
            assert 50.0 - last_reg_of(got) > 1e17  # still long offline
        else:
            assert last_reg_of(got) == pytest.approx(50.0 - 3.0 - age_then)
    # a peer online when written (10 s old) is online after 3 s more; in a real table too
    table = PeerRegistry()
    table.add_compact(decoded.records)
    assert table.online("123456789", 50.0) and not table.online("ip-only", 50.0)
    assert table.get("ipv6-peer").addr == ("2001:db8::1", 21116)  # type: ignore[union-attr]


def test_the_complete_flag_and_an_empty_table() -> None:
    assert decode_snapshot(snapshot(complete=False), 1000.0, WALL, 10).complete is False
    empty = decode_snapshot(snapshot({}), 1000.0, WALL, 10)
    assert empty.records == {} and empty.complete is True


def test_the_registry_hands_over_objects_as_their_compact_records() -> None:
    table = PeerRegistry()
    table.add_compact(dict(RECORDS))
    held = table.get("123456789")  # now an object in the table
    assert isinstance(held, PeerRecord)
    held.last_reg = 995.0
    ids, records = table.compact_records()
    handed = dict(zip(ids, records, strict=True))  # table order: the shards' (shards.py)
    assert len(ids) == len(handed) == len(RECORDS)
    assert handed["123456789"] == held.blob and last_reg_of(handed["123456789"]) == 995.0
    assert {k: v for k, v in handed.items() if k != "123456789"} == {
        k: v for k, v in RECORDS.items() if k != "123456789"
    }
    with pytest.raises(ValueError, match="empty table"):
        table.add_compact({"x": record()})


def test_size_bound_covers_the_largest_records() -> None:
    big = {"i" * 100: record(pk=b"k" * 255, addr=addr_key(("1:2:3:4:5:6:7:8", 9)))}
    assert len(snapshot(big)) <= max_snapshot_bytes(1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"NOTASNAP" + snapshot()[8:], "wrong magic"),
        (snapshot()[:8] + struct.pack("<H", 2) + snapshot()[10:], "version 2"),
        (snapshot()[:10] + struct.pack("<H", 6) + snapshot()[12:], "unknown flags"),
        (snapshot()[:-1], "do not match"),
        (snapshot()[:-5] + bytes([snapshot()[-5] ^ 1]) + snapshot()[-4:], "checksum"),
        (resign(snapshot() + b"\0"), "do not match"),
    ],
)
def test_damaged_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode_snapshot(data, 1000.0, WALL, 100)


def test_a_stale_snapshot_is_refused() -> None:
    with pytest.raises(SnapshotError, match="stale"):
        decode_snapshot(snapshot(), 1000.0, WALL + MAX_AGE + 1, 100)
    # a wall clock stepped back counts as no time passed, not as a negative age
    assert decode_snapshot(snapshot(), 1000.0, WALL - 5, 100).age == 0.0


def test_more_records_than_the_table_holds_are_refused() -> None:
    with pytest.raises(SnapshotError, match="more than the table's limit 5"):
        decode_snapshot(snapshot(), 1000.0, WALL, 5)


def test_a_bad_timestamp_is_refused() -> None:
    data = encode_snapshot(["a"], [record()], 1000.0, math.nan, True)
    with pytest.raises(SnapshotError, match="bad timestamp"):
        decode_snapshot(data, 1000.0, WALL, 10)


@pytest.mark.parametrize(
    ("ids", "records", "reason"),
    [
        (["a", "a"], [record(), record()], "twice"),
        (["a\x01"], [record()], "control character"),
        (["a\tb"], [record()], "control character"),
        (["a\nb"], [record()], "2 ids for 1 records"),
        ([""], [record()], "empty id"),
        (["x" * 101], [record()], "longer than 100 bytes"),
        (["é" * 51], [record()], "longer than 100 bytes"),
        (["a"], [b"\x20"], "impossible length"),
        (["a"], [b"\x20" + PK], "malformed"),  # no room for the time
        (["a"], [b"\x20" + PK + b"\0" * 7 + b"12345678"], "malformed"),  # key over time
        (["a"], [record() + b"\x00"], "malformed"),  # a port cut short
        (["a"], [record() + b"\x00\x01"], "malformed"),  # a port and no IP
        (["a"], [record(addr=b"\x00\x01127.000.0.1")], "malformed"),  # not canonical
        (["a"], [record(addr=b"\x00\x01::FFFF:1.2.3.4")], "malformed"),
        (["a"], [record(addr=b"\x00\x01\xff\xfe")], "malformed"),
        (["a"], [record(addr=b"\x00\x01host.example")], "malformed"),
        (["a"], [record(addr=b"\x00\x011.2.3.4\n5.6.7.8")], "malformed"),
        (["a"], [record(last_reg=math.inf)], "time not a number"),
        (["a"], [record(last_reg=math.nan)], "time not a number"),
        (["a"], [record(pk=b"k" * 255, addr=b"\x00\x01" + b"1" * 46)], "impossible length"),
    ],
)
def test_bad_records_are_refused(ids: list[str], records: list[bytes], reason: str) -> None:
    data = encode_snapshot(ids, records, 1000.0, WALL, True)
    with pytest.raises(SnapshotError, match=reason):
        decode_snapshot(data, 1000.0, WALL, 10)


def test_ids_without_records_are_refused() -> None:
    data = bytearray(snapshot({}))
    # claim 1 byte of ids in an otherwise empty snapshot, and supply it
    struct.pack_into("<I", data, 32, 1)
    data = data[:-4] + b"x" + data[-4:]
    with pytest.raises(SnapshotError, match="ids without records"):
        decode_snapshot(resign(bytes(data)), 1000.0, WALL, 10)


def test_lengths_that_do_not_add_up_are_refused() -> None:
    data = bytearray(snapshot({"a": record(), "b": record()}))
    lengths_at = 40 + len(b"a\nb")
    struct.pack_into("<HH", data, lengths_at, 9 + 32 + 1, 9 + 32 - 1)  # same total
    with pytest.raises(SnapshotError, match="malformed"):
        decode_snapshot(resign(bytes(data)), 1000.0, WALL, 10)
    struct.pack_into("<HH", data, lengths_at, 9 + 32, 9 + 32 + 1)
    with pytest.raises(SnapshotError, match="do not add up"):
        decode_snapshot(resign(bytes(data)), 1000.0, WALL, 10)


def test_fds_round_trip() -> None:
    value = encode_fds({"udp": 5, "tcp": 6, "nat": 7, "ws": 8}, WALL + 0.125)
    assert decode_fds(value) == ({"udp": 5, "tcp": 6, "nat": 7, "ws": 8}, WALL + 0.125)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("udp=5,tcp=6,nat=7,paused=1.0", "expected the fields"),
        ("udp=5,tcp=6,nat=7,ws=8,paused=1.0,extra=1", "expected the fields"),
        ("udp=5,tcp=6,nat=7,ws=8,ws=9,paused=1.0", "repeated"),
        ("udp=5,tcp=6,nat=7,ws8,paused=1.0", "bad or repeated"),
        ("udp=5,tcp=5,nat=7,ws=8,paused=1.0", "named twice"),
        ("udp=2,tcp=6,nat=7,ws=8,paused=1.0", "no descriptor"),
        ("udp=-5,tcp=6,nat=7,ws=8,paused=1.0", "no descriptor"),
        ("udp=99999999,tcp=6,nat=7,ws=8,paused=1.0", "no descriptor"),
        ("udp=5,tcp=6,nat=7,ws=8,paused=soon", "no time"),
        ("udp=5,tcp=6,nat=7,ws=8,paused=inf", "finite"),
        ("udp=5," * 50, "too long"),
    ],
)
def test_bad_fds_are_refused(value: str, reason: str) -> None:
    with pytest.raises(HandoverEnvError, match=reason):
        decode_fds(value)
