"""Shared state of the rendezvous core: settings, tables, and the peer-loading helper."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from pyhbb.observability.throttle import LogThrottle
from pyhbb.rendezvous.actions import Action, LoadPeer, Send, SendUdp
from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.disabled_peers import MAX_DISABLED, DisabledPeers
from pyhbb.rendezvous.lan import LanPolicy
from pyhbb.rendezvous.links import Link, RequesterTable
from pyhbb.rendezvous.messages import config_update
from pyhbb.rendezvous.packed_table import PackedTable
from pyhbb.rendezvous.peer_registry import REG_TIMEOUT, PeerDetails, PeerRecord, PeerRegistry
from pyhbb.rendezvous.rate_limits import (
    BlockerLimits,
    IpBlocker,
    IpChanges,
    PunchLog,
)
from pyhbb.rendezvous.relay_servers import RelayServers
from pyhbb.rendezvous.stored_peer import CompactRow, StoredPeer
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.signed_id import sign_id_pk

log = logging.getLogger("pyhbb.rendezvous")

# A continuation waiting for a peer record: (record or None, now, lookup_succeeded).
PeerCont = Callable[[PeerRecord | None, float, bool], list[Action]]
# One waiting only for the record to be in memory: (found, now, lookup_succeeded).
InMemoryCont = Callable[[bool, float, bool], list[Action]]

MAX_ID_BYTES = 100  # the DB column is varchar(100); no real client ID comes close
MAX_PENDING_LOADS = 10_000
MAX_TAKE_BACK_LOADS = 7_500  # heartbeats leave room for RegisterPk and punch look-ups
MAX_WAITERS_PER_ID = 64
MAX_REG_PK_COUNTS = 100_000  # ids with a RegisterPk accepted in the last 7 s
PRELOAD_GRACE = 300.0  # a preloaded row that no heartbeat claims is dropped after this
# Cluster mode (docs/cluster.md §1.4): peers held by other nodes, as last read from the
# shared directory, answer punches for a few seconds without another read.
REMOTE_TTL = 5.0
MAX_REMOTE_PEERS = 10_000
MAX_CLAIMS = 100_000  # ids claimed recently, with the revision: a late evict is ignored


@dataclass
class CoreSettings:
    """Everything configurable that the core decides with (built from the CLI options)."""

    enforced_key: str = ""
    signing: SigningKey | None = None
    relay_servers: list[str] = field(default_factory=list)
    serial: int = 0
    rendezvous_servers: list[str] = field(default_factory=list)
    software_url: str = ""
    always_use_relay: bool = False
    """Relay every connection. The console changes it at run time, through CoreAdmin."""
    mask: str | None = None
    local_ip: str = ""
    blocker: BlockerLimits = field(default_factory=BlockerLimits)
    max_peers: int = 2_000_000
    evict_after: float = 86_400.0
    max_online_query: int = 10_000
    keep_alive: int = 60
    """Seconds announced to TCP/WebSocket-registered clients in RegisterPkResponse."""
    heartbeat: float = 20.0
    """Interval of empty heartbeat frames on registration sessions."""
    new_peers_per_second: float = 500.0
    """Brand-new IDs accepted per second in total (after a burst of a minute's worth):
    every one is a database row, so spoofed registrations must not fill the disk. Shared
    fairly between source prefixes and sources (fair_budget.py)."""
    register_lookups_per_second: float = 2000.0
    """RegisterPk decisions per second that read the database, shared the same way: a
    flood of forged registrations must not keep the event loop busy with reads."""
    new_id_flood_mode: bool = True
    """While brand-new IDs are offered faster than ``new_peers_per_second``, first-time
    ones get a fifth of it and the minute-long burst is kept (fair_budget.py, flood mode);
    off, a flood spends the burst at once, as writes the loop's core must then carry."""
    max_writes_in_flight: int = 1000
    """Registrations waiting for the database at once beyond which a brand-new ID is
    refused (TOO_FREQUENT, like the budgets): the writer stores ~1,000 new rows a second
    under a flood, and every waiting registration is a task, futures and answers that each
    full garbage collection walks. Without this bound the new-ID budget's minute-long burst
    queued tens of thousands of them and the collections stalled the event loop for
    0.6 s (bench/RESULTS.md, flood). A request repeating a refused one from the same
    address and port, as a genuine client retries, may use a reserve of a fifth more
    (registration.py)."""
    take_back_reads_per_second: float = 50_000.0
    """Heartbeats per second of peers not in memory that read the database (the take-back
    after a restart), shared the same way: what batched reads sustain with room to spare
    (bench/RESULTS.md), so a restart of a million peers is over in one heartbeat period
    while forged heartbeats cannot turn into unbounded reads."""
    max_sessions: int = 100_000
    max_sessions_per_ip: int = 1000
    udp_punch: bool = False
    """Forward udp_port and accept UDP PunchHoleSent (§7.9)."""
    id_change: bool = True
    max_disabled: int = MAX_DISABLED
    """IDs disabled in the web console that are enforced (disabled_peers.py)."""
    node_name: str = ""
    """This node's name in a shared peer directory (cluster mode). Empty: a single server,
    where every peer in the database is this server's own."""

    @property
    def software_version(self) -> str:
        """Upstream derives the version from the URL text after its last ``-``."""
        if not self.software_url:
            return ""
        tail = self.software_url.rsplit("-", 1)[-1]
        for ext in (".exe", ".msi", ".dmg", ".deb", ".rpm", ".apk"):
            tail = tail.removesuffix(ext)
        return tail


class CoreState:
    """Tables and settings shared by the handlers of the rendezvous core."""

    def __init__(self, settings: CoreSettings, random_bytes: Callable[[int], bytes] = os.urandom):
        self.settings = settings
        self.random_bytes = random_bytes
        self.peers = PeerRegistry(settings.max_peers, settings.evict_after)
        self.disabled = DisabledPeers(settings.max_disabled)
        """IDs answered as offline whatever their record says (single server only)."""
        self.requesters = RequesterTable()
        self.blocker = IpBlocker(settings.blocker)
        self.ip_changes = IpChanges()
        self.punch_log = PunchLog()
        self.relays = RelayServers(settings.relay_servers)
        self.lan = LanPolicy(settings.mask, settings.local_ip)
        self.stats: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        """Decisions for the metrics: (what, transport or kind, result) → count, each
        part from a fixed set of words."""
        self.log_throttle = LogThrottle()
        """Every line a client can trigger goes through it (1st, 2nd, 4th ... a minute)."""
        self.reg_pk_counts: PackedTable[tuple[int, float]] = PackedTable(MAX_REG_PK_COUNTS, "<Id")
        """Per-id RegisterPk bursts (§6.4 step 6): (count, time); expired after 7 s. Packed:
        written on every registration, its dict would otherwise be one every full
        collection walks (packed_table.py)."""
        self.sessions: dict[Link, str] = {}
        """Registration sessions (§7.4): link → the peer id registered on it."""
        self._session_ips: Counter[str] = Counter()
        self._waiting: dict[str, list[PeerCont]] = {}
        """Continuations waiting for the look-up in flight, by id."""
        self._after: dict[str, list[PeerCont]] = {}
        """``fresh`` continuations for an id with a look-up in flight: they wait for the
        next one, since the answer of a read begun before them may predate what they
        must see (a lost race's winner, another node's claim)."""
        self._waiting_in_memory: dict[str, list[InMemoryCont]] = {}
        self.set_config(settings.serial, settings.rendezvous_servers)
        # Cluster mode only; they stay empty on a single server.
        self.remote: BoundedTable[str, tuple[PeerRecord, float]] = BoundedTable(MAX_REMOTE_PEERS)
        """Peers other nodes hold: record (details with owner and revision), read at."""
        self.claims: BoundedTable[str, int] = BoundedTable(MAX_CLAIMS)
        """Our recent claims: id → revision, so an older evict cannot undo a newer claim."""
        self.doubtful: set[str] = set()
        """Held peers to check against the directory before their next use: after a lost
        connection to the bus an evict may have been lost (docs/cluster.md §1.5)."""

    # -- ConfigUpdate -------------------------------------------------------------------

    def set_config(self, serial: int, servers: list[str]) -> None:
        self.serial = serial
        self.rendezvous_servers = list(servers)
        self.config_update = config_update(serial, self.rendezvous_servers)
        self.config_update_payload = pb.RendezvousMessage(
            configure_update=self.config_update
        ).SerializeToString()

    # -- peers ----------------------------------------------------------------------------

    def with_peer(
        self,
        peer_id: str,
        now: float,
        cont: PeerCont,
        need_details: bool = False,
        fresh: bool = False,
    ) -> list[Action]:
        """Run ``cont`` with the record of ``peer_id`` from memory, or after loading it
        from the store (memory-then-database look-up, §6.1). ``need_details`` also loads
        the details a record may have dropped (uuid, guid, info.ip); ``fresh`` always
        reads the store, with a read begun after this call (cluster mode: is this peer
        still ours? who won the race we lost?)."""
        if not fresh:
            record = self.peers.get(peer_id)
            if record is not None and (record.details is not None or not need_details):
                return cont(record, now, True)
            if record is None and not need_details and self.settings.node_name:
                cached = self.remote.get(peer_id)
                if cached is not None and now - cached[1] < REMOTE_TTL:
                    return cont(cached[0], now, True)
        return self._wait(self._waiting, peer_id, now, cont, None, fresh)

    def with_peer_in_memory(self, peer_id: str, now: float, cont: InMemoryCont) -> list[Action]:
        """Run ``cont`` once the record of ``peer_id`` is in memory (read from the store if
        needed; ``found`` False: there is none), without making an object of it: for the
        heartbeat take-back, thousands at once after a restart. Single server only."""
        if peer_id in self.peers:
            return cont(True, now, True)
        return self._wait(self._waiting_in_memory, peer_id, now, cont, False)

    def _wait(
        self,
        table: dict[str, list[Any]],
        peer_id: str,
        now: float,
        cont: Callable[..., list[Action]],
        nothing: PeerRecord | bool | None,
        fresh: bool = False,
    ) -> list[Action]:
        """File ``cont`` in ``table`` under the load of ``peer_id``, starting the load
        unless one is in flight already (for either kind of waiter); a ``fresh`` waiter
        waits for the next load instead of one in flight. When too many loads are
        pending, ``cont`` runs at once with ``nothing`` and a failed look-up."""
        in_flight = peer_id in self._waiting or peer_id in self._waiting_in_memory
        queue = self._after.setdefault(peer_id, []) if fresh and in_flight else table.get(peer_id)
        if queue is not None:
            if len(queue) >= MAX_WAITERS_PER_ID:
                self.stats["dropped_load_waiters"] += 1
                return []
            queue.append(cont)
            return []
        if not in_flight and self.pending_loads >= MAX_PENDING_LOADS:
            self.stats["dropped_loads"] += 1
            return cont(nothing, now, False)
        table[peer_id] = [cont]
        return [] if in_flight else [LoadPeer(peer_id)]

    def peer_loaded(self, peer_id: str, row: StoredPeer | None, now: float) -> list[Action]:
        if self.settings.node_name:
            return [*self._directory_entry_loaded(peer_id, row, now), *self._load_again(peer_id)]
        waiters = self._waiting.pop(peer_id, ())
        in_memory = self._waiting_in_memory.pop(peer_id, ())
        peers = self.peers
        # A full table still answers look-ups; the record just is not kept.
        if row is not None and peer_id not in peers and peers.has_room(now):
            peers.add_stored(peer_id, row)
        actions: list[Action] = []
        for cont in waiters:
            # Look up afresh for each waiter: an earlier one may have changed the record.
            record = peers.get(peer_id)
            if record is None and row is not None:
                record = PeerRecord.from_stored(row)  # not kept: the table is full
            elif record is not None and record.details is None:
                # Details are not kept in memory; a missing row makes it a new peer.
                record.details = PeerDetails() if row is None else PeerDetails.from_stored(row)
            actions += cont(record, now, True)
        found = row is not None or peer_id in peers
        for in_memory_cont in in_memory:
            actions += in_memory_cont(found, now, True)
        if waiters:
            # Details live only while the waiters decide: memory is for the idle peers.
            record = peers.get(peer_id)
            if record is not None:
                record.details = None
                del record
                peers.compact(peer_id)
        return actions + self._load_again(peer_id)

    def _load_again(self, peer_id: str) -> list[Action]:
        """The look-up for the ``fresh`` waiters that arrived while one was in flight."""
        after = self._after.pop(peer_id, None)
        if not after:
            return []
        waiting = self._waiting.get(peer_id)
        if waiting is not None:  # a waiter just began another read: it is fresh enough
            waiting += after
            return []
        self._waiting[peer_id] = after
        return [LoadPeer(peer_id)]

    def owner_elsewhere(self, record: PeerRecord) -> str | None:
        """The node holding ``record``'s peer when it is not this one ("" when none holds
        it), or ``None`` when the peer is ours: always on a single server."""
        details = record.details
        if details is None or not self.settings.node_name:
            return None
        owner = details.owner
        return None if owner == self.settings.node_name else owner

    def _directory_entry_loaded(
        self, peer_id: str, row: StoredPeer | None, now: float
    ) -> list[Action]:
        """Cluster mode: the shared directory's entry decides whether the peer is ours.
        A record held here that the directory gives to another node is dropped (its
        evict was lost); another node's peer goes to the short-lived remote cache."""
        node = self.settings.node_name
        self.doubtful.discard(peer_id)
        held = self.peers.get(peer_id)
        remote: PeerRecord | None = None
        if row is not None and row.owner != node:
            remote = PeerRecord.from_stored(row)
            remote.details = PeerDetails.from_stored(row)
            self.remote[peer_id] = (remote, now)
        if held is not None and (remote is not None or row is None):
            self.forget_peer(peer_id)
            if n := self.log_throttle.count("ownership lost", now):
                log.info(
                    "peer %s is held by %s now: forgotten here (%d this minute)",
                    peer_id,
                    (row.owner if row is not None else "") or "no node",
                    n,
                )
        actions: list[Action] = []
        for cont in self._waiting.pop(peer_id, ()):
            if remote is not None:
                actions += cont(remote, now, True)
                continue
            record = self.peers.get(peer_id)
            if record is None and row is not None:  # ours, e.g. from before a restart
                record = PeerRecord.from_stored(row)
                if self.peers.has_room(now):
                    self.peers.put(peer_id, record)
            if record is not None and row is not None:
                record.details = PeerDetails.from_stored(row)
            elif record is not None and record.details is None:
                record.details = PeerDetails()
            actions += cont(record, now, True)
        record = self.peers.get(peer_id)
        if record is not None:
            record.details = None
            del record
            self.peers.compact(peer_id)
        return actions

    def forget_peer(self, peer_id: str) -> Link | None:
        """Drop a held peer (another node holds it now); returns its session, if any,
        which the caller closes: the client registered elsewhere."""
        record = self.peers.get(peer_id)
        if record is None:
            return None
        self.peers.remove(peer_id)
        self.doubtful.discard(peer_id)
        session = record.session
        if session is not None and self.sessions.get(session) == peer_id:
            record.session = None
            return session
        return None

    def doubt_ownership(self) -> int:
        """Every held peer is checked against the directory at its next use (an evict
        may have been lost while the bus was unreachable). Returns how many."""
        self.doubtful = set(self.peers.ids())
        self.remote.clear()
        return len(self.doubtful)

    def peer_load_failed(self, peer_id: str, now: float) -> list[Action]:
        self.stats["db_errors"] += 1
        actions: list[Action] = []
        for cont in self._waiting.pop(peer_id, ()):
            actions += cont(self.peers.get(peer_id), now, False)
        for in_memory_cont in self._waiting_in_memory.pop(peer_id, ()):
            actions += in_memory_cont(peer_id in self.peers, now, False)
        return actions + self._load_again(peer_id)

    def preload(self, rows: list[StoredPeer], now: float, limit: int) -> int:
        """:meth:`preload_rows` for rows read as :class:`StoredPeer`."""
        return self.preload_rows([(row.id, row.pk, row.ip) for row in rows], now, limit)

    def preload_rows(self, rows: Sequence[CompactRow], now: float, limit: int) -> int:
        """Warm start: enter database rows ``(id, pk, info.ip)`` whose ids are not in
        memory, while fewer than ``limit`` records are; returns how many were entered. A
        returning peer's first heartbeat then finds its record (the same one a read would
        give), and a row nobody heartbeats for is evicted :data:`PRELOAD_GRACE` seconds
        later."""
        # offline, and due for eviction once the grace is over (never before REG_TIMEOUT)
        evict_after = self.settings.evict_after
        last_reg = now - REG_TIMEOUT - max(0.0, evict_after - PRELOAD_GRACE)
        return self.peers.add_rows(rows, last_reg, limit - len(self.peers))

    @property
    def pending_loads(self) -> int:
        """Ids being read (an id both kinds of waiters wait for counts twice: rare)."""
        return len(self._waiting) + len(self._waiting_in_memory)

    def route(self, record: PeerRecord, payload: bytes) -> Action | None:
        """Deliver a message to a registered peer: over its session, else by UDP."""
        if record.session is not None:
            return Send(record.session, payload)
        if record.addr is not None:
            return SendUdp(payload, record.addr)
        return None

    def peer_ip(self, record: PeerRecord) -> str:
        if record.session is not None:
            return record.session.addr[0]
        return record.addr[0] if record.addr is not None else ""

    def signed_pk(self, record: PeerRecord | None, peer_id: str, version: str) -> bytes:
        """Signed IdPk for A (§5.4), or empty bytes when any condition is missing."""
        signing = self.settings.signing
        if not version or signing is None or record is None:
            return b""
        return sign_id_pk(signing, peer_id, record.pk)

    # -- registration sessions (§7.4) -------------------------------------------------------

    def session_allowed(self, link: Link) -> bool:
        """Whether ``link`` is, or may become, a registration session (bounded per IP and
        in total, so TCP registrations cannot take every connection slot)."""
        if link in self.sessions:
            return True
        settings = self.settings
        if (
            len(self.sessions) >= settings.max_sessions
            or self._session_ips[link.addr[0]] >= settings.max_sessions_per_ip
        ):
            self.stats["sessions_refused"] += 1
            return False
        return True

    def bind_session(self, link: Link, peer_id: str, record: PeerRecord, now: float) -> bool:
        """Route ``peer_id`` over ``link`` from now on; False when the limits refuse."""
        previous = self.sessions.get(link)
        if previous is None:
            if not self.session_allowed(link):
                return False
            self._session_ips[link.addr[0]] += 1
        elif previous != peer_id:
            self._unroute(link, previous)  # the client took a new ID on the same session
        if previous != peer_id and (n := self.log_throttle.count("session", now)):
            kind = link.transport.value
            log.info(
                "peer %s registered on a %s session from %s (%d this minute)",
                peer_id,
                kind,
                link.addr[0],
                n,
            )
        self.sessions[link] = peer_id
        record.session = link
        record.last_reg = now
        return True

    def _unroute(self, link: Link, peer_id: str) -> None:
        record = self.peers.get(peer_id)
        if record is not None and record.session is link:
            record.session = None

    def rename_peer(self, old_id: str, new_id: str) -> None:
        """Move the record of ``old_id`` to ``new_id``, with its session if it has one."""
        record = self.peers.get(old_id)
        self.peers.rename(old_id, new_id)
        if record is not None and record.session is not None:
            self.sessions[record.session] = new_id

    def link_closed(self, link: Link, now: float) -> None:
        self.requesters.forget(link)
        peer_id = self.sessions.pop(link, None)
        if peer_id is not None:
            ip = link.addr[0]
            self._session_ips[ip] -= 1
            if self._session_ips[ip] <= 0:
                del self._session_ips[ip]
            record = self.peers.get(peer_id)
            if record is not None and record.session is link:
                record.session = None
                record.last_reg = now - REG_TIMEOUT  # unreachable now: offline at once
            if n := self.log_throttle.count("session closed", now):
                log.info("session of peer %s closed (%d this minute)", peer_id, n)

    def session_activity(self, link: Link, now: float) -> None:
        peer_id = self.sessions.get(link)
        if peer_id is not None:
            record = self.peers.get(peer_id)
            if record is not None and record.session is link:
                record.last_reg = now
