"""Deprecated same-LAN logic (``--mask``, ``LOCAL-IP``; docs/protocol.md §6.17).

The default LOCAL-IP is found by the application (``pyhbb.net.local_ip``); this policy
only compares addresses.
"""

from __future__ import annotations

import ipaddress


class LanPolicy:
    """Whether an address lies in the configured LAN, and which relay LAN peers get."""

    def __init__(self, mask: str | None, local_ip: str) -> None:
        self.network = ipaddress.IPv4Network(mask, strict=False) if mask else None
        self.local_ip = local_ip

    def is_lan(self, ip: str) -> bool:
        if self.network is None:
            return False
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address):
            # the v4-conversion here has no ::1 exception (upstream's is_lan)
            mapped = addr.ipv4_mapped or (
                ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF) if int(addr) >> 32 == 0 else None
            )
            if mapped is None:
                return False
            addr = mapped
        return addr in self.network
