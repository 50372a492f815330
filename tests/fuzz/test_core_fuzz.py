"""The protocol core never fails on hostile input and keeps its tables consistent.

A stateful Hypothesis machine plays many clients: datagrams and frames of every variant
with random fields and raw garbage, connections opening and closing, the database
answering, failing or lagging, and time moving on (timers included).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pyhbb.rendezvous.actions import (
    Action,
    Close,
    LoadPeer,
    Persist,
    ProxyHttp,
    ResolveServers,
    Send,
    SendUdp,
    StartSession,
    StoreFailure,
)
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.links import Link, Transport
from pyhbb.rendezvous.state import MAX_PENDING_LOADS, CoreSettings
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import encode
from tests.fuzz.strategies import PAYLOADS
from tests.rendezvous.helpers import rm, signing_key

ADDRESSES = st.sampled_from(
    [("127.0.0.2", 5000), ("127.0.0.3", 6000), ("10.0.0.1", 1), ("::1", 7), ("2001:db8::5", 9)]
)
VALID_IDS = st.sampled_from(["123456789", "987654321", "peer0001"])
ACTION_TYPES = (SendUdp, Send, Close, StartSession, LoadPeer, Persist, ResolveServers, ProxyHttp)


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        settings_ = CoreSettings(
            enforced_key="K",
            signing=signing_key(),
            udp_punch=True,
            max_peers=50,
            relay_servers=["r1", "r2"],
            mask="10.0.0.0/8",
            local_ip="10.0.0.254",
        )
        self.core = RendezvousCore(settings_)
        self.now = 1000.0
        self.open: list[Link] = []
        self.loads: list[str] = []
        self.persists: list[Persist] = []

    def _take(self, actions: list[Action]) -> None:
        for action in actions:
            assert isinstance(action, ACTION_TYPES), action
            if isinstance(action, LoadPeer):
                self.loads.append(action.peer_id)
            elif isinstance(action, Persist):
                self.persists.append(action)
            elif isinstance(action, Send | Close | StartSession):
                assert isinstance(action.link, Link)
            elif isinstance(action, SendUdp):
                assert isinstance(action.payload, bytes) and len(action.addr) == 2

    @rule(data=PAYLOADS, src=ADDRESSES)
    def datagram(self, data: bytes, src: tuple[str, int]) -> None:
        self._take(self.core.on_udp(data, src, self.now))

    @rule(peer_id=VALID_IDS, src=ADDRESSES, uuid=st.sampled_from([b"u1", b"u2"]))
    def register(self, peer_id: str, src: tuple[str, int], uuid: bytes) -> None:
        """A well-formed registration, so that the deep paths (punching) are reached."""
        pk = pb.RegisterPk(id=peer_id, uuid=uuid, pk=b"k" * 32)
        self._take(self.core.on_udp(rm(register_pk=pk), src, self.now))
        self._take(self.core.on_udp(rm(register_peer=pb.RegisterPeer(id=peer_id)), src, self.now))

    @precondition(lambda self: self.open)
    @rule(peer_id=VALID_IDS, pick=st.integers(0, 100), udp_port=st.integers(0, 3))
    def punch(self, peer_id: str, pick: int, udp_port: int) -> None:
        link = self.open[pick % len(self.open)]
        req = pb.PunchHoleRequest(id=peer_id, licence_key="K", udp_port=udp_port)
        self._take(self.core.on_frame(link, rm(punch_hole_request=req), self.now))

    @precondition(lambda self: self.open)
    @rule(
        peer_id=VALID_IDS,
        pick=st.integers(0, 100),
        src=ADDRESSES,
        kind=st.sampled_from(["punch_hole_sent", "local_addr", "relay_response", "udp"]),
    )
    def answer(self, peer_id: str, pick: int, src: tuple[str, int], kind: str) -> None:
        """B answers a requester that is (or was) waiting on an open link."""
        addr = encode(self.open[pick % len(self.open)].addr)
        if kind == "relay_response":
            data = rm(relay_response=pb.RelayResponse(socket_addr=addr, id=peer_id, version="1"))
        elif kind == "local_addr":
            data = rm(local_addr=pb.LocalAddr(socket_addr=addr, id=peer_id, version="1"))
        else:
            data = rm(punch_hole_sent=pb.PunchHoleSent(socket_addr=addr, id=peer_id, version="1"))
        if kind == "udp":
            self._take(self.core.on_udp(data, src, self.now))
            return
        link = Link(src, Transport.TCP)
        self._take(self.core.on_frame(link, data, self.now))
        self.core.on_link_closed(link, self.now)

    @rule(addr=ADDRESSES, kind=st.sampled_from([Transport.TCP, Transport.WS]))
    def connect(self, addr: tuple[str, int], kind: Transport) -> None:
        self.open.append(Link(addr, kind))

    @precondition(lambda self: self.open)
    @rule(data=PAYLOADS, pick=st.integers(0, 100))
    def frame(self, data: bytes, pick: int) -> None:
        link = self.open[pick % len(self.open)]
        actions = self.core.on_frame(link, data, self.now)
        self._take(actions)

    @rule(data=PAYLOADS, addr=ADDRESSES)
    def nat_port(self, data: bytes, addr: tuple[str, int]) -> None:
        link = Link(addr, Transport.NAT)
        actions = self.core.on_nat_frame(link, data, self.now)
        self._take(actions)
        assert actions and isinstance(actions[-1], Close)  # P-1 always closes
        self.core.on_link_closed(link, self.now)

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 100))
    def disconnect(self, pick: int) -> None:
        link = self.open.pop(pick % len(self.open))
        self.core.on_link_closed(link, self.now)

    @precondition(lambda self: self.loads)
    @rule(
        outcome=st.sampled_from(["absent", "row", "fail"]),
        uuid=st.sampled_from([b"u1", b"u2"]),
        ip=st.sampled_from(["127.0.0.2", "::ffff:127.0.0.3", "garbage", ""]),
    )
    def database_answers(self, outcome: str, uuid: bytes, ip: str) -> None:
        peer_id = self.loads.pop(0)
        if outcome == "fail":
            failure = StoreFailure("disk I/O error (simulated)")
            actions = self.core.peer_load_failed(peer_id, failure, self.now)
        else:
            row = StoredPeer(b"g" * 16, peer_id, uuid, b"k" * 32, ip) if outcome == "row" else None
            actions = self.core.peer_loaded(peer_id, row, self.now)
        self._take(actions)

    @precondition(lambda self: self.persists)
    @rule(outcome=st.sampled_from(["ok", "fail", "id_taken", "bug"]))
    def database_writes(self, outcome: str) -> None:
        persist = self.persists.pop(0)
        if outcome == "ok":
            self._take(self.core.write_done(persist))
        else:
            failure = StoreFailure(
                "simulated",
                id_taken=outcome == "id_taken",
                bug=RuntimeError("store bug") if outcome == "bug" else None,
            )
            self._take(self.core.write_failed(persist, failure))

    @rule(dt=st.sampled_from([0.5, 3.0, 7.5, 31.0, 400.0, 90_000.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self._take(self.core.on_timer(self.now))

    @rule(serial=st.integers(-5, 10), servers=st.lists(st.text(max_size=10), max_size=3))
    def config_resolved(self, serial: int, servers: list[str]) -> None:
        self._take(self.core.adopt_config(serial, servers))

    @invariant()
    def tables_are_consistent(self) -> None:
        state = self.core.state
        open_links = set(self.open)
        for link in state.sessions:
            assert link in open_links, "a closed link is still a session"
        assert len(state.requesters) <= len(open_links)
        assert state.pending_loads <= MAX_PENDING_LOADS
        assert len(state.peers) <= state.settings.max_peers


CoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreMachine = CoreMachine.TestCase


@settings(max_examples=500, deadline=None)
@given(data=PAYLOADS, src=ADDRESSES, kind=st.sampled_from([Transport.TCP, Transport.WS]))
def test_any_single_message_is_handled(data: bytes, src: tuple[str, int], kind: Transport) -> None:
    core = RendezvousCore(CoreSettings(signing=signing_key(), udp_punch=True))
    out: list[Any] = core.on_udp(data, src, 5.0)
    out += core.on_frame(Link(src, kind), data, 5.0)
    out += core.on_nat_frame(Link(src, Transport.NAT), data, 5.0)
    assert all(isinstance(a, ACTION_TYPES) for a in out)
