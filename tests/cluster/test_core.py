"""The core's cluster decisions, sans-IO (docs/cluster.md §1.4-1.5): a fake directory
with revisions plays the shared one, actions are inspected as the executor would see
them. The same events on a single server never produce a cluster action."""

from __future__ import annotations

from typing import Any

from pyhbb.rendezvous.actions import (
    Action,
    AwaitAnswer,
    ClaimPeer,
    Close,
    DeliverAnswer,
    Evict,
    GatherOnline,
    InsertPeer,
    LoadPeer,
    Persist,
    PunchViaOwner,
    RelayViaOwner,
    Send,
    SendUdp,
    StoreFailure,
    UpdatePeer,
)
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    PK_A,
    PUNCH_OFFLINE,
    REG_OK,
    REG_UUID_MISMATCH,
    REQUEST_PK,
    T0,
    UUID,
    decode,
    make_core,
    punch_request,
    register_peer,
    register_pk,
    rm,
    tcp,
)


class Directory:
    """Entries with revisions; writes name the revision they were decided on."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredPeer] = {}
        self.revision = 0

    def put(self, peer_id: str, owner: str, uuid: bytes = UUID, pk: bytes = PK_A) -> None:
        self.revision += 1
        self.rows[peer_id] = StoredPeer(
            b"G" * 16, peer_id, uuid, pk, B_ADDR[0], owner, self.revision
        )

    def write(self, write: Any, node: str) -> int | StoreFailure:
        row = self.rows.get(write.peer_id)
        if isinstance(write, InsertPeer):
            if row is not None:
                return StoreFailure("exists", id_taken=True)
            self.revision += 1
            self.rows[write.peer_id] = StoredPeer(
                write.guid, write.peer_id, write.uuid, write.pk, write.ip, node, self.revision
            )
            return self.revision
        assert isinstance(write, UpdatePeer | ClaimPeer)
        if row is None or row.revision != write.revision:
            return StoreFailure("changed", stale=True)
        self.revision += 1
        changes: dict[str, Any] = {"owner": node, "revision": self.revision}
        if isinstance(write, UpdatePeer):
            changes.update(pk=write.pk, ip=write.ip)
        self.rows[write.peer_id] = row._replace(**changes)
        return self.revision


def drive(
    core: RendezvousCore, d: Directory, actions: list[Action], now: float = T0
) -> list[Action]:
    """The executor's part: loads and writes against ``d``, until only other actions remain."""
    node = core.state.settings.node_name
    out: list[Action] = []
    pending = list(actions)
    while pending:
        action = pending.pop(0)
        if isinstance(action, LoadPeer):
            pending += core.peer_loaded(action.peer_id, d.rows.get(action.peer_id), now)
        elif isinstance(action, Persist):
            result = d.write(action.write, node)
            if isinstance(result, StoreFailure):
                pending += core.write_failed(action, result, now)
            else:
                pending += core.write_done(action, result)
        else:
            out.append(action)
    return out


def node(name: str = "n1", **settings: Any) -> RendezvousCore:
    return make_core(node_name=name, signing=None, **settings)


def test_a_new_peer_is_created_held_by_this_node() -> None:
    core, d = node(), Directory()
    assert drive(core, d, core.on_udp(register_pk(), B_ADDR, T0)) == [SendUdp(REG_OK, B_ADDR)]
    assert d.rows[B_ID].owner == "n1"
    assert core.state.claims[B_ID] == d.rows[B_ID].revision


def test_a_peer_held_elsewhere_is_claimed_and_its_holder_evicted() -> None:
    core, d = node(), Directory()
    d.put(B_ID, "n2")
    actions = drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    assert actions == [SendUdp(REG_OK, B_ADDR), Evict("n2", B_ID, d.rows[B_ID].revision)]
    assert d.rows[B_ID].owner == "n1"
    assert drive(core, d, core.on_udp(register_peer(), B_ADDR, T0 + 1)) == [
        SendUdp(bytes.fromhex("3a00"), B_ADDR)
    ]  # the heartbeat is now served from memory


def test_a_lost_race_is_decided_again_on_a_fresh_read() -> None:
    """n1 read the entry at revision r; n2's claim for another machine lands first: the
    write is refused, the entry read again, and the other uuid means UUID_MISMATCH."""
    core, d = node(), Directory()
    d.put(B_ID, "")
    actions = core.on_udp(register_pk(), B_ADDR, T0)
    (load,) = actions
    assert isinstance(load, LoadPeer)
    (persist,) = core.peer_loaded(B_ID, d.rows[B_ID], T0)
    assert isinstance(persist, Persist) and isinstance(persist.write, ClaimPeer)
    d.put(B_ID, "n2", uuid=b"another-machine")  # the race is lost
    assert drive(core, d, [persist]) == [SendUdp(REG_UUID_MISMATCH, B_ADDR)]
    assert B_ID not in core.state.peers
    assert core.state.stats["directory_races"] == 1


