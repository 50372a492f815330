"""Registration: RegisterPeer heartbeats and RegisterPk (docs/protocol.md §6.3, §6.4, §7.4)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import (
    Action,
    InsertPeer,
    Persist,
    RenamePeer,
    Send,
    SendUdp,
    StartSession,
    StoreWrite,
    UpdatePeer,
)
from pyhbb.rendezvous.links import Link
from pyhbb.rendezvous.messages import (
    REGISTER_PEER_OK,
    REGISTER_PEER_SEND_PK,
    Result,
)
from pyhbb.rendezvous.peer_registry import (
    ACCEPTED,
    EXPIRED,
    IP_CHANGED,
    PeerRecord,
    pack_addr,
)
from pyhbb.rendezvous.rate_limits import reg_pk_allowed
from pyhbb.rendezvous.state import MAX_ID_BYTES, CoreState
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

# Builds the action that answers a RegisterPk with a result code.
Reply = Callable[[int], Action]


def id_format_ok(peer_id: str) -> bool:
    """Cap what we store: upstream has no check at all (§6.4 notes)."""
    return len(peer_id.encode()) <= MAX_ID_BYTES and all(c >= " " and c != "\x7f" for c in peer_id)


class Registration:
    """Decides RegisterPeer and RegisterPk for UDP and for TCP/WebSocket sessions."""

    def __init__(self, state: CoreState) -> None:
        self.s = state

    # -- RegisterPeer (UDP heartbeat every 15 s): the hot path ----------------------------

    def register_peer(
        self, msg: pb.RegisterPeer, src: Addr, now: float, session: Link | None = None
    ) -> list[Action]:
        """RegisterPeer by UDP from ``src``, or on a TCP/WebSocket ``session``."""
        peer_id = msg.id
        if not peer_id:
            return []
        if session is not None:
            return self._register_peer_on_session(msg, session, now)
        record = self.s.peers.get(peer_id)
        if record is None:
            request_pk = True
        else:
            ip = src[0]
            result = record.udp_heartbeat(pack_addr(src), now, ip[:4] == "127." or ip == "::1")
            request_pk = result != ACCEPTED
            if result == IP_CHANGED and self.s.reg_pk_counts.get(peer_id, (0, 0.0))[0] <= 2:
                log.info("IP change of %s from %s to %s", peer_id, record.registered_ip, ip)
        actions: list[Action] = [
            SendUdp(REGISTER_PEER_SEND_PK if request_pk else REGISTER_PEER_OK, src)
        ]
        if self.s.serial > msg.serial:
            actions.append(SendUdp(self.s.config_update_payload, src))
        return actions

    def _register_peer_on_session(
        self, msg: pb.RegisterPeer, link: Link, now: float
    ) -> list[Action]:
        s = self.s
        record = s.peers.get(msg.id)
        request_pk = (
            record is None
            or not record.has_pk
            or record.registered_ip != link.addr[0]
            or not s.bind_session(link, msg.id, record, now)
        )
        actions: list[Action] = [
            Send(link, REGISTER_PEER_SEND_PK if request_pk else REGISTER_PEER_OK),
            self.session_start(link),
        ]
        if s.serial > msg.serial:
            actions.append(Send(link, s.config_update_payload))
        return actions

    def session_start(self, link: Link) -> Action:
        settings = self.s.settings
        return StartSession(link, settings.heartbeat, settings.heartbeat * 2.5)

    # -- RegisterPk -----------------------------------------------------------------------

    def register_pk(
        self,
        msg: pb.RegisterPk,
        src: Addr,
        reply: Reply,
        now: float,
        session: Link | None = None,
    ) -> list[Action]:
        """RegisterPk from ``src`` (UDP, or a TCP/WebSocket ``session`` to bind on success)."""
        s = self.s
        peer_id = msg.id
        if len(peer_id.encode()) < 6:
            s.stats["register_pk_refused"] += 1
            return [reply(Result.UUID_MISMATCH)]
        if not id_format_ok(peer_id):
            s.stats["register_pk_refused"] += 1
            return [reply(Result.INVALID_ID_FORMAT)]
        ip = src[0]
        if not s.blocker.allow(ip, peer_id, now):
            s.stats["register_pk_too_frequent"] += 1
            log.debug("RegisterPk of %s from %s refused by the IP blocker", peer_id, ip)
            return [reply(Result.TOO_FREQUENT)]
        if not reg_pk_allowed(*s.reg_pk_counts.get(peer_id, (0, EXPIRED)), now)[0]:
            # Refused before the database is read: a flood for one id costs no I/O.
            s.stats["register_pk_too_frequent"] += 1
            return [reply(Result.TOO_FREQUENT)]
        uuid = bytes(msg.uuid)
        pk = bytes(msg.pk)

        def decide(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if not ok:
                return [reply(Result.SERVER_ERROR)]
            if record is None and not s.new_peers.take(now):
                s.stats["register_pk_new_id_rate"] += 1
                if worth_logging(s.stats["register_pk_new_id_rate"]):
                    log.warning(
                        "new IDs arrive faster than NEW_PEERS_PER_SECOND=%g: refusing %s "
                        "(%d refused so far)",
                        s.settings.new_peers_per_second,
                        peer_id,
                        s.stats["register_pk_new_id_rate"],
                    )
                return [reply(Result.TOO_FREQUENT)]
            if record is None or s.peers.get(peer_id) is not record:
                # new, or loaded while the table was full (kept out of it): needs room
                if not s.peers.has_room(now):
                    s.stats["register_pk_table_full"] += 1
                    if worth_logging(s.stats["register_pk_table_full"]):
                        log.warning(
                            "peer table full (MAX_PEERS_IN_MEMORY=%d, all online): refusing %s",
                            len(s.peers),
                            peer_id,
                        )
                    return [reply(Result.TOO_FREQUENT)]
                record = record or PeerRecord()
                s.peers.put(peer_id, record)
            return self._apply(record, peer_id, uuid, pk, src, reply, now, session)

        return s.with_peer(peer_id, now, decide, need_details=True)

    def _apply(
        self,
        record: PeerRecord,
        peer_id: str,
        uuid: bytes,
        pk: bytes,
        src: Addr,
        reply: Reply,
        now: float,
        session: Link | None,
    ) -> list[Action]:
        s = self.s
        ip = src[0]
        details = record.details
        assert details is not None  # with_peer(need_details=True) loaded them
        old_ip = details.ip
        if not details.uuid:
            changed, ip_changed = True, False
        elif details.uuid == uuid:
            if old_ip != ip and record.pk != pk:
                log.info("RegisterPk of %s from %s refused: new key and new IP", peer_id, ip)
                s.stats["register_pk_refused"] += 1
                return [reply(Result.UUID_MISMATCH)]
            ip_changed = old_ip != ip
            changed = record.pk != pk or ip_changed
        else:
            log.info("RegisterPk of %s from %s refused: id owned by another machine", peer_id, ip)
            s.stats["register_pk_refused"] += 1
            return [reply(Result.UUID_MISMATCH)]
        count, last = s.reg_pk_counts.get(peer_id, (0, EXPIRED))
        allowed, count = reg_pk_allowed(count, last, now)
        if not allowed:
            s.stats["register_pk_too_frequent"] += 1
            return [reply(Result.TOO_FREQUENT)]
        s.reg_pk_counts[peer_id] = (count, now)
        if ip_changed:
            s.ip_changes.record(peer_id, ip, now)
        # TCP/WS clients never send RegisterPeer, which carries ConfigUpdate by UDP: a new
        # session gets the configured serial and rendezvous servers after its answer.
        extra: list[Action] = []
        if session is not None:
            new_binding = s.sessions.get(session) != peer_id
            if not s.bind_session(session, peer_id, record, now):
                return [reply(Result.TOO_FREQUENT)]
            if new_binding and s.serial > 0:
                extra.append(Send(session, s.config_update_payload))
        if not changed:
            return [reply(Result.OK), *extra]
        is_new = not details.guid
        pk_changed = record.has_pk and record.pk != pk
        details.uuid = uuid
        details.ip = ip
        record.pk = pk
        record.last_reg = now
        if session is None:
            record.addr = src
            record.session = None
        elif record.addr is None:
            record.set_ip_only(ip)
        write: StoreWrite
        if is_new:
            details.guid = s.random_bytes(16)
            write = InsertPeer(details.guid, peer_id, uuid, pk, ip)
            log.info("new peer %s registered from %s", peer_id, _fmt(src))
        else:
            write = UpdatePeer(details.guid, peer_id, pk, ip)
            what = "key changed" if pk_changed else "IP changed"
            log.info("peer %s re-registered from %s (%s)", peer_id, _fmt(src), what)
        s.stats["register_pk_stored"] += 1
        return [Persist(write, [reply(Result.OK), *extra], [reply(Result.SERVER_ERROR)])]

    def persist_failed(self, write: StoreWrite) -> None:
        """Forget the in-memory record whose write failed: it reloads from the database."""
        self.s.stats["db_errors"] += 1
        peer_id = write.new_id if isinstance(write, RenamePeer) else write.peer_id
        self.s.peers.remove(peer_id)
        log.error("database write for %s failed; its record will be reloaded", peer_id)


def _fmt(addr: Addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
