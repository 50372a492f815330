"""Client address behind a reverse proxy (docs/protocol.md §1.5, §13).

``X-Real-IP`` / ``X-Forwarded-For`` are honoured only when the TCP peer is a trusted
proxy. ``X-Forwarded-For`` is read from the right, skipping trusted proxies, so a client
cannot spoof its address by sending the header itself. The real TCP source port is kept
(upstream uses port 0), so requester-table keys stay unique per connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from pyhbb.net.hostport import host_of
from pyhbb.wire.addr_mangle import Addr, try_into_v4

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_TRUSTED = ("127.0.0.0/8", "::1/128")


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """Parse CIDRs or bare IPs; raises ValueError naming the bad entry."""
    nets: list[Network] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return nets


def in_networks(ip: str, nets: Iterable[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in nets)


def _clean_ip(text: str) -> str | None:
    text = host_of(text.strip().strip('"'))  # [v6]:port or v4:port
    try:
        return try_into_v4(str(ipaddress.ip_address(text)))
    except ValueError:
        return None


def client_addr(peer: Addr, headers: Mapping[str, str], trusted: Sequence[Network]) -> Addr:
    """The address to attribute a WebSocket connection to."""
    if not in_networks(peer[0], trusted):
        return peer
    real = headers.get("X-Real-IP") or headers.get("x-real-ip")
    if real:
        ip = _clean_ip(real)
        if ip is not None:
            return ip, peer[1]
    fwd = headers.get("X-Forwarded-For") or headers.get("x-forwarded-for")
    if fwd:
        hops = [ip for ip in map(_clean_ip, fwd.split(",")) if ip is not None]
        for ip in reversed(hops):
            if not in_networks(ip, trusted):
                return ip, peer[1]
        if hops:
            return hops[0], peer[1]
    return peer
