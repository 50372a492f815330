"""What the protocol core asks its adapters to do, and what they report back about the
store's work (:class:`StoreFailure`). Plain data, no behaviour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyhbb.rendezvous.links import Link
from pyhbb.wire.addr_mangle import Addr


@dataclass(slots=True)
class SendUdp:
    """Send one datagram from the P socket."""

    payload: bytes
    addr: Addr


@dataclass(slots=True)
class Send:
    """Send one message on a TCP/WebSocket link (the adapter frames and encrypts it)."""

    link: Link
    payload: bytes


@dataclass(slots=True)
class Close:
    """Close a link once what was sent before has been written."""

    link: Link


@dataclass(slots=True)
class StartSession:
    """The link is now a registration session (§7.4): no 30 s idle rule any more; send an
    empty heartbeat frame every ``heartbeat`` s and close it after ``timeout`` s without
    receiving anything."""

    link: Link
    heartbeat: float
    timeout: float


@dataclass(slots=True)
class LoadPeer:
    """Look ``peer_id`` up in the store, then call ``core.peer_loaded`` (or
    ``core.peer_load_failed`` with a :class:`StoreFailure`) so the events waiting for it
    resume."""

    peer_id: str


@dataclass(slots=True)
class InsertPeer:
    guid: bytes
    peer_id: str
    uuid: bytes
    pk: bytes
    ip: str


@dataclass(slots=True)
class UpdatePeer:
    guid: bytes
    peer_id: str
    pk: bytes
    ip: str
    revision: int = 0
    """The directory revision the decision was made on (a shared directory refuses the
    write if the entry changed since: :attr:`StoreFailure.stale`)."""


@dataclass(slots=True)
class RenamePeer:
    guid: bytes
    old_id: str
    new_id: str
    revision: int = 0


@dataclass(slots=True)
class ClaimPeer:
    """Make this node the holder of ``peer_id`` in a shared directory, changing nothing
    else (cluster mode: the peer registered here with the same key, docs/cluster.md §1.4).
    A single server never asks for it: every peer is its own."""

    peer_id: str
    revision: int


StoreWrite = InsertPeer | UpdatePeer | RenamePeer | ClaimPeer


@dataclass(slots=True)
class Persist:
    """Perform ``write``, then run what ``core.write_done(persist)`` or, when the store
    failed, ``core.write_failed(persist, failure)`` returns: the core picks ``on_ok``,
    ``on_conflict`` (the id is taken) or ``on_fail``. Replies wait for the database, so an
    acknowledged change is durable."""

    write: StoreWrite
    on_ok: list[Action] = field(default_factory=list)
    on_fail: list[Action] = field(default_factory=list)
    on_conflict: list[Action] | None = None
    on_busy: list[Action] | None = None
    """Answer when the directory refused for want of capacity (claim storm)."""
    redo: Callable[[float], list[Action]] | None = None
    """Decide again from a fresh read when the entry changed under us (a lost race in a
    shared directory); ``None`` once the attempts are used up."""
    evict: str = ""
    """The node that held the peer before this write: told to forget it once stored."""


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """A store operation that failed, as the executor reports it to the core, which alone
    decides what is logged (once) and what the client hears."""

    reason: str
    id_taken: bool = False
    """The write conflicts with an existing id (the unique index refused it)."""
    bug: BaseException | None = None
    """The exception, when it was not an ordinary store error: logged with its traceback."""
    stale: bool = False
    """A shared directory refused the write: the entry changed since it was read."""
    busy: bool = False
    """Too many directory operations in flight: refused without trying."""


@dataclass(slots=True)
class ResolveServers:
    """Resolve host names, then call ``core.adopt_config(serial, resolvable)``."""

    serial: int
    servers: list[str]


@dataclass(slots=True)
class ProxyHttp:
    """Forward an HttpProxyRequest to the API server and send the answer on ``link``."""

    link: Link
    request: bytes


# -- several nodes, one ID space (docs/cluster.md §1.4) --------------------------------------
# The core names what must happen; the adapter's Bus knows whether the other node is a
# NATS subject away or (single server) does not exist.


@dataclass(slots=True)
class PunchViaOwner:
    """Ask ``node``, which holds ``peer_id``, to tell it about A's punch request; the
    outcome comes back through ``core.owner_punch_answered``."""

    node: str
    link: Link
    peer_id: str
    request: bytes
    """A's PunchHoleRequest, serialised."""
    relay_server: str
    """The relay chosen here, so that both sides of the pair meet on one hbbr."""


@dataclass(slots=True)
class RelayViaOwner:
    """Give ``node``, which holds ``peer_id``, a RequestRelay message to route to it."""

    node: str
    peer_id: str
    payload: bytes


@dataclass(slots=True)
class Evict:
    """Tell ``node`` that ``peer_id`` is held elsewhere since ``revision``."""

    node: str
    peer_id: str
    revision: int


@dataclass(slots=True)
class AwaitAnswer:
    """A requester waits here under ``key``: B's answer may arrive at another node."""

    key: Addr


@dataclass(slots=True)
class DeliverAnswer:
    """B's answer for the requester ``key``, which waits on another node."""

    key: Addr
    payload: bytes


@dataclass(slots=True)
class GatherOnline:
    """Ask every other node which of ``peers`` it holds online; OR their bitmaps into
    ``states`` (this node's), answer on ``link`` via ``core.online_gathered``."""

    link: Link
    peers: list[str]
    states: bytes
    close: bool


ClusterAction = PunchViaOwner | RelayViaOwner | Evict | AwaitAnswer | DeliverAnswer | GatherOnline

Action = (
    SendUdp
    | Send
    | Close
    | StartSession
    | LoadPeer
    | Persist
    | ResolveServers
    | ProxyHttp
    | ClusterAction
)
