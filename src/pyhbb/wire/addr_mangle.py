"""Peer addresses inside messages (docs/protocol.md §4).

IPv4 addresses use RustDesk's time-mixed "AddrMangle" form (variable length, at most 16
bytes); IPv6 addresses use 16 address bytes plus a little-endian port (18 bytes). Inside
pyhbb an address is ``(ip_text, port)`` with IPv4-mapped IPv6 normalised to plain IPv4
once, at ingress (:func:`normalize`), so comparisons and table keys never see both forms.

Pure code (no ``socket`` module), so that the protocol cores may use it; the text of an
address is converted here with the same results as ``inet_pton``/``inet_ntop``.
"""

from __future__ import annotations

import ipaddress
import itertools
import time

Addr = tuple[str, int]

_MASK32 = 0xFFFFFFFF
_V4_PREFIX_ZERO = bytes(10)
_MAPPED = b"\xff\xff"
_OCTETS = {str(i): i for i in range(256)}  # canonical decimal only, as inet_pton
_FOUR = itertools.repeat(4)


def ip_to_bytes(ip: str) -> bytes:
    """4 bytes for IPv4 text, 16 for IPv6 (a ``%scope`` suffix is ignored); ValueError for
    anything else. Hand-written for speed: it is on the path of every heartbeat."""
    if ":" not in ip:
        octets = _OCTETS
        try:
            a, b, c, d = ip.split(".")
            return bytes((octets[a], octets[b], octets[c], octets[d]))
        except (ValueError, KeyError):  # not 4 parts, or a part that is no octet
            raise ValueError(f"not an IP address: {ip!r}") from None
    ip = ip.split("%", 1)[0]
    if "." in ip:  # an IPv4 tail (::ffff:1.2.3.4): rare, let the library parse it
        return ipaddress.IPv6Address(ip).packed
    head, double, tail = ip.partition("::")
    groups = head.split(":") if head else []
    if double:
        rest = tail.split(":") if tail else []
        fill = 8 - len(groups) - len(rest)
        if fill < 1:
            raise ValueError(f"not an IP address: {ip!r}")
        groups += ["0"] * fill
        groups += rest
    if len(groups) == 8 and "" not in groups:
        digits = "".join(map(str.zfill, groups, _FOUR))  # a longer group makes it > 32
        # isalnum() rules out the whitespace and signs fromhex() and zfill() would accept;
        # fromhex() refuses the other non-hex characters.
        if len(digits) == 32 and digits.isalnum():
            try:
                return bytes.fromhex(digits)
            except ValueError:
                pass
    raise ValueError(f"not an IP address: {ip!r}")


def ip_from_bytes(raw: bytes) -> str:
    """The text of a 4- or 16-byte address, as ``inet_ntop`` writes it (IPv4-mapped and
    IPv4-compatible addresses with a dotted tail)."""
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    if len(raw) != 16:
        raise ValueError(f"not an IP address: {len(raw)} bytes")
    if raw[:10] == _V4_PREFIX_ZERO:
        if raw[10:12] == _MAPPED:
            return "::ffff:" + ip_from_bytes(raw[12:])
        if raw[10:12] == b"\0\0" and raw[12:14] != b"\0\0":  # inet_ntop's rule for ::a.b.c.d
            return "::" + ip_from_bytes(raw[12:])
    return str(ipaddress.IPv6Address(raw))


def try_into_v4(ip: str) -> str:
    """Return the IPv4 text of an IPv4-mapped/-compatible IPv6 address, else ``ip``.

    Mirrors upstream ``try_into_v4``: ``::1`` stays IPv6; ``::`` becomes ``0.0.0.0``.
    """
    if ":" not in ip:
        return ip
    if ip.startswith("::ffff:") and "." in ip and ":" not in ip[7:]:
        return ip[7:]  # the common dual-stack form, skip the parse
    if ip == "::1" or not ip.startswith((":", "0")):
        return ip  # a zero first group is written "::…", "0:…" or "00…"; real clients are not
    try:
        raw = ip_to_bytes(ip)
    except ValueError:
        return ip
    if raw[:10] == _V4_PREFIX_ZERO and raw[10:12] in (_MAPPED, b"\x00\x00"):
        return ip_from_bytes(raw[12:])
    return ip


def normalize(sockaddr: tuple[object, ...]) -> Addr:
    """Turn a socket-module address (2- or 4-tuple) into a normalised ``(ip, port)``."""
    host = sockaddr[0]
    port = sockaddr[1]
    assert isinstance(host, str) and isinstance(port, int)
    return try_into_v4(host), port


def now_t() -> int:
    """The 32-bit microsecond timestamp the official encoder mixes in."""
    return time.time_ns() // 1000 & _MASK32


def encode(addr: Addr, t: int | None = None) -> bytes:
    """Encode ``addr`` for a ``socket_addr``-style field.

    IPv4 (and IPv4-mapped) addresses get the time-mixed form with 32-bit time ``t``
    (default: now); other IPv6 addresses get the 18-byte form.
    """
    ip, port = addr
    ip = try_into_v4(ip)
    if ":" in ip:
        return ip_to_bytes(ip) + port.to_bytes(2, "little")
    if t is None:
        t = now_t()
    value_ip = int.from_bytes(ip_to_bytes(ip), "little")
    value = ((value_ip + t) << 49) | (t << 17) | (port + (t & 0xFFFF))
    raw = value.to_bytes(16, "little")
    return raw.rstrip(b"\x00")


def decode(data: bytes) -> Addr:
    """Decode a ``socket_addr``-style field exactly as RustDesk clients do.

    Lengths 0-16 are the IPv4 form, 18 the IPv6 form; any other length decodes to the
    unspecified IPv6 address with port 0 (never an error: clients never reject).
    """
    n = len(data)
    if n <= 16:
        value = int.from_bytes(data, "little")
        t = (value >> 17) & _MASK32
        ip_value = ((value >> 49) - t) & _MASK32
        port = ((value & 0xFFFFFF) - (t & 0xFFFF)) & 0xFFFF
        return ip_from_bytes(ip_value.to_bytes(4, "little")), port
    if n == 18:
        return ip_from_bytes(data[:16]), int.from_bytes(data[16:], "little")
    return "::", 0
