"""What the relay core asks its adapters to do. Plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from pyhbb.relay.conns import RelayConn, Session


@dataclass(slots=True)
class Deadline:
    """Call ``core.deadline(conn, now)`` at ``at`` (replaces the connection's previous
    deadline); the connection is still before its first message."""

    conn: RelayConn
    at: float


@dataclass(slots=True)
class Wait:
    """The connection waits for its partner: a TCP client is not read meanwhile (its
    bytes wait in the kernel); a WebSocket client's messages are kept, up to a bound."""

    conn: RelayConn


@dataclass(slots=True)
class Reply:
    """Send a console command's output (possibly empty), then close."""

    conn: RelayConn
    text: str


@dataclass(slots=True)
class Drop:
    """Close a connection that is not in a session (nothing is sent to it)."""

    conn: RelayConn
    reason: str


@dataclass(slots=True)
class StartSplice:
    """Both sides are plain TCP: pass bytes verbatim, ``first.leftover`` and
    ``second.leftover`` first (§2.3, §8.3); set ``session.mover``."""

    session: Session


@dataclass(slots=True)
class StartBridge:
    """At least one side is a WebSocket: forward message by message (§8.3), starting
    with what each side sent while waiting; set ``session.mover``."""

    session: Session


@dataclass(slots=True)
class Cut:
    """End a running session: ``session.mover.close(reason)``."""

    session: Session
    reason: str


Action = Deadline | Wait | Reply | Drop | StartSplice | StartBridge | Cut
