"""Restart in place: what one hbbs hands to the next (pure code: bytes in, bytes out).

On SIGUSR2 hbbs execs itself (adapters/restart.py). Its listening sockets survive the
exec, named in one environment variable (:func:`encode_fds` / :func:`decode_fds`), and
its peer table is written to a snapshot file (:func:`encode_snapshot` /
:func:`decode_snapshot`), so the new process answers every known peer's next heartbeat
at once instead of asking for its key again.

Snapshot layout (little-endian)::

    header   magic (8) | version u16 | flags u16 | written_at f64 | clock f64
             | count u32 | ids_size u32 | records_size u32
    ids      the ids, UTF-8, joined by "\n" (ids hold no control character)
    lengths  count × u16: each record's length
    records  the compact records (peer_registry.py), one after the other
    trailer  CRC-32 u32 of everything before it

Each record keeps its ``last_reg`` on the writer's clock, which read ``clock`` at
``written_at`` (wall clock): ``clock - last_reg`` is the record's age, so the reader
rebuilds ``last_reg`` on its own clock. When both clocks are the same (asyncio and uvloop
both read CLOCK_MONOTONIC, shared by every process of one boot) the records are used as
they are: a million are taken over with C-level operations only (~0.3 s), where
rewriting each one's time in Python took seconds, all of them a gap in service.

The file is ours, written a moment earlier, but it is read as hostile input all the
same: every count, length, id and address is checked, and any mismatch rejects the whole
file (the warm start from the database then takes over).
"""

from __future__ import annotations

import math
import re
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, gt, sub

from pyhbb.rendezvous.peer_registry import MAX_PK_BYTES, canonical_ip
from pyhbb.rendezvous.state import MAX_ID_BYTES

MAGIC = b"PYHBBHO\x00"
VERSION = 1
FLAG_COMPLETE = 1
"""The old process's table held everything its warm start would have read (the warm
start had finished): the next one needs no warm start at all."""
MAX_AGE = 60.0
"""A snapshot older than this is stale: the peers it lists may have moved meanwhile."""
SAME_CLOCK = 0.5
"""Clocks that differ by less than this (seconds) count as the same: an age off by half
a second moves a peer's 30 s online window by as much, which no client notices."""
MAX_IP_TEXT = 45  # the longest IPv6 text (IPv4-mapped form included)
MIN_RECORD = 1 + 8  # key length byte and time: a record without key nor address
MAX_RECORD = 1 + MAX_PK_BYTES + 8 + 2 + MAX_IP_TEXT
MAX_ENTRY = MAX_ID_BYTES + 1 + 2 + MAX_RECORD

_HEADER = struct.Struct("<8sHHddIII")
_TRAILER = struct.Struct("<I")
_F64 = struct.Struct("<d")
_ID_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
"""Control characters other than the separator: no valid id holds one (registration.py)."""
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = rb"\.".join([_OCTET] * 4)
_IS_V4 = re.compile(_V4).fullmatch
"""Canonical dotted IPv4 (what the socket layer gives)."""
_OCTETS = frozenset(str(n).encode() for n in range(256))
"""Every octet as canonical dotted IPv4 writes it (no leading zero)."""

ENV_VAR = "PYHBB_HANDOVER"
"""Names the inherited sockets and when the old process stopped reading."""
SOCKET_ROLES = ("udp", "tcp", "nat", "ws")
"""UDP and TCP on port P, TCP P-1 (NAT test, online status), WebSocket P+2."""
MAX_FD = 1 << 20


class SnapshotError(ValueError):
    """The snapshot cannot be used; the message says why (for the one log line)."""


class HandoverEnvError(ValueError):
    """The environment variable is malformed; the message says how."""


def max_snapshot_bytes(max_records: int) -> int:
    """The largest file a table of ``max_records`` can make: read no more than this."""
    return _HEADER.size + max_records * MAX_ENTRY + _TRAILER.size


def _u16_le(values: array[int]) -> bytes:
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def encode_snapshot(
    ids: Sequence[str],
    records: Sequence[bytes],
    clock: float,
    written_at: float,
    complete: bool,
) -> bytes:
    """The snapshot of the compact ``records`` of ``ids`` (same order), whose
    ``last_reg`` is on a clock reading ``clock`` now; ``written_at`` is the wall clock."""
    if len(ids) != len(records):
        raise ValueError("one record per id")
    id_bytes = "\n".join(ids).encode()
    lengths = _u16_le(array("H", map(len, records)))
    body = b"".join(records)
    flags = FLAG_COMPLETE if complete else 0
    header = _HEADER.pack(
        MAGIC, VERSION, flags, written_at, clock, len(ids), len(id_bytes), len(body)
    )
    data = b"".join((header, id_bytes, lengths, body))
    return data + _TRAILER.pack(zlib.crc32(data))


