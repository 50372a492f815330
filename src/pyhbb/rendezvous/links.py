"""What the protocol core knows about a TCP or WebSocket connection.

The core never holds sockets. It holds :class:`Link` objects, which the asyncio adapters
subclass, and asks for bytes to be sent on them through actions. Because a link (not a raw
socket) sits in the requester table, a reply delivered later is still encrypted with that
connection's secure session.
"""

from __future__ import annotations

import enum
import itertools
from typing import ClassVar

from pyhbb.net.hostport import format_addr
from pyhbb.wire.addr_mangle import Addr


class Transport(enum.Enum):
    TCP = "tcp"
    WS = "ws"
    NAT = "nat"  # the P-1 listener: NAT test and online query only


class Link:
    """A client connection as the core sees it.

    ``addr`` is the address the client is attributed to (the TCP peer, or a trusted
    proxy's ``X-Real-IP`` with the real source port); ``key`` keys the requester table.
    """

    __slots__ = ("addr", "key", "link_id", "transport")
    _ids: ClassVar[itertools.count[int]] = itertools.count(1)

    def __init__(self, addr: Addr, transport: Transport) -> None:
        self.addr = addr
        self.key = addr
        self.transport = transport
        self.link_id = next(Link._ids)

    @property
    def is_ws(self) -> bool:
        return self.transport is Transport.WS

    @property
    def secure(self) -> bool:
        """Whether the connection is encrypted (secure TCP handshake completed)."""
        return False

    def __repr__(self) -> str:
        return f"<{self.transport.value} link {self.link_id} {format_addr(self.addr)}>"


class RequesterTable:
    """Waiting requesters (A) by address, so B's answer can reach A's connection (§6.5).

    Bounded by the number of open connections, since a link is removed when it closes.
    """

    def __init__(self) -> None:
        self._by_key: dict[Addr, Link] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def register(self, link: Link) -> None:
        self._by_key[link.key] = link

    def take(self, key: Addr) -> Link | None:
        """Remove and return the link waiting under ``key`` (one reply per registration)."""
        return self._by_key.pop(key, None)

    def forget(self, link: Link) -> None:
        """Drop ``link`` if it is still the one registered under its key (upstream quirk fixed:
        a closing connection never removes a newer entry with the same key)."""
        if self._by_key.get(link.key) is link:
            del self._by_key[link.key]
