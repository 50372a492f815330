"""Peer addresses inside messages (docs/protocol.md §4).

IPv4 addresses use RustDesk's time-mixed "AddrMangle" form (variable length, at most 16
bytes); IPv6 addresses use 16 address bytes plus a little-endian port (18 bytes). Inside
pyhbb an address is ``(ip_text, port)`` with IPv4-mapped IPv6 normalised to plain IPv4
once, at ingress (:func:`normalize`), so comparisons and table keys never see both forms.
"""

from __future__ import annotations

import socket
import time

Addr = tuple[str, int]

_MASK32 = 0xFFFFFFFF
_V4_PREFIX_ZERO = bytes(10)


def try_into_v4(ip: str) -> str:
    """Return the IPv4 text of an IPv4-mapped/-compatible IPv6 address, else ``ip``.

    Mirrors upstream ``try_into_v4``: ``::1`` stays IPv6; ``::`` becomes ``0.0.0.0``.
    """
    if ":" not in ip:
        return ip
    if ip.startswith("::ffff:") and "." in ip and ":" not in ip[7:]:
        return ip[7:]  # the common dual-stack form, skip the parse
    if ip == "::1":
        return ip
    try:
        raw = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except OSError:
        return ip
    if raw[:10] == _V4_PREFIX_ZERO and raw[10:12] in (b"\xff\xff", b"\x00\x00"):
        return socket.inet_ntop(socket.AF_INET, raw[12:])
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
        return socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0]) + port.to_bytes(2, "little")
    if t is None:
        t = now_t()
    value_ip = int.from_bytes(socket.inet_aton(ip), "little")
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
        return socket.inet_ntoa(ip_value.to_bytes(4, "little")), port
    if n == 18:
        return socket.inet_ntop(socket.AF_INET6, data[:16]), int.from_bytes(data[16:], "little")
    return "::", 0
