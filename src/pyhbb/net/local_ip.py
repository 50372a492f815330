"""The host's primary IP, the default LOCAL-IP given to LAN peers (docs/protocol.md §6.17)."""

from __future__ import annotations

import socket


def detect_local_ip() -> str:
    """The source address the kernel would use to reach the internet (a UDP ``connect``
    sends no packet); ``127.0.0.1`` when there is no route at all."""
    for family, target in ((socket.AF_INET, "8.8.8.8"), (socket.AF_INET6, "2001:4860:4860::8888")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 53))
                ip = s.getsockname()[0]
                if isinstance(ip, str):
                    return ip
        except OSError:
            continue
    return "127.0.0.1"
