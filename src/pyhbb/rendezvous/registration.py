"""Registration: RegisterPeer heartbeats and RegisterPk (docs/protocol.md §6.3, §6.4, §7.4)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from functools import partial

from pyhbb.net.hostport import format_addr, is_loopback
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import (
    Action,
    ClaimPeer,
    InsertPeer,
    Persist,
    RenamePeer,
    Send,
    SendUdp,
    StartSession,
    StoreFailure,
    StoreWrite,
    UpdatePeer,
)
from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.fair_budget import (
    FLOOD_HOLD,
    FLOOD_SHARE,
    GLOBAL_LIMIT,
    PREFIX_LIMIT,
    RETRY_SHARE,
    FairBudget,
    RateTable,
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
    MAX_PK_BYTES,
    PeerRecord,
    addr_from_key,
    addr_key,
)
from pyhbb.rendezvous.rate_limits import TokenBucket, reg_pk_allowed
from pyhbb.rendezvous.recent_keys import RecentKeys
from pyhbb.rendezvous.shedding import Shedding
from pyhbb.rendezvous.state import MAX_ID_BYTES, MAX_TAKE_BACK_LOADS, CoreState
from pyhbb.rendezvous.stored_peer import CompactRow
from pyhbb.rendezvous.warm_waiters import WarmWaiters
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

# Builds the action that answers a RegisterPk with a result code.
Reply = Callable[[int], Action]

# ConfigUpdate (-s/-R) and SoftwareUpdate (-u) answers are far larger than the heartbeat
# that triggers them: only to a registered peer at its registered address, at most one per
# peer and interval, and this many per second in total.
LEGACY_UPDATE_INTERVAL = 30.0
LEGACY_UPDATES_PER_SECOND = 1000.0
MAX_PACED_PEERS = 100_000
MAX_SOFTWARE_ASKS = 10_000
SOFTWARE_ASK_TTL = 60.0
REGISTRATION_SLICE = 1000  # entries of each table expired per second of housekeeping
LOOKUP_BURST_SECONDS = 1.0  # database reads: a second's worth, not a minute's
TAKE_BACK_BURST_SECONDS = 1.0
CLAIM_ATTEMPTS = 3  # a shared directory's entry changed under us: read and decide again
# The take-back's negative cache (ids the database lacks, see _take_back): 2 MiB per
# generation, each id kept one to two minutes. A false positive answers a registered peer's
# heartbeat with request_pk, the behaviour before take-back; never the reverse.
ABSENT_IDS_BITS_LOG2 = 24
ABSENT_IDS_PERIOD = 60.0


_CONTROL = re.compile("[\x00-\x1f\x7f]")
RESULT_NAMES = {value: name.lower() for name, value in Result.items()}
# Looked up once: the protobuf enum wrapper's attribute access is slow on a flooded path.
TOO_FREQUENT = Result.TOO_FREQUENT


def id_format_ok(peer_id: str) -> bool:
    """Cap what we store: upstream has no check at all (§6.4 notes)."""
    return len(peer_id.encode()) <= MAX_ID_BYTES and _CONTROL.search(peer_id) is None


class Registration:
    """Decides RegisterPeer and RegisterPk for UDP and for TCP/WebSocket sessions."""

    def __init__(self, state: CoreState) -> None:
        self.s = state
        settings = state.settings
        # each admitted new id is a write: in a flood, first-time ones get a fifth of the rate
        self.new_ids = FairBudget(
            settings.new_peers_per_second, flood_mode=settings.new_id_flood_mode
        )
        # one source may always do twice the IP blocker's burst (32 RegisterPk, §11.1) at
        # once: the blocker stays the per-source limit an admin sees and tunes
        self.lookups = FairBudget(
            settings.register_lookups_per_second,
            LOOKUP_BURST_SECONDS,
            min_burst=2 * (settings.blocker.burst + 2),
        )
        self.shedding = Shedding(self.lookups)
        """Asked first for every UDP RegisterPk (RendezvousCore.on_udp)."""
        # heartbeats of peers not in memory that read the database (see _take_back)
        self.take_backs = FairBudget(
            settings.take_back_reads_per_second, TAKE_BACK_BURST_SECONDS, min_burst=64.0
        )
        self.absent_ids = RecentKeys(ABSENT_IDS_BITS_LOG2, ABSENT_IDS_PERIOD)
        self.warm_waiters: WarmWaiters | None = None
        """Heartbeats waiting for their row while a warm start runs (warm_waiters.py)."""
        self._legacy_pacer = RateTable(1.0 / LEGACY_UPDATE_INTERVAL, 1.0, MAX_PACED_PEERS)
        self._legacy_total = TokenBucket(
            LEGACY_UPDATES_PER_SECOND, LEGACY_UPDATES_PER_SECOND * 10, 0.0
        )
        self._software_asks: BoundedTable[Addr, float] = BoundedTable(MAX_SOFTWARE_ASKS)
        self._software_reply = (
            pb.RendezvousMessage(
                software_update=pb.SoftwareUpdate(url=settings.software_url)
            ).SerializeToString()
            if settings.software_version
            else b""
        )
        self._announcements: dict[int, tuple[str, str]] = {}
        """Log lines for writes in flight (by id of the write): said once stored; with
        the transport the registration came by, for the metrics."""

    # -- RegisterPeer (UDP heartbeat every 15 s): the hot path ----------------------------

    def register_peer(
        self, msg: pb.RegisterPeer, src: Addr, now: float, session: Link | None = None
    ) -> list[Action]:
        """RegisterPeer by UDP from ``src``, or on a TCP/WebSocket ``session``."""
        # Over UDP only refusals are counted here; the metrics derive the accepted ones
        # from stats["register_peer"], so the hot path counts nothing more.
        peer_id = msg.id
        if not peer_id:
            self.s.outcomes["heartbeat", "udp", "no_id"] += 1
            return []
        if session is not None:
            return self._register_peer_on_session(msg, session, now)
        s = self.s
        if s.doubtful and peer_id in s.doubtful:
            return self._verify_then_register(msg, src, now)
        key = addr_key(src)
        result = s.peers.heartbeat(peer_id, key, now, is_loopback(src[0]))
        if result is None:
            return self._take_back(peer_id, msg.serial, src, key, now)
        if result == ACCEPTED and s.serial <= msg.serial and not self._software_reply:
            return [SendUdp(REGISTER_PEER_OK, src)]
        return self._heartbeat_answer(result, peer_id, msg.serial, src, now)

    def _heartbeat_answer(
        self, result: int, peer_id: str, serial: int, src: Addr, now: float
    ) -> list[Action]:
        """The answer to a UDP heartbeat that met a record (§6.3)."""
        if result != ACCEPTED:
            self.s.outcomes[
                "heartbeat", "udp", "ip_changed" if result == IP_CHANGED else "no_key"
            ] += 1
            if (
                result == IP_CHANGED
                and self.s.reg_pk_counts.get(peer_id, (0, 0.0))[0] <= 2
                and (n := self.s.log_throttle.count("ip change", now))
            ):
                log.info(
                    "IP change of %s from %s to %s (%d this minute)",
                    peer_id,
                    self.s.peers.registered_ip(peer_id),
                    src[0],
                    n,
                )
            return [SendUdp(REGISTER_PEER_SEND_PK, src)]
        if self.s.serial > serial or self._software_reply:
            return [
                SendUdp(REGISTER_PEER_OK, src),
                *self._legacy_updates(peer_id, serial, src, now),
            ]
        return [SendUdp(REGISTER_PEER_OK, src)]

    def _verify_then_register(self, msg: pb.RegisterPeer, src: Addr, now: float) -> list[Action]:
        """Cluster mode, after the bus was unreachable: is this peer still ours? Read the
        directory first (which drops it if another node holds it), then decide."""

        def then(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if not ok:  # directory unreachable: a held peer keeps working meanwhile
                self.s.doubtful.discard(msg.id)
            return self.register_peer(msg, src, now)

        return self.s.with_peer(msg.id, now, then, fresh=True)

    def _take_back(
        self, peer_id: str, serial: int, src: Addr, key: bytes, now: float
    ) -> list[Action]:
        """A heartbeat for an id that is not in memory (hbbs restarted, or the record was
        evicted): rather than make the client re-register (a million RegisterPk after a
        restart), read its record from the database and decide the heartbeat by the same
        rule as in memory, so it is accepted only from the IP on record (§6.3).

        Forged heartbeats can name any id from any source, so: ids the database lacks are
        remembered (no read for them again), and reads are budgeted in total, per source
        and per source prefix (the budget is sized to what batched reads sustain,
        bench/RESULTS.md). A heartbeat over the budget gets no answer: the client resends
        it 3 s later, and a repeated request gets through the budget's retry lane.

        In cluster mode the shared directory decides who holds a peer: its heartbeat gets
        ``request_pk`` as before, and the RegisterPk that follows claims it.
        """
        s = self.s
        if (
            len(peer_id) < 6
            or s.settings.node_name
            or not id_format_ok(peer_id)
            # carried: an unknown id that keeps heartbeating stays remembered, at no read
            or self.absent_ids.seen(peer_id, carry=True)
        ):
            s.outcomes["heartbeat", "udp", "unknown_id"] += 1
            return [SendUdp(REGISTER_PEER_SEND_PK, src)]
        # Over the read limits the heartbeat is not answered now; during a warm start it
        # is answered when the scan enters its row (warm_waiters.py), if that comes first.
        if s.pending_loads >= MAX_TAKE_BACK_LOADS:
            if self._park(peer_id, serial, key):
                return []
            s.stats["heartbeat_lookup_queue_full"] += 1
            s.outcomes["heartbeat", "udp", "unanswered"] += 1
            return []
        refused = self.take_backs.admit(src, peer_id, now)
        if refused:
            if self._park(peer_id, serial, key):
                return []
            self._budget_refused("take_back", refused, peer_id, src)
            s.outcomes["heartbeat", "udp", "unanswered"] += 1
            return []
        if self.warm_waiters is not None:
            self.warm_waiters.forget(peer_id)  # answered by this read, not again by the scan
        s.stats["heartbeat_lookups"] += 1
        # a partial, not a closure: thousands wait at once after a restart, and each
        # closure cell would be one more object for the cyclic GC to walk
        return s.with_peer_in_memory(
            peer_id, now, partial(self._taken_back, peer_id, serial, src, key)
        )

    def _taken_back(
        self, peer_id: str, serial: int, src: Addr, key: bytes, found: bool, now: float, ok: bool
    ) -> list[Action]:
        """The heartbeat of :meth:`_take_back`, decided once the record was read."""
        s = self.s
        if not ok:  # the database failed: as before take-back, the client re-registers
            s.outcomes["heartbeat", "udp", "database_error"] += 1
            return [SendUdp(REGISTER_PEER_SEND_PK, src)]
        if not found:
            self.absent_ids.mark(peer_id)
            s.outcomes["heartbeat", "udp", "unknown_id"] += 1
            return [SendUdp(REGISTER_PEER_SEND_PK, src)]
        return self._answer_loaded(peer_id, serial, src, key, now, "heartbeat_taken_back")

    def _answer_loaded(
        self, peer_id: str, serial: int, src: Addr, key: bytes, now: float, counter: str
    ) -> list[Action]:
        """A heartbeat that waited for its database row, decided by the in-memory rule
        (§6.3) now that the row is in memory; ``counter`` counts it if accepted."""
        s = self.s
        result = s.peers.heartbeat(peer_id, key, now, is_loopback(src[0]))
        if result is None:  # read while the table was full: not kept in memory
            s.outcomes["heartbeat", "udp", "unknown_id"] += 1
            return [SendUdp(REGISTER_PEER_SEND_PK, src)]
        if result == ACCEPTED:
            s.stats[counter] += 1
        return self._heartbeat_answer(result, peer_id, serial, src, now)

    # -- warm start (adapters/warm_start.py): heartbeats wait for the scan's rows ----------

    def _park(self, peer_id: str, serial: int, key: bytes) -> bool:
        """Leave the heartbeat to the warm start's row, if one runs and has room; like a
        read in flight, a parked heartbeat is counted once it is answered."""
        waiters = self.warm_waiters
        if waiters is None:
            return False
        if peer_id in waiters:  # a resend, or a forgery: the first one is answered
            self.s.outcomes["heartbeat", "udp", "unanswered"] += 1
            return True
        if not waiters.park(peer_id, serial, key):
            return False
        self.s.stats["heartbeat_warm_waits"] += 1
        return True

    def warm_start_began(self) -> None:
        self.warm_waiters = WarmWaiters()

    def warm_rows_entered(self, rows: Sequence[CompactRow], now: float) -> list[Action]:
        """The answers to the heartbeats that waited for ``rows``, just read by the warm
        start (entered into memory, or not if the table was full: then ``request_pk``)."""
        waiters = self.warm_waiters
        if waiters is None or not len(waiters):
            return []
        actions: list[Action] = []
        for peer_id, serial, key in waiters.claim(row[0] for row in rows):
            src = addr_from_key(key)
            actions += self._answer_loaded(
                peer_id, serial, src, key, now, "heartbeat_warm_answered"
            )
        return actions

    def warm_start_ended(self) -> int:
        """Stop parking heartbeats; returns how many still waited (ids the scan did not
        enter: their clients resend within 3 s and are taken back then)."""
        waiters, self.warm_waiters = self.warm_waiters, None
        left = 0 if waiters is None else len(waiters)
        self.s.outcomes["heartbeat", "udp", "unanswered"] += left
        return left

    def _legacy_updates(self, peer_id: str, serial: int, src: Addr, now: float) -> list[Action]:
        """ConfigUpdate and SoftwareUpdate for a peer whose heartbeat was just accepted
        from its registered address: never to unregistered ids or strangers (a forged
        source would make us an amplifier), paced per peer and in total."""
        s = self.s
        wants_config = s.serial > serial
        asked = self._software_asks.get(src) if self._software_reply else None
        wants_software = asked is not None and now - asked < SOFTWARE_ASK_TTL
        if not (wants_config or wants_software):
            return []
        if not self._legacy_pacer.take(peer_id, now) or not self._legacy_total.take(now):
            s.stats["legacy_updates_paced"] += 1
            return []
        out: list[Action] = []
        if wants_config:
            out.append(SendUdp(s.config_update_payload, src))
        if wants_software:
            self._software_asks[src] = EXPIRED  # answered (the timer sweeps it out)
            out.append(SendUdp(self._software_reply, src))
        return out

    def software_update(self, msg: pb.SoftwareUpdate, src: Addr, now: float) -> list[Action]:
        """Legacy SoftwareUpdate (-u, §6.14): the answer is many times larger than the
        request and the source may be forged, so it is not sent back at once; it goes
        with the asker's next heartbeat accepted from a registered peer's address."""
        version = self.s.settings.software_version
        if not version or msg.url == version:
            return []
        self._software_asks[src] = now
        return []

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
        s.outcomes["heartbeat", link.transport.value, "request_pk" if request_pk else "ok"] += 1
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
        answer: Reply,
        now: float,
        session: Link | None = None,
        repeated: bool = False,
    ) -> list[Action]:
        """RegisterPk from ``src`` (UDP, or a TCP/WebSocket ``session`` to bind on success),
        answered with ``answer(result)``. ``repeated``: the shedding gate found it to be a
        repeat (the look-up budget's retry lane is open to it)."""
        s = self.s
        peer_id = msg.id
        transport = "udp" if session is None else session.transport.value

        def reply(result: int) -> Action:
            s.outcomes["register_pk", transport, RESULT_NAMES[result]] += 1
            return answer(result)

        if len(msg.pk) > MAX_PK_BYTES:  # no such key exists (Ed25519: 32 bytes): malformed
            s.stats["register_pk_malformed"] += 1
            return []
        if len(peer_id.encode()) < 6:
            s.stats["register_pk_refused"] += 1
            return [reply(Result.UUID_MISMATCH)]
        if not id_format_ok(peer_id):
            s.stats["register_pk_refused"] += 1
            return [reply(Result.INVALID_ID_FORMAT)]
        if not reg_pk_allowed(*s.reg_pk_counts.get(peer_id, (0, EXPIRED)), now)[0]:
            # Refused before the database is read: a flood for one id costs no I/O; and
            # before the IP blocker records a new source: a flood from new sources costs
            # no table entry either.
            s.stats["register_pk_too_frequent"] += 1
            return [reply(TOO_FREQUENT)]
        ip = src[0]
        if not s.blocker.allow(ip, peer_id, now):
            s.stats["register_pk_too_frequent"] += 1
            log.debug("RegisterPk of %s from %s refused by the IP blocker", peer_id, ip)
            return [reply(TOO_FREQUENT)]
        refused = self.lookups.admit(src, peer_id, now, repeated)
        if refused:
            self._budget_refused("lookup", refused, peer_id, src)
            return [reply(TOO_FREQUENT)]
        return self._look_up_and_decide(
            peer_id, bytes(msg.uuid), bytes(msg.pk), src, reply, answer, now, session, 1
        )

    def _look_up_and_decide(
        self,
        peer_id: str,
        uuid: bytes,
        pk: bytes,
        src: Addr,
        reply: Reply,
        answer: Reply,
        now: float,
        session: Link | None,
        attempt: int,
    ) -> list[Action]:
        """The §6.4 decision on the peer's stored details; in cluster mode a lost race for
        the directory entry reads and decides again, up to CLAIM_ATTEMPTS times."""
        s = self.s

        def decide(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if not ok:
                return [reply(Result.SERVER_ERROR)]
            if record is None:
                if self._backlog_full(src, peer_id):
                    # before the budget: what the database cannot take yet spends none of it
                    self._backlog_refused(peer_id, src, now)
                    return [reply(TOO_FREQUENT)]
                refused = self.new_ids.admit(src, peer_id, now)
                if refused:
                    self._budget_refused("new_id", refused, peer_id, src)
                    return [reply(TOO_FREQUENT)]
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
                    return [reply(TOO_FREQUENT)]
                record = record or PeerRecord()
                if s.owner_elsewhere(record) is None:
                    s.peers.put(peer_id, record)
                # else (cluster mode) held here only once the claim is decided (_apply)
            if attempt < CLAIM_ATTEMPTS and s.settings.node_name:

                def redo(now: float) -> list[Action]:
                    args = (peer_id, uuid, pk, src, reply, answer, now, session, attempt + 1)
                    return self._look_up_and_decide(*args)

                return self._apply(
                    record, peer_id, uuid, pk, src, reply, answer, now, session, redo
                )
            return self._apply(record, peer_id, uuid, pk, src, reply, answer, now, session)

        # A lost race is decided again on a read begun after the refusal: one already in
        # flight may predate the winning write.
        return s.with_peer(peer_id, now, decide, need_details=True, fresh=attempt > 1)

    def writes_in_flight(self) -> int:
        """Registrations waiting for their database write."""
        return len(self._announcements)

    def _backlog_full(self, src: Addr, peer_id: str) -> bool:
        """Whether a new ID must wait because too many writes are in flight already.

        A client refused for this reason repeats the same request from the same address
        and port (15 s later, §12), which a forger spraying new IDs never does: such a
        repeat may use a reserve of a further fifth of the bound, so that genuine devices
        still register while a flood keeps the writer behind (its rows go slower when the
        CPU is contended: the database threads run at a lower priority than the loop).
        """
        in_flight = len(self._announcements)
        cap = self.s.settings.max_writes_in_flight
        if in_flight < cap:
            return False
        if in_flight >= cap + cap // RETRY_SHARE:
            return True
        # the new-ID budget's own marks: a repeat seen here also finds its retry lane
        return not self.new_ids.marks.seen_or_mark((src[0], src[1], peer_id))

    def _backlog_refused(self, peer_id: str, src: Addr, now: float) -> None:
        stats = self.s.stats
        stats["register_pk_write_backlog_refused"] += 1
        if n := self.s.log_throttle.count("write backlog", now):
            log.warning(
                "RegisterPk of new ID %s from %s refused: %d registrations are already "
                "waiting for the database, the most allowed; new IDs arrive faster than it "
                "stores them (a flood of forged requests, or a slow disk?); the client "
                "retries (%d this minute, %d so far)",
                peer_id,
                src[0],
                len(self._announcements),
                n,
                stats["register_pk_write_backlog_refused"],
            )

    def _budget_refused(self, budget: str, limit: str, peer_id: str, src: Addr) -> None:
        """Count a refusal by a fair budget and say (throttled) what is happening."""
        stats = self.s.stats
        if budget == "take_back":
            key = f"heartbeat_take_back_{limit}_refused"
            subject, outcome = "heartbeat", "not answered (the client repeats it)"
        else:
            key = f"register_pk_{budget}_{limit}_refused"
            subject, outcome = "RegisterPk", "refused"
        stats[key] += 1
        if not worth_logging(stats[key]):
            return
        if budget == "new_id":
            what, option = "new IDs", "NEW_PEERS_PER_SECOND"
            rate = self.new_ids.rate
        elif budget == "take_back":
            what, option = "heartbeats of peers read back from the database", "the read budget"
            rate = self.take_backs.rate
        else:
            what, option = "registrations that read the database", "the lookup rate"
            rate = self.lookups.rate
        if limit == GLOBAL_LIMIT:
            why = (
                f"{what} arrive faster than {option}={rate:g} per second allows (a flood of "
                "forged requests?); clients that repeat their request still get in"
            )
            if budget == "new_id":
                why += (
                    f"; while they do, and for {FLOOD_HOLD:g} s after, first-time ones get "
                    f"{rate / FLOOD_SHARE:g} per second (each is a database write)"
                )
        else:
            part = "source prefix (IPv4 /24, IPv6 /56)" if limit == PREFIX_LIMIT else "source"
            why = f"this {part} has used its share of {option}={rate:g} per second for {what}"
        log.warning(
            "%s of %s from %s %s: %s; %d so far",
            subject,
            peer_id,
            src[0],
            outcome,
            why,
            stats[key],
        )

    def housekeeping(self, now: float, budget: int = REGISTRATION_SLICE) -> None:
        """Expire budgets, pacing and the remembered SoftwareUpdate asks, looking at most
        at ``budget`` entries of each table."""
        self.new_ids.housekeeping(now, budget)
        self.lookups.housekeeping(now, budget)
        self.take_backs.housekeeping(now, budget)
        self.shedding.report(now)
        self.absent_ids.rotate(now)
        self._legacy_pacer.sweep(now, budget)
        self._software_asks.sweep(budget, lambda asked: now - asked >= SOFTWARE_ASK_TTL)

    def _apply(
        self,
        record: PeerRecord,
        peer_id: str,
        uuid: bytes,
        pk: bytes,
        src: Addr,
        reply: Reply,
        uncounted: Reply,
        now: float,
        session: Link | None,
        redo: Callable[[float], list[Action]] | None = None,
    ) -> list[Action]:
        """``reply`` counts the answer; ``uncounted`` builds the answers of a write, which
        are counted once the write's outcome is known (persist_succeeded/failed)."""
        s = self.s
        ip = src[0]
        details = record.details
        assert details is not None  # with_peer(need_details=True) loaded them
        old_ip = details.ip
        if not details.uuid:
            changed, ip_changed = True, False
        elif details.uuid == uuid:
            if old_ip != ip and record.pk != pk:
                if n := s.log_throttle.count("hijack", now):
                    log.info(
                        "RegisterPk of %s from %s refused: new key and new IP (%d this minute)",
                        peer_id,
                        ip,
                        n,
                    )
                s.stats["register_pk_refused"] += 1
                return [reply(Result.UUID_MISMATCH)]
            ip_changed = old_ip != ip
            changed = record.pk != pk or ip_changed
        else:
            if n := s.log_throttle.count("not owner", now):
                log.info(
                    "RegisterPk of %s from %s refused: id owned by another machine "
                    "(%d this minute)",
                    peer_id,
                    ip,
                    n,
                )
            s.stats["register_pk_refused"] += 1
            return [reply(Result.UUID_MISMATCH)]
        count, last = s.reg_pk_counts.get(peer_id, (0, EXPIRED))
        allowed, count = reg_pk_allowed(count, last, now)
        if not allowed:
            s.stats["register_pk_too_frequent"] += 1
            return [reply(TOO_FREQUENT)]
        s.reg_pk_counts[peer_id] = (count, now)
        if s.peers.get(peer_id) is not record:  # cluster mode: a peer held elsewhere
            s.peers.put(peer_id, record)
            s.remote.pop(peer_id, None)
        if ip_changed:
            s.ip_changes.record(peer_id, ip, now)
        # TCP/WS clients never send RegisterPeer, which carries ConfigUpdate by UDP: a new
        # session gets the configured serial and rendezvous servers after its answer.
        extra: list[Action] = []
        if session is not None:
            new_binding = s.sessions.get(session) != peer_id
            if not s.bind_session(session, peer_id, record, now):
                return [reply(TOO_FREQUENT)]
            if new_binding and s.serial > 0:
                extra.append(Send(session, s.config_update_payload))
        # Cluster mode: a peer held by another node (or by none) is claimed for this one.
        holder = details.owner
        claim = bool(s.settings.node_name) and holder != s.settings.node_name
        if not changed and not claim:
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
            said = f"new peer {peer_id} registered from {format_addr(src)}"
        elif changed:
            write = UpdatePeer(details.guid, peer_id, pk, ip, details.revision)
            what = "key changed" if pk_changed else "IP changed"
            said = f"peer {peer_id} re-registered from {format_addr(src)} ({what})"
        else:
            write = ClaimPeer(peer_id, details.revision)
            said = f"peer {peer_id} moved here from {holder or 'no node'} ({format_addr(src)})"
        transport = "udp" if session is None else session.transport.value
        self._announcements[id(write)] = (said, transport)  # logged once the write is stored
        s.stats["register_pk_stored"] += 1
        on_ok: list[Action] = [uncounted(Result.OK), *extra]
        on_fail: list[Action] = [uncounted(Result.SERVER_ERROR)]
        if not s.settings.node_name:
            return [Persist(write, on_ok, on_fail)]
        if claim:
            s.stats["register_pk_claims"] += 1
        return [
            Persist(
                write,
                on_ok,
                on_fail,
                on_busy=[uncounted(TOO_FREQUENT)],
                redo=redo,
                evict=holder if claim else "",
            )
        ]

    def persist_succeeded(self, write: StoreWrite) -> None:
        """A registration is stored: only now is it worth a log line."""
        announced = self._announcements.pop(id(write), None)
        if announced is None:
            return
        said, transport = announced
        self.s.outcomes["register_pk", transport, "ok"] += 1
        self.s.outcomes["stored", "-", "new" if isinstance(write, InsertPeer) else "update"] += 1
        if n := self.s.log_throttle.count("registered"):
            log.info("%s (%d this minute)", said, n)

    def persist_failed(self, write: StoreWrite, failure: StoreFailure, quiet: bool = False) -> None:
        """Forget the in-memory record whose write failed: it reloads from the database.
        ``quiet``: a race for a shared directory entry, decided again (not an error)."""
        announced = self._announcements.pop(id(write), None)
        if announced is not None and not quiet:
            self.s.outcomes["register_pk", announced[1], "server_error"] += 1
        peer_id = write.new_id if isinstance(write, RenamePeer) else write.peer_id
        self.s.peers.remove(peer_id)
        if quiet:
            return
        self.s.stats["db_errors"] += 1
        if failure.id_taken:
            if n := self.s.log_throttle.count("id taken"):
                log.warning(
                    "database refused the write for %s: the id is taken (%s); its record "
                    "will be reloaded (%d this minute)",
                    peer_id,
                    failure.reason,
                    n,
                )
        elif n := self.s.log_throttle.count("write failed"):
            log.error(
                "database write for %s failed: %s; its record will be reloaded (%d this minute)",
                peer_id,
                failure.reason,
                n,
                exc_info=failure.bug,
            )
