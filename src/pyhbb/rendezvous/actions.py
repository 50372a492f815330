"""What the protocol core asks its adapters to do, and what they report back about the
store's work (:class:`StoreFailure`). Plain data, no behaviour."""

from __future__ import annotations

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


@dataclass(slots=True)
class RenamePeer:
    guid: bytes
    old_id: str
    new_id: str


StoreWrite = InsertPeer | UpdatePeer | RenamePeer


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


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """A store operation that failed, as the executor reports it to the core, which alone
    decides what is logged (once) and what the client hears."""

    reason: str
    id_taken: bool = False
    """The write conflicts with an existing id (the unique index refused it)."""
    bug: BaseException | None = None
    """The exception, when it was not an ordinary store error: logged with its traceback."""


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


Action = SendUdp | Send | Close | StartSession | LoadPeer | Persist | ResolveServers | ProxyHttp
