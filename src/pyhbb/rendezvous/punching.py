"""Connecting A to B: punch requests, B's answers and relay requests (docs/protocol.md §6.6-6.10).

A's request arrives on a TCP/WebSocket link that stays open in the requester table; the
server tells B (by UDP, or over B's registration session) and forwards B's answer, which
arrives on a new connection from B, to A's link.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from google.protobuf.message import Message

from pyhbb.net.hostport import format_addr
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import Action, DeliverAnswer, PunchViaOwner, RelayViaOwner, Send
from pyhbb.rendezvous.links import Link
from pyhbb.rendezvous.messages import (
    PUNCH_ID_NOT_EXIST,
    PUNCH_LICENSE_MISMATCH,
    PUNCH_OFFLINE,
    Failure,
    oversized_field,
    punch_failure,
)
from pyhbb.rendezvous.peer_registry import PeerRecord
from pyhbb.rendezvous.state import CoreState, PeerCont
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

DB_FAILURE_TEXT = "The ID server could not read its database; please try again later."
KNOWN_NAT_TYPES = frozenset(pb.NatType.values())
UDP_PUNCH_WINDOW = 30.0
MAX_UDP_PENDING = 10_000


def _decoded(data: bytes) -> Addr:
    ip, port = addr_mangle.decode(data)
    return addr_mangle.try_into_v4(ip), port


class Punching:
    """Punch-hole and relay-request flows between a requester A and a target B."""

    def __init__(self, state: CoreState, mangle_time: Callable[[], int]) -> None:
        self.s = state
        self.mangle_time = mangle_time
        """The 32-bit time mixed into IPv4 addresses (§4.1): a wall clock, injected."""
        self._udp_pending: OrderedDict[tuple[str, Addr], float] = OrderedDict()
        """UDP punch requests sent to B: (B's id, A's address) → time, oldest first."""

    def _oversized(self, what: str, msg: Message, addr: Addr) -> bool:
        """True (and said, throttled) when ``msg`` has a field larger than any client
        sends: such a message is not passed on (§3.4 sizes, messages.FIELD_CAPS)."""
        found = oversized_field(msg)
        if found is None:
            return False
        stats = self.s.stats
        stats["oversized_fields"] += 1
        if worth_logging(stats["oversized_fields"]):
            field, size, cap = found
            log.warning(
                "%s from %s dropped: its %s is %d bytes, more than the %d a client sends "
                "(%d such messages so far)",
                what,
                format_addr(addr),
                field,
                size,
                cap,
                stats["oversized_fields"],
            )
        return True

    # -- A → hbbs --------------------------------------------------------------------------

    def punch_hole_request(self, link: Link, msg: pb.PunchHoleRequest, now: float) -> list[Action]:
        s = self.s
        s.stats["punch_requests"] += 1
        transport = link.transport.value

        def outcome(result: str) -> None:
            s.outcomes["punch", transport, result] += 1

        if self._oversized("punch request", msg, link.addr):
            outcome("oversized")
            return []
        key = s.settings.enforced_key
        if key and msg.licence_key != key:
            outcome("key_mismatch")
            if n := s.log_throttle.count("key mismatch", now):
                log.info(
                    "punch request from %s to %s refused: key mismatch (%d this minute)",
                    format_addr(link.addr),
                    msg.id,
                    n,
                )
            return [Send(link, PUNCH_LICENSE_MISMATCH)]
        if msg.id in s.disabled:
            outcome("disabled")
            self._log_disabled("punch", link, msg.id, now)
            return [Send(link, PUNCH_OFFLINE)]

        def decide(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if not ok:
                outcome("server_error")
                return [Send(link, punch_failure(Failure.ID_NOT_EXIST, DB_FAILURE_TEXT))]
            if record is None:
                outcome("id_not_exist")
                log.debug(
                    "punch request from %s: %s does not exist", format_addr(link.addr), msg.id
                )
                return [Send(link, PUNCH_ID_NOT_EXIST)]
            holder = s.owner_elsewhere(record)
            if holder:  # cluster mode: B's NAT only lets in the node it registered with
                outcome("to_other_node")
                relay = s.relays.next()
                return [PunchViaOwner(holder, link, msg.id, msg.SerializeToString(), relay)]
            if not record.online(now) or (record.addr is None and record.session is None):
                if s.settings.node_name and holder is None and not rechecked:
                    rechecked.append(True)  # held here but silent: moved without an evict?
                    return s.with_peer(msg.id, now, decide, fresh=True)
                outcome("offline")
                log.debug("punch request from %s: %s is offline", format_addr(link.addr), msg.id)
                return [Send(link, PUNCH_OFFLINE)]
            return self._notify_target(link, msg, record, now)

        rechecked: list[bool] = []
        doubtful = s.doubtful and msg.id in s.doubtful
        return s.with_peer(msg.id, now, decide, fresh=bool(doubtful))

    def _log_disabled(self, what: str, link: Link, peer_id: str, now: float) -> None:
        if n := self.s.log_throttle.count("disabled target", now):
            log.info(
                "%s request from %s to %s answered offline: disabled in the console "
                "(%d this minute)",
                what,
                format_addr(link.addr),
                peer_id,
                n,
            )

    def _notify_target(
        self, link: Link, msg: pb.PunchHoleRequest, record: PeerRecord, now: float
    ) -> list[Action]:
        action = self.notify_held_peer(link, msg, record, now, self.s.relays.next())
        if action is None:
            return [Send(link, PUNCH_OFFLINE)]
        return [action]

    def notify_held_peer(
        self,
        link: Link,
        msg: pb.PunchHoleRequest,
        record: PeerRecord,
        now: float,
        relay_server: str,
    ) -> Action | None:
        """The PunchHole (or FetchLocalAddr) for B, held here, on behalf of the requester
        ``link`` (in cluster mode a stand-in for A's connection on another node); ``None``
        when B cannot be reached."""
        s = self.s
        a_ip = link.addr[0]
        b_ip = s.peer_ip(record)
        s.punch_log.record(a_ip, b_ip, msg.id, now)
        peer_is_lan = s.lan.is_lan(b_ip)
        is_lan = s.lan.is_lan(a_ip)
        nat_type = msg.nat_type
        if s.settings.always_use_relay or peer_is_lan != is_lan:
            if peer_is_lan:
                relay_server = s.lan.local_ip
            nat_type = pb.SYMMETRIC
        # Upstream still sends FetchLocalAddr to same-intranet peers when relay is forced,
        # which does not force relay; an admin who forces relay means it, so we do not.
        same_intranet = (
            not link.is_ws
            and not s.settings.always_use_relay
            and ((peer_is_lan and is_lan) or b_ip == a_ip)
        )
        socket_addr = addr_mangle.encode(link.addr, self.mangle_time())
        out: pb.RendezvousMessage
        if same_intranet:
            out = pb.RendezvousMessage(
                fetch_local_addr=pb.FetchLocalAddr(
                    socket_addr=socket_addr,
                    relay_server=relay_server,
                    socket_addr_v6=msg.socket_addr_v6,
                )
            )
        else:
            out = pb.RendezvousMessage(
                punch_hole=pb.PunchHole(
                    socket_addr=socket_addr,
                    relay_server=relay_server,
                    nat_type=nat_type,
                    force_relay=msg.force_relay,
                    upnp_port=msg.upnp_port,
                    socket_addr_v6=msg.socket_addr_v6,
                    udp_port=msg.udp_port if s.settings.udp_punch else 0,
                )
            )
        action = s.route(record, out.SerializeToString())
        transport = link.transport.value
        if action is None:
            s.outcomes["punch", transport, "offline"] += 1
            return None
        s.outcomes["punch", transport, "forwarded_lan" if same_intranet else "forwarded"] += 1
        if s.settings.udp_punch and msg.udp_port and not same_intranet:
            self._expect_udp_answer(msg.id, link.key, now)
        if n := s.log_throttle.count("punch", now):
            log.info(
                "punch request from %s to %s (%s)%s (%d this minute)",
                format_addr(link.addr),
                msg.id,
                b_ip,
                " same intranet" if same_intranet else "",
                n,
            )
        return action

    def _expect_udp_answer(self, peer_id: str, requester: Addr, now: float) -> None:
        pending = self._udp_pending
        pending.pop((peer_id, requester), None)  # re-insert at the end: newest last
        if len(pending) >= MAX_UDP_PENDING:
            pending.popitem(last=False)  # O(1), unlike deleting a plain dict's first key
        pending[(peer_id, requester)] = now

    def udp_punch_hole_sent(self, msg: pb.PunchHoleSent, src: Addr, now: float) -> list[Action]:
        """B's PunchHoleSent by UDP (UDP punching, §7.9), accepted only when it answers a
        pending request and comes from B's registered IP: we never reflect to strangers."""
        s = self.s
        if self._oversized("UDP punch answer", msg, src):
            return []
        requester = _decoded(msg.socket_addr)
        record = s.peers.get(msg.id)
        # Check the sender before consuming the pending request: a stranger's datagram must
        # not use it up.
        if record is None or not record.online(now) or s.peer_ip(record) != src[0]:
            s.stats["udp_punch_sent_dropped"] += 1
            return []
        asked = self._udp_pending.pop((msg.id, requester), None)
        if asked is None or now - asked > UDP_PUNCH_WINDOW:
            s.stats["udp_punch_sent_dropped"] += 1
            return []
        payload = self._punch_answer(msg, src, record, is_udp=True)
        return self._deliver(requester, payload, "UDP punch answer", msg.id)

    def request_relay(self, link: Link, msg: pb.RequestRelay, now: float) -> list[Action]:
        s = self.s
        s.stats["relay_requests"] += 1
        transport = link.transport.value
        if self._oversized("relay request", msg, link.addr):
            s.outcomes["relay", transport, "oversized"] += 1
            return []
        if msg.id in s.disabled:
            # The answer A gets for an offline peer's punch request: it stops at once
            # instead of waiting for B's answer on each of its attempts.
            s.outcomes["relay", transport, "disabled"] += 1
            self._log_disabled("relay", link, msg.id, now)
            return [Send(link, PUNCH_OFFLINE)]
        record = s.peers.get(msg.id)  # memory only, as upstream (§6.9)
        if record is None and s.settings.node_name:
            # cluster mode: B may be held by another node (directory, or the recent cache)
            return s.with_peer(msg.id, now, lambda r, now, ok: self._relay_to(link, msg, r, now))
        return self._relay_to(link, msg, record, now)

    def _relay_to(
        self, link: Link, msg: pb.RequestRelay, record: PeerRecord | None, now: float
    ) -> list[Action]:
        s = self.s
        transport = link.transport.value
        if record is None:
            s.outcomes["relay", transport, "not_in_memory"] += 1
            log.debug("relay request from %s: %s not in memory", format_addr(link.addr), msg.id)
            return []
        fwd = pb.RequestRelay()
        fwd.CopyFrom(msg)
        fwd.DiscardUnknownFields()  # passed on by UDP: only what the protocol defines
        fwd.socket_addr = addr_mangle.encode(link.addr, self.mangle_time())
        payload = pb.RendezvousMessage(request_relay=fwd).SerializeToString()
        holder = s.owner_elsewhere(record)
        action: Action | None
        if holder is not None:
            action = RelayViaOwner(holder, msg.id, payload) if holder else None
        else:
            action = s.route(record, payload)
        if action is None:
            s.outcomes["relay", transport, "unreachable"] += 1
            return []
        s.outcomes["relay", transport, "forwarded"] += 1
        if n := s.log_throttle.count("relay", now):
            log.info(
                "relay request from %s to %s (uuid %s) (%d this minute)",
                format_addr(link.addr),
                msg.id,
                msg.uuid,
                n,
            )
        return [action]

    # -- B → hbbs → A ----------------------------------------------------------------------

    def _deliver(self, requester: Addr, payload: bytes, what: str, peer_id: str) -> list[Action]:
        target = self.s.requesters.take(requester)
        kind = what.lower().replace(" ", "_")  # from the fixed set of callers' words
        if target is None and self.s.settings.node_name:
            self.s.outcomes["answer", kind, "to_other_node"] += 1
            return [DeliverAnswer(requester, payload)]  # A may wait on another node
        self.s.outcomes[
            "answer", kind, "forwarded" if target is not None else "requester_gone"
        ] += 1
        if target is None:
            log.debug("%s from %s for %s: requester gone", what, peer_id, format_addr(requester))
            self.s.stats["answers_undeliverable"] += 1
            return []
        if n := self.s.log_throttle.count(what):
            log.info(
                "%s from %s forwarded to %s (%d this minute)",
                what,
                peer_id,
                format_addr(requester),
                n,
            )
        return [Send(target, payload)]

    def _punch_answer(
        self, msg: pb.PunchHoleSent, b_addr: Addr, record: PeerRecord | None, is_udp: bool
    ) -> bytes:
        """PunchHoleResponse telling A where B answered from (§6.7; UDP form §7.9)."""
        resp = pb.PunchHoleResponse(
            socket_addr=addr_mangle.encode(b_addr, self.mangle_time()),
            pk=self.s.signed_pk(record, msg.id, msg.version),
            relay_server=msg.relay_server,
            is_udp=is_udp,
            upnp_port=msg.upnp_port,
            socket_addr_v6=msg.socket_addr_v6,
        )
        if msg.nat_type in KNOWN_NAT_TYPES:
            resp.nat_type = msg.nat_type  # set in the oneof even for UNKNOWN_NAT (§3.1)
        return pb.RendezvousMessage(punch_hole_response=resp).SerializeToString()

    def punch_hole_sent(self, link: Link, msg: pb.PunchHoleSent, now: float) -> list[Action]:
        if self._oversized("punch answer", msg, link.addr):
            return []
        requester = _decoded(msg.socket_addr)

        def answer(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            payload = self._punch_answer(msg, link.addr, record, is_udp=False)
            return self._deliver(requester, payload, "punch answer", msg.id)

        return self._signed(msg.id, msg.version, now, answer)

    def local_addr(self, link: Link, msg: pb.LocalAddr, now: float) -> list[Action]:
        if self._oversized("local address", msg, link.addr):
            return []
        requester = _decoded(msg.socket_addr)

        def answer(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            resp = pb.PunchHoleResponse(
                socket_addr=msg.local_addr,
                pk=self.s.signed_pk(record, msg.id, msg.version),
                relay_server=msg.relay_server,
                socket_addr_v6=msg.socket_addr_v6,
            )
            resp.is_local = True
            payload = pb.RendezvousMessage(punch_hole_response=resp).SerializeToString()
            return self._deliver(requester, payload, "local address", msg.id)

        return self._signed(msg.id, msg.version, now, answer)

    def relay_response(self, link: Link, msg: pb.RelayResponse, now: float) -> list[Action]:
        s = self.s
        if self._oversized("relay answer", msg, link.addr):
            return []
        requester = _decoded(msg.socket_addr)
        fwd = pb.RelayResponse()
        fwd.CopyFrom(msg)
        fwd.DiscardUnknownFields()
        fwd.ClearField("socket_addr")
        peer_id = msg.id if msg.WhichOneof("union") == "id" else ""
        if fwd.relay_server:
            if s.lan.is_lan(requester[0]):
                fwd.relay_server = s.lan.local_ip
            elif s.lan.local_ip and fwd.relay_server == s.lan.local_ip:
                fwd.relay_server = s.relays.next()

        def answer(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if peer_id:
                fwd.pk = s.signed_pk(record, peer_id, msg.version)
            payload = pb.RendezvousMessage(relay_response=fwd).SerializeToString()
            return self._deliver(requester, payload, "relay answer", peer_id or "peer")

        return self._signed(peer_id, msg.version, now, answer)

    def _signed(self, peer_id: str, version: str, now: float, answer: PeerCont) -> list[Action]:
        """Run ``answer`` with B's record when a signature will be made, else at once."""
        if peer_id and version and self.s.settings.signing is not None:
            return self.s.with_peer(peer_id, now, answer)
        return answer(None, now, True)
