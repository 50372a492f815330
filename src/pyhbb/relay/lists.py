"""The relay's IP lists (blacklist, blocklist; §8.5), with normalised IPs.

The files they come from are read by :mod:`pyhbb.relay.list_files`; this module stays
pure, as the relay core uses it.

Upstream compares raw text, so on a dual-stack socket the peer ``::ffff:1.2.3.4`` never
matches the entry ``1.2.3.4``. Here every entry and every looked-up address goes through
the same normalisation (IPv4-mapped IPv6 becomes IPv4, IPv6 gets its canonical text), so
both spellings match. Text that is not an IP is kept verbatim and matches only itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from pyhbb.wire.addr_mangle import try_into_v4


def normalize_ip(text: str) -> str:
    """Canonical text of an IP (mapped IPv6 -> IPv4); other text is returned stripped."""
    text = text.strip()
    try:
        return try_into_v4(str(ipaddress.ip_address(text)))
    except ValueError:
        return text


class IpList:
    """A set of IP strings in insertion order (so the console lists them predictably)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._set: dict[str, None] = {}
        self.add(entries)

    def add(self, entries: Iterable[str]) -> None:
        for entry in entries:
            ip = normalize_ip(entry)
            if ip:  # upstream keeps an empty entry for blank lines; it never matches a peer
                self._set[ip] = None

    def remove(self, entries: Iterable[str]) -> None:
        for entry in entries:
            self._set.pop(normalize_ip(entry), None)

    def clear(self) -> None:
        self._set.clear()

    def __contains__(self, ip: object) -> bool:
        # Peers are normalised at ingress, so the fast path is a plain dict look-up. IPv4
        # text without spaces normalises to itself (or is no address), so only other text
        # needs the parse: the once-a-second check of every session asks for each side.
        if not isinstance(ip, str):
            return False
        if ip in self._set:
            return True
        if ":" not in ip and " " not in ip and ip == ip.strip():
            return False
        return normalize_ip(ip) in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._set))

    def __len__(self) -> int:
        return len(self._set)
