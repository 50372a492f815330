"""What the relay core knows about a client connection and a relayed session.

The core never holds sockets. It holds :class:`RelayConn` objects, which the asyncio
adapters subclass, and :class:`Session` objects pairing two of them; it moves them from
phase to phase and asks the adapters for I/O through actions.
"""

from __future__ import annotations

import enum
from typing import Protocol

from pyhbb.net.hostport import format_addr
from pyhbb.relay.bandwidth import SessionBudget

# (ip, port) as pyhbb.wire.addr_mangle.Addr, which this pure module cannot import (the
# address codec needs the socket module); ip is normalised (IPv4-mapped IPv6 -> IPv4).
Addr = tuple[str, int]


class Kind(enum.Enum):
    TCP = "tcp"  # port R: framed first message, then raw bytes or frames
    WS = "ws"  # port R+2: one binary message per protobuf message


class Phase(enum.Enum):
    HANDSHAKE = "handshake"  # counted against MAX_HANDSHAKES until its first message
    WAITING = "waiting"  # in the pairing table
    PAIRED = "paired"  # in a session
    CLOSED = "closed"


class RelayConn:
    """A client connection as the core sees it.

    ``peer`` is the TCP peer (what the handshake limits count); ``addr`` is the address
    the client is attributed to (the peer, or a trusted proxy's ``X-Real-IP`` with the
    peer's port). ``loopback`` marks a TCP connection on R that may be the admin console.
    ``leftover`` holds the bytes a TCP client sent after its first frame: they are
    relayed verbatim once paired.
    """

    __slots__ = ("addr", "deadline", "kind", "leftover", "loopback", "peer", "phase", "uuid")

    def __init__(self, peer: Addr, kind: Kind, loopback: bool = False) -> None:
        self.peer = peer
        self.addr = peer
        self.kind = kind
        self.loopback = loopback and kind is Kind.TCP
        self.phase = Phase.CLOSED  # until the core admits it
        self.deadline = 0.0
        self.uuid = ""
        self.leftover = b""

    def __repr__(self) -> str:
        return f"<{self.kind.value} {format_addr(self.addr)} {self.phase.value}>"


class Mover(Protocol):
    """What the adapter puts in :attr:`Session.mover`: the object moving the session's
    bytes (splice pump or message bridge)."""

    @property
    def activity(self) -> int:
        """Grows whenever anything moves: the idle rule's input."""

    def close(self, reason: str) -> None:
        """End the session (the adapter then reports it with ``session_ended``)."""


class Session:
    """Two paired connections being relayed; ``first`` waited, ``second`` arrived."""

    __slots__ = (
        "budget",
        "ending",
        "first",
        "last_active",
        "last_activity",
        "mover",
        "second",
        "started",
        "uuid",
    )

    def __init__(
        self, uuid: str, first: RelayConn, second: RelayConn, budget: SessionBudget, now: float
    ) -> None:
        self.uuid = uuid
        self.first = first
        self.second = second
        self.budget = budget
        self.started = now
        self.last_active = now
        self.last_activity = 0
        self.mover: Mover | None = None
        self.ending = ""  # why the core asked to cut it

    @property
    def kind(self) -> str:
        return f"{self.first.kind.value}-{self.second.kind.value}"

    @property
    def raw(self) -> bool:
        """Both sides plain TCP: bytes pass verbatim (§2.3), not message by message."""
        return self.first.kind is Kind.TCP and self.second.kind is Kind.TCP

    @property
    def key(self) -> str:
        """The usage key: ``IP:port`` of the second connection, as upstream."""
        return format_addr(self.second.addr)

    def activity(self) -> int:
        return self.mover.activity if self.mover is not None else 0

    def __repr__(self) -> str:
        return f"<session {self.uuid} {self.kind}>"
