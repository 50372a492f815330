"""The UDP socket on P: one RendezvousMessage per datagram (§2.5, §6.2)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.wire.addr_mangle import Addr, try_into_v4

log = logging.getLogger("pyhbb.rendezvous")

MAX_DATAGRAM = 4096  # real registrations are ~100 bytes; anything near this is hostile


class UdpEndpoint(asyncio.DatagramProtocol):
    """Feeds datagrams to the core; opens the executor's :class:`UdpOut` on the same
    socket, so the replies leave from the port the requests came to."""

    def __init__(self, core: RendezvousCore, executor: Executor) -> None:
        self.core = core
        self.executor = executor
        self.out = executor.udp
        self.oversized = 0
        self.received = 0
        """Datagrams delivered so far (the self-test's sign of life)."""
        # bound once: every datagram of a flood passes here (bench/hbbs_flood.py)
        self._on_udp = core.on_udp
        self._run = executor.run
        self._clock = executor.clock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        v6 = sock is not None and sock.family == socket.AF_INET6
        self.out.open(cast(asyncio.DatagramTransport, transport), v6)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received += 1
        if len(data) > MAX_DATAGRAM:
            self.oversized += 1
            return
        if len(addr) == 2:  # an IPv4 socket's (host, port): already the core's form
            src = cast(Addr, addr)
        else:  # an IPv6 socket's (host, port, flowinfo, scope_id)
            host = addr[0]
            assert isinstance(host, str)
            src = (try_into_v4(host), addr[1])
        actions = self._on_udp(data, src, self._clock())
        if actions:  # most of a shed flood has none
            out = self.out
            out.last_src, out.last_raw = src, addr
            self._run(actions)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a vanished client and the like: not our problem.
        log.debug("UDP error: %s", exc)
