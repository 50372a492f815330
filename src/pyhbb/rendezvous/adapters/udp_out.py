"""The sending side of the UDP socket on P (§2.5), as the executor uses it.

The executor exists before the socket is open (the listeners need it); a datagram to send
before then means a bug in the start-up order, so it is logged and counted, never silently
dropped. After the socket is closed (shutdown), late replies are dropped on purpose.
"""

from __future__ import annotations

import asyncio
import logging

from pyhbb.observability.throttle import worth_logging
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")


class UdpOut:
    """Sends datagrams from the socket on P once :meth:`open` has given it the transport."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._v6 = False
        self.last_src: Addr | None = None
        """The (normalised) source of the datagram being handled, set by the endpoint:
        replies to it reuse ``last_raw``, the socket's own address form, unconverted."""
        self.last_raw: tuple[str | object, int] | None = None
        self.before_open = 0
        """Datagrams the executor asked for before the socket was open (a bug if not 0)."""

    def open(self, transport: asyncio.DatagramTransport, v6: bool) -> None:
        self._transport = transport
        self._v6 = v6

    def send(self, payload: bytes, addr: Addr) -> None:
        transport = self._transport
        if transport is None:
            self.before_open += 1
            if worth_logging(self.before_open):
                log.error(
                    "UDP datagram to %s dropped: the socket is not open yet (%d so far); "
                    "this is a bug, please report it",
                    addr,
                    self.before_open,
                )
            return
        if transport.is_closing():
            return  # shutting down: late answers of database work go nowhere
        if addr is self.last_src:
            transport.sendto(payload, self.last_raw)
            return
        ip, port = addr
        if self._v6:
            if ":" not in ip:
                ip = "::ffff:" + ip
        elif ":" in ip:
            return  # an IPv4-only socket cannot reach an IPv6 peer
        transport.sendto(payload, (ip, port))