def test_a_lost_race_is_decided_on_a_read_begun_after_it() -> None:
    """A read already in flight when the create is refused (here for the client's repeated
    RegisterPk) began before the other machine's entry landed and still says "absent":
    the lost race waits for a read of its own, which finds that entry (UUID_MISMATCH),
    instead of creating again on the stale answer."""
    core, d = node(), Directory()
    (load,) = core.on_udp(register_pk(), B_ADDR, T0)
    assert isinstance(load, LoadPeer)
    (persist,) = core.peer_loaded(B_ID, None, T0)
    assert isinstance(persist, Persist) and isinstance(persist.write, InsertPeer)
    (earlier_read,) = core.on_udp(register_pk(), B_ADDR, T0 + 0.1)  # the repeat: a read
    assert isinstance(earlier_read, LoadPeer)
    d.put(B_ID, "n2", uuid=b"another-machine")  # the other machine's create lands first
    assert core.write_failed(persist, StoreFailure("exists", id_taken=True), T0 + 0.2) == []
    stale = core.peer_loaded(B_ID, None, T0 + 0.3)  # the read begun before the refusal
    # only the repeat decides on it; the lost race asks for its own read
    assert [type(a) for a in stale] == [Persist, LoadPeer]
    assert drive(core, d, stale, T0 + 0.4) == [SendUdp(REG_UUID_MISMATCH, B_ADDR)] * 2
    assert d.rows[B_ID].uuid == b"another-machine" and d.rows[B_ID].owner == "n2"
    assert core.state.stats["directory_races"] == 2  # one per registration, no stale retry
    assert core.state.pending_loads == 0


def test_three_lost_races_end_in_server_error() -> None:
    core, d = node(), Directory()
    d.put(B_ID, "n2")
    actions = core.on_udp(register_pk(), B_ADDR, T0)
    for _ in range(3):
        (load,) = actions
        assert isinstance(load, LoadPeer)
        (persist,) = core.peer_loaded(B_ID, d.rows[B_ID], T0)
        assert isinstance(persist, Persist)
        d.put(B_ID, "n2")  # someone else wrote meanwhile, every time
        actions = core.write_failed(persist, StoreFailure("changed", stale=True), T0)
    assert actions == [SendUdp(bytes.fromhex("8201020807"), B_ADDR)]  # SERVER_ERROR