@dataclass
class Snapshot:
    records: dict[str, bytes]
    """id → compact record, ``last_reg`` on the reader's clock."""
    complete: bool
    """See :data:`FLAG_COMPLETE`."""
    age: float
    """Seconds between writing and reading (wall clock)."""


def decode_snapshot(
    data: bytes, clock: float, wall_now: float, max_records: int, max_age: float = MAX_AGE
) -> Snapshot:
    """Parse and check a snapshot read when the reader's clock reads ``clock`` and the
    wall clock ``wall_now``. Raises :class:`SnapshotError` saying what is wrong."""
    if len(data) < _HEADER.size + _TRAILER.size:
        raise SnapshotError(f"too short ({len(data)} bytes)")
    magic, version, flags, written_at, their_clock, count, ids_size, body_size = (
        _HEADER.unpack_from(data)
    )
    if magic != MAGIC:
        raise SnapshotError("not a pyhbb hand-over snapshot (wrong magic)")
    if version != VERSION:
        raise SnapshotError(f"version {version}, this hbbs reads version {VERSION}")
    if flags & ~FLAG_COMPLETE:
        raise SnapshotError(f"unknown flags {flags:#x}")
    if not (math.isfinite(written_at) and math.isfinite(their_clock)):
        raise SnapshotError("bad timestamp")
    age = wall_now - written_at
    if age > max_age:
        raise SnapshotError(f"stale: written {age:.0f} s ago (limit {max_age:.0f} s)")
    age = max(0.0, age)  # a clock step backwards: count no time as passed
    if count > max_records:
        raise SnapshotError(f"{count} records, more than the table's limit {max_records}")
    end = len(data) - _TRAILER.size
    if _HEADER.size + ids_size + 2 * count + body_size != end:
        raise SnapshotError("sizes in the header do not match the file's size")
    if zlib.crc32(memoryview(data)[:end]) != _TRAILER.unpack_from(data, end)[0]:
        raise SnapshotError("checksum mismatch (truncated or damaged)")
    pos = _HEADER.size
    ids = _ids(data[pos : pos + ids_size], count)
    pos += ids_size
    lengths = array("H", data[pos : pos + 2 * count])
    if sys.byteorder == "big":
        lengths.byteswap()
    pos += 2 * count
    records = _records(data[pos:end], lengths)
    # how far the reader's clock is ahead of the writer's, for the same instant
    shift = (clock - age) - their_clock
    if abs(shift) >= SAME_CLOCK:
        records = _shifted(records, shift)
    table = dict(zip(ids, records, strict=True))
    if len(table) != count:
        raise SnapshotError("an id appears twice")
    return Snapshot(table, bool(flags & FLAG_COMPLETE), age)


def _ids(raw: bytes, count: int) -> list[str]:
    if count == 0:
        if raw:
            raise SnapshotError("ids without records")
        return []
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise SnapshotError("ids are not UTF-8") from None
    if _ID_FORBIDDEN.search(text):
        raise SnapshotError("an id holds a control character")
    ids = text.split("\n")
    if len(ids) != count:
        raise SnapshotError(f"{len(ids)} ids for {count} records")
    if "" in ids:
        raise SnapshotError("an empty id")
    # a character is at most 4 bytes: only ids that long can exceed MAX_ID_BYTES
    if max(map(len, ids)) * 4 > MAX_ID_BYTES:
        for peer_id in ids:
            if len(peer_id) * 4 > MAX_ID_BYTES and len(peer_id.encode()) > MAX_ID_BYTES:
                raise SnapshotError(f"an id longer than {MAX_ID_BYTES} bytes")
    return ids


