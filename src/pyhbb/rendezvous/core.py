"""The rendezvous protocol core: events in, actions out, no I/O (docs/architecture.md).

Adapters call :meth:`RendezvousCore.on_udp`, :meth:`on_frame` and :meth:`on_nat_frame`
with bytes, where they came from and ``now`` (monotonic seconds), and perform the actions
returned. Where the official server answers, pyhbb answers the same bytes; where the
official server has a quirk, docs/protocol.md's recommendation is followed.

The core reads no clock and draws no randomness itself: time comes with each event, and
the guid source and the AddrMangle time are injected. Admin operations (console, relay
health check) go through :attr:`RendezvousCore.admin`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from pyhbb.net.hostport import is_loopback
from pyhbb.rendezvous.actions import (
    Action,
    AwaitAnswer,
    Close,
    Evict,
    GatherOnline,
    InsertPeer,
    Persist,
    ProxyHttp,
    PunchViaOwner,
    RenamePeer,
    ResolveServers,
    Send,
    SendUdp,
    StoreFailure,
)
from pyhbb.rendezvous.admin import CoreAdmin
from pyhbb.rendezvous.id_change import IdChange
from pyhbb.rendezvous.links import Link, Transport
from pyhbb.rendezvous.messages import (
    PUNCH_OFFLINE,
    REGISTER_PK,
    config_update_problem,
    parse,
    register_pk_response,
)
from pyhbb.rendezvous.peer_registry import MAX_SWEEP_SLICE
from pyhbb.rendezvous.punching import Punching
from pyhbb.rendezvous.queries import Queries
from pyhbb.rendezvous.registration import REGISTRATION_SLICE, Registration
from pyhbb.rendezvous.shedding import DROP, PASS, PASS_REPEATED, SLIP_ANSWER
from pyhbb.rendezvous.state import CoreSettings, CoreState
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

MIN_TIMER_SLICE = 64  # entries per table per housekeeping call, however soon it comes
# Outcome counts of shed RegisterPk (the metrics' pyhbb_hbbs_register_pk), built once.
SHED_DROPPED = ("register_pk", "udp", "shed")
SHED_ANSWERED = ("register_pk", "udp", "too_frequent")
REGISTER_PK_TOO_FREQUENT = REGISTER_PK[pb.RegisterPkResponse.TOO_FREQUENT]
# The first byte of a RendezvousMessage whose first field is register_pk (field 15,
# length-delimited): how every client encodes one.
REGISTER_PK_TAG = bytes([15 << 3 | 2])


class RendezvousCore:
    """hbbs decisions for every message of docs/protocol.md §6 (sans-IO)."""

    def __init__(
        self,
        settings: CoreSettings,
        random_bytes: Callable[[int], bytes] = os.urandom,
        mangle_time: Callable[[], int] = addr_mangle.now_t,
    ) -> None:
        self.state = CoreState(settings, random_bytes)
        self.registration = Registration(self.state)
        self._shedding = self.registration.shedding
        self.punching = Punching(self.state, mangle_time)
        self.queries = Queries(self.state)
        self.id_change = IdChange(self.state)
        self.admin = CoreAdmin(self.state)
        self._last_timer: float | None = None

    # -- UDP on P (§6.2) --------------------------------------------------------------------

    def on_udp(self, data: bytes, src: Addr, now: float) -> list[Action]:
        # A flood of RegisterPk is shed before it is parsed (shedding.py); the datagram's
        # bytes tell a client's repeat, which resends the same ones.
        verdict = PASS
        if data[:1] == REGISTER_PK_TAG:
            verdict = self._shedding.check(src, data, now)
            if verdict >= DROP:
                return self._shed(verdict, src)
        msg = parse(data)
        if msg is None:
            self.state.stats["udp_malformed"] += 1
            log.debug("undecodable datagram of %d bytes from %s dropped", len(data), src)
            return []
        kind = msg.WhichOneof("union")
        if kind == "register_peer":
            self.state.stats["register_peer"] += 1
            return self.registration.register_peer(msg.register_peer, src, now)
        if kind == "register_pk":
            req = msg.register_pk
            if not req.uuid or not req.pk:
                self.state.outcomes["register_pk", "udp", "ignored"] += 1
                return []
            if data[:1] != REGISTER_PK_TAG:  # any other encoding meets the same gate
                verdict = self._shedding.check(src, data, now)
                if verdict >= DROP:
                    return self._shed(verdict, src)
            return self.registration.register_pk(
                req,
                src,
                lambda result: SendUdp(REGISTER_PK[result], src),
                now,
                repeated=verdict == PASS_REPEATED,
            )
        if kind == "configure_update":
            return self._configure_update(msg.configure_update, src)
        if kind == "software_update":
            return self.registration.software_update(msg.software_update, src, now)
        if kind == "punch_hole_sent" and self.state.settings.udp_punch:
            return self.punching.udp_punch_hole_sent(msg.punch_hole_sent, src, now)
        # PunchHoleRequest, PunchHoleSent, LocalAddr, ... are ignored on UDP on purpose:
        # answering them would make us a reflector (§6.2).
        self.state.stats["udp_ignored"] += 1
        return []

    def _shed(self, verdict: int, src: Addr) -> list[Action]:
        if verdict == SLIP_ANSWER:
            self.state.outcomes[SHED_ANSWERED] += 1
            return [SendUdp(REGISTER_PK_TOO_FREQUENT, src)]
        self.state.outcomes[SHED_DROPPED] += 1
        return []

    def _configure_update(self, msg: pb.ConfigUpdate, src: Addr) -> list[Action]:
        if not is_loopback(src[0]) or msg.serial <= self.state.serial:
            return []
        servers = [s for s in msg.rendezvous_servers if s]
        problem = config_update_problem(servers)
        if problem is not None:
            log.warning("ConfigureUpdate from %s ignored: %s", src[0], problem)
            return []
        return [ResolveServers(msg.serial, servers)]

    def adopt_config(self, serial: int, servers: list[str]) -> list[Action]:
        """Result of :class:`ResolveServers`: the new serial and the resolvable servers,
        pushed at once to the peers registered over TCP/WebSocket sessions."""
        s = self.state
        if serial <= s.serial:
            return []
        s.set_config(serial, servers)
        log.info("config serial %d, rendezvous servers %s", serial, ",".join(servers))
        return [Send(link, s.config_update_payload) for link in s.sessions]

    # -- TCP on P and WebSocket on P+2 (§6.5) ----------------------------------------------

    def on_frame(self, link: Link, payload: bytes, now: float) -> list[Action]:
        """One frame (TCP) or binary message (WebSocket) from a client connection.

        Only PunchHoleRequest and RequestRelay keep an ordinary connection open (A waits on
        it for B's answer), as upstream; registration sessions (§7.4) stay open for good.
        Every other outcome closes the connection after any reply.
        """
        s = self.state
        in_session = link in s.sessions
        if in_session:
            s.session_activity(link, now)
            if not payload:
                return []  # the client's heartbeat echo
        msg = parse(payload) if payload else None
        if msg is None:
            log.debug("%r: %s frame, closing", link, "empty" if not payload else "undecodable")
            return [Close(link)]
        kind = msg.WhichOneof("union")
        actions: list[Action]
        if kind == "punch_hole_request":
            s.requesters.register(link)
            actions = self.punching.punch_hole_request(link, msg.punch_hole_request, now)
            return self._awaiting(link, actions)
        if kind == "request_relay":
            s.requesters.register(link)
            return self._awaiting(link, self.punching.request_relay(link, msg.request_relay, now))
        if kind == "register_pk":
            req = msg.register_pk
            if req.old_id:
                return self.id_change.change_id(link, req, now)
            if req.pk and req.uuid:
                return self._register_on_session(link, req, now)
            s.outcomes["register_pk", link.transport.value, "not_support"] += 1
            actions = [Send(link, REGISTER_PK[pb.RegisterPkResponse.NOT_SUPPORT])]
        elif kind == "register_peer":
            return self.registration.register_peer(msg.register_peer, link.addr, now, link)
        elif kind == "punch_hole_sent":
            actions = self.punching.punch_hole_sent(link, msg.punch_hole_sent, now)
        elif kind == "local_addr":
            actions = self.punching.local_addr(link, msg.local_addr, now)
        elif kind == "relay_response":
            actions = self.punching.relay_response(link, msg.relay_response, now)
        elif kind == "test_nat_request":
            reply = self.queries.test_nat(link.addr[1], msg.test_nat_request, with_config=True)
            actions = [Send(link, reply)]
        elif kind == "online_request":
            # Not answered here upstream, but WebSocket clients send it to P+2 (§6.12).
            if s.settings.node_name:
                return [self._gather_online(link, msg.online_request, now, not in_session)]
            actions = [Send(link, self.queries.online(msg.online_request, now))]
        elif kind == "http_proxy_request":
            return self._http_proxy(link, payload)
        else:
            log.debug("%r: unhandled %s, closing", link, kind)
            actions = []
        if not in_session:
            actions.append(Close(link))
        return actions

    def _register_on_session(self, link: Link, req: pb.RegisterPk, now: float) -> list[Action]:
        """RegisterPk on TCP/WebSocket: the client's TCP mode (§7.4). Same checks as UDP;
        the answer carries keep_alive and the connection becomes the peer's route."""
        keep_alive = self.state.settings.keep_alive

        def reply(result: int) -> Action:
            return Send(link, register_pk_response(result, keep_alive))

        if not self.state.session_allowed(link):
            self.state.outcomes["register_pk", link.transport.value, "too_frequent"] += 1
            return [reply(pb.RegisterPkResponse.TOO_FREQUENT), Close(link)]
        actions = self.registration.register_pk(req, link.addr, reply, now, session=link)
        actions.append(self.registration.session_start(link))
        return actions

    def _http_proxy(self, link: Link, payload: bytes) -> list[Action]:
        if not link.secure:
            # API credentials must not cross the network in clear (§7.6).
            error = "The HTTP tunnel needs an encrypted connection (secure TCP)."
            reply = pb.RendezvousMessage(http_proxy_response=pb.HttpProxyResponse(error=error))
            return [Send(link, reply.SerializeToString()), Close(link)]
        self.state.stats["http_proxy_requests"] += 1
        return [ProxyHttp(link, payload)]

    def on_nat_frame(self, link: Link, payload: bytes, now: float) -> list[Action]:
        """The one frame read on P-1: a NAT test or an online query (§6.12)."""
        msg = parse(payload) if payload else None
        kind = msg.WhichOneof("union") if msg is not None else None
        actions: list[Action] = []
        if msg is not None and kind == "test_nat_request":
            reply = self.queries.test_nat(link.addr[1], msg.test_nat_request, with_config=False)
            actions.append(Send(link, reply))
        elif msg is not None and kind == "online_request":
            if self.state.settings.node_name:
                return [self._gather_online(link, msg.online_request, now, True)]
            actions.append(Send(link, self.queries.online(msg.online_request, now)))
        actions.append(Close(link))
        return actions

    def on_link_closed(self, link: Link, now: float) -> None:
        self.state.link_closed(link, now)

    # -- store results --------------------------------------------------------------------

    def peer_loaded(self, peer_id: str, row: StoredPeer | None, now: float) -> list[Action]:
        return self.state.peer_loaded(peer_id, row, now)

    def peer_load_failed(self, peer_id: str, failure: StoreFailure, now: float) -> list[Action]:
        """The look-up of ``peer_id`` failed: its waiters answer with a server error."""
        if n := self.state.log_throttle.count("read failed", now):
            log.error(
                "database read of %s failed (%d this minute): %s",
                peer_id,
                n,
                failure.reason,
                exc_info=failure.bug,
            )
        return self.state.peer_load_failed(peer_id, now)

    def write_done(self, persist: Persist, revision: int = 0) -> list[Action]:
        """The store performed ``persist.write`` (a shared directory: at ``revision``):
        the answers that waited for it, and the evict for the node that held the peer."""
        self.registration.persist_succeeded(persist.write)
        write = persist.write
        if isinstance(write, InsertPeer):
            self.state.disabled.discard(write.peer_id)  # a new row is not disabled
        elif isinstance(write, RenamePeer):
            self.state.disabled.rename(write.old_id, write.new_id)  # the row keeps its status
        if not self.state.settings.node_name or not revision:
            return persist.on_ok
        peer_id = write.new_id if isinstance(write, RenamePeer) else write.peer_id
        self.state.claims[peer_id] = revision
        if not persist.evict:
            return persist.on_ok
        old_id = write.old_id if isinstance(write, RenamePeer) else peer_id
        return [*persist.on_ok, Evict(persist.evict, old_id, revision)]

    def write_failed(
        self, persist: Persist, failure: StoreFailure, now: float | None = None
    ) -> list[Action]:
        """The store refused or failed ``persist.write``: forget the record (it reloads
        from the database) and answer the conflict or the failure. A shared directory's
        lost race is decided again from a fresh read while attempts remain."""
        lost_race = failure.stale or failure.id_taken
        retry = lost_race and persist.redo is not None and now is not None
        self.registration.persist_failed(persist.write, failure, quiet=retry)
        if failure.busy and persist.on_busy is not None:
            return persist.on_busy
        if retry and persist.redo is not None and now is not None:
            self.state.stats["directory_races"] += 1
            return persist.redo(now)
        if failure.id_taken and persist.on_conflict is not None:
            return persist.on_conflict
        return persist.on_fail

    # -- other nodes (cluster mode, docs/cluster.md §1.4) -----------------------------------

    def _awaiting(self, link: Link, actions: list[Action]) -> list[Action]:
        """A requester waits on ``link``: in cluster mode B's answer may reach any node."""
        if self.state.settings.node_name:
            return [AwaitAnswer(link.key), *actions]
        return actions

    def _gather_online(
        self, link: Link, msg: pb.OnlineRequest, now: float, close: bool
    ) -> GatherOnline:
        peers = list(msg.peers[: self.state.settings.max_online_query])
        states = self.queries.online_states(msg.peers, now)
        return GatherOnline(link, peers, states, close)

    def online_gathered(self, gather: GatherOnline, bitmaps: list[bytes]) -> list[Action]:
        """The other nodes' bitmaps for ``gather``: ORed with ours, then answered."""
        states = bytearray(gather.states)
        for bitmap in bitmaps:
            for i, byte in enumerate(bitmap[: len(states)]):
                states[i] |= byte
        reply = pb.RendezvousMessage(online_response=pb.OnlineResponse(states=bytes(states)))
        actions: list[Action] = [Send(gather.link, reply.SerializeToString())]
        if gather.close:
            actions.append(Close(gather.link))
        return actions

    def online_states(self, peers: list[str], now: float) -> bytes:
        """Which of ``peers`` this node holds online (another node's scatter request)."""
        return self.queries.online_states(peers, now)

    def on_owner_punch(
        self,
        peer_id: str,
        request: bytes,
        requester: Addr,
        is_ws: bool,
        relay_server: str,
        now: float,
    ) -> tuple[str, list[Action]]:
        """Another node asks us, B's holder, to pass A's punch request on to B: returns
        ``"ok"`` (sent from here, B's NAT knows our address), ``"offline"`` or
        ``"unknown"`` (not ours), and the actions to perform."""
        record = self.state.peers.get(peer_id)
        if record is None:
            return "unknown", []
        if not record.online(now):
            return "offline", []
        msg = pb.PunchHoleRequest()
        try:
            msg.ParseFromString(request)
        except Exception:  # DecodeError: a broken node, never a client
            return "unknown", []
        if msg.id != peer_id:
            return "unknown", []
        link = Link(requester, Transport.WS if is_ws else Transport.TCP)
        action = self.punching.notify_held_peer(link, msg, record, now, relay_server)
        if action is None:
            return "offline", []
        return "ok", [action]

    def owner_punch_answered(
        self, forward: PunchViaOwner, outcome: str, now: float
    ) -> list[Action]:
        """B's holder answered a :class:`PunchViaOwner` (``"gone"``: no such node, or no
        answer in time). Anything but ``"ok"`` gives A OFFLINE, as for a local peer."""
        if outcome == "ok":
            return []
        if outcome == "unknown":
            self.state.remote.pop(forward.peer_id, None)  # read the directory next time
        self.state.stats[f"punch_via_owner_{outcome}"] += 1
        return [Send(forward.link, PUNCH_OFFLINE)]

    def on_owner_relay(self, peer_id: str, payload: bytes) -> list[Action]:
        """Another node's RequestRelay for a peer we hold: route it to the peer."""
        record = self.state.peers.get(peer_id)
        if record is None:
            return []
        action = self.state.route(record, payload)
        return [] if action is None else [action]

    def on_answer(self, key: Addr, payload: bytes) -> list[Action]:
        """B's answer that reached another node, for a requester waiting here."""
        link = self.state.requesters.take(key)
        if link is None:
            self.state.stats["answers_undeliverable"] += 1
            return []
        return [Send(link, payload)]

    def on_evict(self, peer_id: str, revision: int, now: float) -> list[Action]:
        """Another node claimed ``peer_id`` at ``revision``: forget it, unless our own
        claim is newer (the evict was late)."""
        s = self.state
        if s.claims.get(peer_id, 0) > revision:
            return []
        s.remote.pop(peer_id, None)
        if peer_id not in s.peers:
            return []
        session = s.forget_peer(peer_id)
        s.stats["evicted_by_other_node"] += 1
        if n := s.log_throttle.count("evicted", now):
            log.info("peer %s registered with another node: forgotten (%d this minute)", peer_id, n)
        return [] if session is None else [Close(session)]

    # -- housekeeping ---------------------------------------------------------------------

    def on_timer(self, now: float) -> list[Action]:
        """Housekeeping: expire a slice of each large table, so each is fully swept about
        once a minute without ever stalling the loop. Each slice is a per-second share
        scaled by the time since the last call (at most a second's): called several times
        a second, the work is spread over them, since one second's share of every table
        at a million peers took 10-20 ms (bench/hbbs_stalls.py)."""
        s = self.state
        last, self._last_timer = self._last_timer, now
        share = 1.0 if last is None else min(1.0, max(0.0, now - last))

        def part(per_second: int) -> int:
            return max(MIN_TIMER_SLICE, round(per_second * share))

        s.blocker.prune_step(now, part(max(1000, len(s.blocker.entries) // 60)))
        s.ip_changes.prune_step(now, part(max(1000, len(s.ip_changes.entries) // 60)))
        s.reg_pk_counts.sweep(
            part(max(1000, len(s.reg_pk_counts) // 10)), lambda e: now - e[1] > 7.0
        )
        self.registration.housekeeping(now, part(REGISTRATION_SLICE))
        peers_per_second = min(max(1000, len(s.peers) // 60), MAX_SWEEP_SLICE)
        evicted = s.peers.evict_step(now, part(peers_per_second))
        if evicted:
            log.debug("evicted %d long-offline peers from memory", evicted)
        return []
