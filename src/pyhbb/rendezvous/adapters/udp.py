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
    """Feeds datagrams to the core and sends what it asks for from the same socket."""

    def __init__(self, core: RendezvousCore, executor: Executor) -> None:
        self.core = core
        self.executor = executor
        self.transport: asyncio.DatagramTransport | None = None
        self.v6 = False
        self.oversized = 0
        self.received = 0
        """Datagrams delivered so far (the self-test's sign of life)."""
        self._src: Addr | None = None
        self._raw_src: tuple[str | object, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        self.v6 = sock is not None and sock.family == socket.AF_INET6
        self.executor.udp_send = self.send

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received += 1
        if len(data) > MAX_DATAGRAM:
            self.oversized += 1
            return
        host = addr[0]
        assert isinstance(host, str)
        src = (try_into_v4(host), addr[1])
        # Replies to this datagram reuse the socket's own address form (no conversion).
        self._src, self._raw_src = src, addr
        self.executor.run(self.core.on_udp(data, src, self.executor.clock()))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a vanished client and the like: not our problem.
        log.debug("UDP error: %s", exc)

    def send(self, payload: bytes, addr: Addr) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if addr is self._src:
            transport.sendto(payload, self._raw_src)
            return
        ip, port = addr
        if self.v6:
            if ":" not in ip:
                ip = "::ffff:" + ip
        elif ":" in ip:
            return  # an IPv4-only socket cannot reach an IPv6 peer
        transport.sendto(payload, (ip, port))