def _records(body: bytes, lengths: array[int]) -> list[bytes]:
    """The records cut from ``body``, each checked: a key that fits, a time that is a
    finite number, no address or a port and canonical IP text. Every step is a C-level
    pass (map, join, one regular expression over all addresses) except for the few
    records that are not IPv4: a million take a fraction of a second, not seconds."""
    if lengths and (min(lengths) < MIN_RECORD or max(lengths) > MAX_RECORD):
        raise SnapshotError("a record of impossible length")
    if sum(lengths) != len(body):
        raise SnapshotError("record lengths do not add up to the records' size")
    ends = list(accumulate(lengths))
    starts = [0, *ends[:-1]] if ends else []
    records = list(map(body.__getitem__, map(slice, starts, ends)))
    # where each record's time and address begin: after its key (length byte first)
    times = list(map(add, starts, map(body.__getitem__, starts)))
    times = list(map(add, times, repeat(1, len(times))))
    addrs = list(map(add, times, repeat(8, len(times))))
    if any(map(gt, addrs, ends)):
        raise SnapshotError("a malformed record (key longer than the record)")
    addr_sizes = set(map(sub, ends, addrs))
    if addr_sizes & {1, 2}:
        raise SnapshotError("a malformed record (port without IP)")
    stamps = array("d", b"".join(map(body.__getitem__, map(slice, times, addrs))))
    if sys.byteorder == "big":
        stamps.byteswap()
    if not all(map(math.isfinite, stamps)):
        raise SnapshotError("a malformed record (time not a number)")
    ips = list(map(body.__getitem__, map(slice, map(add, addrs, repeat(2, len(addrs))), ends)))
    if not _all_v4_or_empty(ips):  # IPv6 somewhere, or an error
        for ip in ips:
            if ip and not _IS_V4(ip) and not _canonical_text(ip):
                raise SnapshotError("a malformed record (bad address)")
    return records


def _all_v4_or_empty(ips: list[bytes]) -> bool:
    """Whether every IP text is canonical dotted IPv4 or empty, in C-level passes over
    all of them (a regular expression over a million addresses took ~2 s)."""
    joined = b"\n".join(ips)
    if joined.translate(None, b"0123456789.\n") or joined.count(b"\n") != len(ips) - 1:
        return False  # another character (IPv6), or a newline inside an address
    dots = list(map(bytes.count, ips, repeat(b".")))
    if not set(dots) <= {0, 3} or dots.count(0) != ips.count(b""):
        return False  # each address has three dots, and only "no address" has none
    octets = joined.replace(b"\n", b".").split(b".")
    # an empty octet is allowed only as the one an empty line leaves
    return octets.count(b"") == ips.count(b"") and _OCTETS.issuperset(octets)


def _canonical_text(ip: bytes) -> bool:
    if len(ip) > MAX_IP_TEXT or b"\n" in ip:
        return False
    try:
        text = ip.decode("ascii")
    except UnicodeDecodeError:
        return False
    return canonical_ip(text) == text


def _shifted(records: list[bytes], shift: float) -> list[bytes]:
    """The records with ``last_reg`` moved onto the reader's clock."""
    unpack, pack = _F64.unpack_from, _F64.pack
    out = []
    for record in records:
        cut = 1 + record[0]
        last_reg = unpack(record, cut)[0] + shift
        out.append(record[:cut] + pack(last_reg) + record[cut + 8 :])
    return out


def encode_fds(fds: dict[str, int], paused_at: float) -> str:
    """The environment value naming the inherited sockets, e.g.
    ``udp=5,tcp=6,nat=7,ws=8,paused=1764620000.123``."""
    parts = [f"{role}={fds[role]}" for role in SOCKET_ROLES]
    return ",".join([*parts, f"paused={paused_at!r}"])


def decode_fds(value: str) -> tuple[dict[str, int], float]:
    """The sockets and pause time :func:`encode_fds` wrote; raises
    :class:`HandoverEnvError` unless every role appears once with a distinct fd."""
    if len(value) > 200:
        raise HandoverEnvError("too long")
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, text = part.partition("=")
        if not sep or name in fields:
            raise HandoverEnvError(f"bad or repeated field {part!r}")
        fields[name] = text
    if set(fields) != {*SOCKET_ROLES, "paused"}:
        raise HandoverEnvError(f"expected the fields {', '.join(SOCKET_ROLES)}, paused")
    fds: dict[str, int] = {}
    for role in SOCKET_ROLES:
        text = fields[role]
        if not text.isdigit() or not 3 <= int(text) < MAX_FD:
            raise HandoverEnvError(f"{role}: {text!r} is no descriptor number")
        fds[role] = int(text)
    if len(set(fds.values())) != len(fds):
        raise HandoverEnvError("a descriptor is named twice")
    try:
        paused_at = float(fields["paused"])
    except ValueError:
        raise HandoverEnvError(f"paused: {fields['paused']!r} is no time") from None
    if not math.isfinite(paused_at):
        raise HandoverEnvError("paused: not a finite time")
    return fds, paused_at
