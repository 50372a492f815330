"""Host, port and address text: ``host[:port]`` parsing, comma lists, log formatting.

Pure string work, shared by the servers, their configuration and ``pyhbb check``: no name
resolution and no sockets, so the protocol cores may use it. IPv6 hosts are written in
brackets when a port follows (``[2001:db8::1]:21116``); a bare IPv6 address (two or more
colons, no brackets) is a host without a port.
"""

from __future__ import annotations

MAX_PORT = 65535


def format_addr(addr: tuple[str, int]) -> str:
    """``(ip, port)`` as logs and URLs write it: ``[v6]:port`` or ``v4:port``."""
    ip, port = addr
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_list(text: str) -> list[str]:
    """A comma-separated option value: entries trimmed, empty entries dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


def split_host_port(text: str) -> tuple[str, str | None]:
    """``host[:port]`` → (host, port text or ``None``), without checking either part."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def host_of(text: str) -> str:
    """The host part of ``host[:port]`` (brackets removed from an IPv6 address)."""
    return split_host_port(text)[0]


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` → (host, port), ``default_port`` when none is given.

    Raises ValueError with a message naming the bad text when the port is not a number
    in 1-65535 or the host is empty.
    """
    host, port_text = split_host_port(text.strip())
    if not host:
        raise ValueError(f"{text!r}: no host name or address")
    if port_text is None:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= MAX_PORT:
        raise ValueError(f"{text!r}: the port must be a number from 1 to {MAX_PORT}")
    return host, int(port_text)


def is_loopback(ip: str) -> bool:
    """Loopback test on a normalised IP (IPv4-mapped already turned into IPv4)."""
    return ip.startswith("127.") or ip == "::1"