def test_a_claim_storm_past_the_bound_answers_too_frequent() -> None:
    core, d = node(), Directory()
    d.put(B_ID, "n2")
    (persist,) = drive_loads(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    assert isinstance(persist, Persist)
    assert core.write_failed(persist, StoreFailure("busy", busy=True), T0) == [
        SendUdp(bytes.fromhex("8201020804"), B_ADDR)
    ]


def drive_loads(core: RendezvousCore, d: Directory, actions: list[Action]) -> list[Action]:
    out: list[Action] = []
    for action in actions:
        if isinstance(action, LoadPeer):
            out += core.peer_loaded(action.peer_id, d.rows.get(action.peer_id), T0)
        else:
            out.append(action)
    return out


def test_a_punch_for_a_peer_held_elsewhere_goes_to_its_holder() -> None:
    core, d = node(relay_servers=["r1.example:21117"]), Directory()
    d.put(B_ID, "n2")
    link = tcp()
    actions = drive(core, d, core.on_frame(link, punch_request(), T0))
    assert actions[0] == AwaitAnswer(A_ADDR)
    forward = actions[1]
    assert isinstance(forward, PunchViaOwner)
    assert (forward.node, forward.link, forward.peer_id) == ("n2", link, B_ID)
    assert forward.relay_server == "r1.example:21117"
    assert core.owner_punch_answered(forward, "ok", T0) == []
    assert core.owner_punch_answered(forward, "gone", T0) == [Send(link, PUNCH_OFFLINE)]
    # the recent entry answers the next punch without reading the directory again
    again = core.on_frame(tcp(), punch_request(), T0 + 1)
    assert isinstance(again[1], PunchViaOwner)


def test_a_peer_held_by_no_node_is_offline() -> None:
    core, d = node(), Directory()
    d.put(B_ID, "")
    link = tcp()
    assert drive(core, d, core.on_frame(link, punch_request(), T0)) == [
        AwaitAnswer(A_ADDR),
        Send(link, PUNCH_OFFLINE),
    ]


def test_the_holder_sends_the_punch_from_its_own_address() -> None:
    core, d = node("n2"), Directory()
    drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    request = pb.PunchHoleRequest(id=B_ID, nat_type=pb.SYMMETRIC).SerializeToString()
    outcome, actions = core.on_owner_punch(B_ID, request, A_ADDR, False, "r1", T0 + 1)
    assert outcome == "ok"
    (send,) = actions
    assert isinstance(send, SendUdp) and send.addr == B_ADDR
    hole = decode(send.payload).punch_hole
    assert addr_mangle.decode(hole.socket_addr) == A_ADDR and hole.relay_server == "r1"
    assert core.on_owner_punch("nobody", request, A_ADDR, False, "r1", T0)[0] == "unknown"
    assert core.on_owner_punch(B_ID, request, A_ADDR, False, "r1", T0 + 60)[0] == "offline"


def test_an_answer_for_a_requester_on_another_node_is_delivered_there() -> None:
    z, d = node("n3"), Directory()
    answer = rm(punch_hole_sent=pb.PunchHoleSent(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID))
    (deliver,) = drive(z, d, z.on_frame(tcp(B_ADDR), answer, T0))[:1]
    assert isinstance(deliver, DeliverAnswer) and deliver.key == A_ADDR
    x = node("n2")
    link = tcp()
    x.on_frame(link, punch_request(), T0)  # A waits on n2
    assert x.on_answer(A_ADDR, deliver.payload) == [Send(link, deliver.payload)]
    assert x.on_answer(A_ADDR, deliver.payload) == []  # one answer per request


def test_relay_requests_go_to_the_holder() -> None:
    core, d = node(), Directory()
    d.put(B_ID, "n2")
    msg = rm(request_relay=pb.RequestRelay(id=B_ID, uuid="pair", relay_server="r1"))
    actions = drive(core, d, core.on_frame(tcp(), msg, T0))
    assert isinstance(actions[1], RelayViaOwner) and actions[1].node == "n2"


def test_the_online_query_gathers_every_node() -> None:
    core, d = node(), Directory()
    drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    link = tcp()
    ask = rm(online_request=pb.OnlineRequest(id="x", peers=[B_ID, "p2", "p3"]))
    (gather,) = core.on_frame(link, ask, T0)
    assert isinstance(gather, GatherOnline)
    assert gather.states == bytes([0b1000_0000]) and gather.peers == [B_ID, "p2", "p3"]
    reply, close = core.online_gathered(gather, [bytes([0b0010_0000]), b"\xff\xff"])
    assert isinstance(reply, Send) and close == Close(link)
    assert decode(reply.payload).online_response.states == bytes([0b1111_1111])


def test_an_evict_forgets_the_peer_unless_our_claim_is_newer() -> None:
    core, d = node(), Directory()
    drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    mine = core.state.claims[B_ID]
    assert core.on_evict(B_ID, mine - 1, T0) == []  # a late evict
    assert B_ID in core.state.peers
    assert core.on_evict(B_ID, mine + 1, T0) == []
    assert B_ID not in core.state.peers
    assert core.on_udp(register_peer(), B_ADDR, T0) == [SendUdp(REQUEST_PK, B_ADDR)]


def test_after_a_lost_bus_a_held_peer_is_checked_before_it_is_served() -> None:
    core, d = node(), Directory()
    drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    assert core.admin.doubt_ownership() == 1
    d.put(B_ID, "n2")  # it moved while we could not hear the evict
    actions = core.on_udp(register_peer(), B_ADDR, T0 + 1)
    assert [type(a) for a in actions] == [LoadPeer]
    assert drive(core, d, actions) == [SendUdp(REQUEST_PK, B_ADDR)]
    assert B_ID not in core.state.peers and not core.state.doubtful


def test_a_doubted_peer_still_ours_is_served() -> None:
    core, d = node(), Directory()
    drive(core, d, core.on_udp(register_pk(), B_ADDR, T0))
    core.admin.doubt_ownership()
    assert drive(core, d, core.on_udp(register_peer(), B_ADDR, T0 + 1)) == [
        SendUdp(bytes.fromhex("3a00"), B_ADDR)
    ]


def test_a_single_server_never_asks_for_another_node() -> None:
    core = make_core()
    link = tcp()
    (load,) = core.on_frame(link, punch_request(), T0)
    assert isinstance(load, LoadPeer)
    actions = core.peer_loaded(
        B_ID, StoredPeer(b"G" * 16, B_ID, UUID, PK_A, B_ADDR[0], "n2", 7), T0
    )
    # even a row naming a holder: a single server's rows are all its own
    assert all(isinstance(a, Send) for a in actions), actions
    answer = rm(
        punch_hole_sent=pb.PunchHoleSent(socket_addr=addr_mangle.encode(("1.2.3.4", 5)), id=B_ID)
    )
    b_link = tcp(B_ADDR)
    assert core.on_frame(b_link, answer, T0) == [Close(b_link)]  # nobody waits: dropped here
