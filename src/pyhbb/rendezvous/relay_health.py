"""Periodic reachability check of the relay servers (docs/protocol.md §6.16).

Only when more than one relay is configured: every 3 s each is tried with a TCP connect
(3 s timeout) and rotation uses the reachable ones. Unlike upstream the probe connection
is closed at once instead of idling 30 s at the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pyhbb.net.hostport import parse_host_port
from pyhbb.rendezvous.admin import CoreAdmin
from pyhbb.rendezvous.relay_servers import DEFAULT_RELAY_PORT

log = logging.getLogger("pyhbb.rendezvous")

INTERVAL = 3.0
CONNECT_TIMEOUT = 3.0


async def reachable(server: str) -> bool:
    try:
        host, port = parse_host_port(server, DEFAULT_RELAY_PORT)
    except ValueError:
        return False
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError, UnicodeError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def check_forever(admin: CoreAdmin) -> None:
    """Probe the core's relays every INTERVAL seconds and report which answer."""
    previous: list[str] | None = None
    while True:
        servers = admin.relays_to_check()
        if servers:
            results = await asyncio.gather(*(reachable(s) for s in servers))
            up = [s for s, ok in zip(servers, results, strict=True) if ok]
            admin.relays_checked(up)
            if up != previous:
                down = [s for s in servers if s not in up]
                log.info(
                    "relay servers reachable: %s%s",
                    ",".join(up) or "none (keeping the previous choice)",
                    f"; unreachable: {','.join(down)}" if down else "",
                )
                previous = up
        await asyncio.sleep(INTERVAL)
