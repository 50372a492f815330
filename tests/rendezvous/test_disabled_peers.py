"""IDs disabled in the web console: answered as offline peers, still registering
(docs/deviations.md §3.8; punch and relay requests §6.6, §6.9, online query §6.12)."""

from __future__ import annotations

import logging

import pytest

from pyhbb.rendezvous.actions import Action, Close, Send, SendUdp, StartSession
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.disabled_peers import Change, DisabledPeers
from pyhbb.rendezvous.links import Link, Transport
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    NO_REQUEST_PK,
    PUNCH_OFFLINE,
    REG_OK,
    T0,
    UUID,
    bring_online,
    database,
    decode,
    make_core,
    nat,
    punch_request,
    register_peer,
    register_pk,
    resolve,
    rm,
    row,
    tcp,
    ws,
)
from tests.rendezvous.test_console import Fixture


class SecureLink(Link):
    """A connection that completed the secure TCP handshake (§7.6)."""

    @property
    def secure(self) -> bool:
        return True


def secure_tcp(addr: tuple[str, int] = A_ADDR) -> Link:
    return SecureLink(addr, Transport.TCP)


LINKS = [tcp, ws, secure_tcp]


def relay_request(peer_id: str = B_ID) -> bytes:
    return rm(request_relay=pb.RequestRelay(id=peer_id, uuid="relay-uuid-1"))


def online_request(*ids: str) -> bytes:
    return rm(online_request=pb.OnlineRequest(id="asker", peers=list(ids)))


def online_bits(actions: list[Action]) -> bytes:
    send = next(a for a in actions if isinstance(a, Send))
    return decode(send.payload).online_response.states


def forwarded_to_b(actions: list[Action]) -> pb.RendezvousMessage:
    (action,) = actions
    assert isinstance(action, SendUdp) and action.addr == B_ADDR, actions
    return decode(action.payload)


def disabled_core(**settings: object) -> RendezvousCore:
    """B registered by UDP and online; then disabled by the console."""
    core = make_core(**settings)
    bring_online(core, T0)
    assert core.admin.disable_peer(B_ID) is Change.DONE
    return core


# -- what A gets ------------------------------------------------------------------------------


@pytest.mark.parametrize("make_link", LINKS)
def test_punch_request_for_a_disabled_id_is_offline_and_b_hears_nothing(make_link) -> None:
    core = disabled_core()
    link = make_link(A_ADDR)
    # At once, from memory: no look-up, nothing sent to B, A's link kept as for OFFLINE.
    assert core.on_frame(link, punch_request(), T0 + 1) == [Send(link, PUNCH_OFFLINE)]
    assert core.state.pending_loads == 0
    assert len(core.state.punch_log.entries) == 0
    transport = link.transport.value
    assert core.state.outcomes["punch", transport, "disabled"] == 1


def test_a_disabled_id_not_in_memory_is_offline_without_a_database_read() -> None:
    core = make_core()
    core.admin.load_disabled(["555555555"], 1)
    link = tcp()
    assert core.on_frame(link, punch_request("555555555"), T0) == [Send(link, PUNCH_OFFLINE)]
    assert core.state.pending_loads == 0


@pytest.mark.parametrize("make_link", LINKS)
def test_relay_request_for_a_disabled_id_is_offline_and_b_hears_nothing(make_link) -> None:
    core = disabled_core()
    link = make_link(A_ADDR)
    assert core.on_frame(link, relay_request(), T0 + 1) == [Send(link, PUNCH_OFFLINE)]
    assert core.state.outcomes["relay", link.transport.value, "disabled"] == 1


@pytest.mark.parametrize("make_link", [tcp, ws, nat])
def test_online_query_reports_a_disabled_id_offline(make_link) -> None:
    core = make_core()
    bring_online(core, T0)
    bring_online(core, T0, peer_id="222222222", addr=("203.0.113.8", 50001))
    handler = core.on_nat_frame if make_link is nat else core.on_frame
    query = online_request(B_ID, "222222222")
    assert online_bits(handler(make_link(A_ADDR), query, T0 + 1)) == b"\xc0"
    core.admin.disable_peer(B_ID)
    assert online_bits(handler(make_link(A_ADDR), query, T0 + 1)) == b"\x40"


def test_other_peers_are_untouched() -> None:
    core = disabled_core()
    bring_online(core, T0, peer_id="222222222", addr=B_ADDR)
    msg = forwarded_to_b(core.on_frame(tcp(), punch_request("222222222"), T0 + 1))
    assert msg.WhichOneof("union") == "punch_hole"


# -- enabling again ---------------------------------------------------------------------------


def test_enabling_restores_punch_relay_and_online_at_once() -> None:
    core = disabled_core()
    assert core.admin.enable_peer(B_ID) is Change.DONE
    msg = forwarded_to_b(core.on_frame(tcp(), punch_request(), T0 + 1))
    assert msg.WhichOneof("union") == "punch_hole"
    msg = forwarded_to_b(core.on_frame(tcp(), relay_request(), T0 + 1))
    assert msg.request_relay.uuid == "relay-uuid-1"
    assert online_bits(core.on_nat_frame(nat(), online_request(B_ID), T0 + 1)) == b"\x80"
    # Enabling what is not disabled changes nothing and is no error.
    assert core.admin.enable_peer(B_ID) is Change.DONE


# -- the disabled device itself ---------------------------------------------------------------


def test_a_disabled_device_keeps_registering() -> None:
    core = disabled_core()
    # Heartbeats are answered as for anyone (no key asked: the record is known)...
    replies = resolve(core, core.on_udp(register_peer(), B_ADDR, T0 + 5), T0 + 5)
    assert replies == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    # ...and so is its RegisterPk, from a new address too (the record follows it).
    moved = ("203.0.113.99", 50002)
    replies = resolve(core, core.on_udp(register_pk(), moved, T0 + 10), T0 + 10)
    assert replies == [SendUdp(REG_OK, moved)]
    assert row(core).ip == moved[0]
    # Still unreachable; once enabled, the PunchHole goes to where it registered last.
    link = tcp()
    assert core.on_frame(link, punch_request(), T0 + 11) == [Send(link, PUNCH_OFFLINE)]
    core.admin.enable_peer(B_ID)
    (action,) = core.on_frame(tcp(), punch_request(), T0 + 12)
    assert isinstance(action, SendUdp) and action.addr == moved


def test_a_disabled_device_registered_over_tcp_keeps_its_session() -> None:
    core = make_core()
    session = tcp(B_ADDR)
    start, answer = resolve(core, core.on_frame(session, register_pk(), T0), T0)
    assert isinstance(start, StartSession) and isinstance(answer, Send)
    assert decode(answer.payload).register_pk_response.result == pb.RegisterPkResponse.OK
    core.admin.disable_peer(B_ID)
    assert Close(session) not in core.on_frame(session, b"", T0 + 1)
    link = tcp()
    assert core.on_frame(link, punch_request(), T0 + 2) == [Send(link, PUNCH_OFFLINE)]
    core.admin.enable_peer(B_ID)
    (action,) = core.on_frame(tcp(), punch_request(), T0 + 3)
    assert isinstance(action, Send) and action.link is session
    assert decode(action.payload).WhichOneof("union") == "punch_hole"


# -- the database's changes follow the ID ------------------------------------------------------


def test_deleting_the_device_drops_the_mark() -> None:
    core = disabled_core()
    del database(core)[B_ID]  # the console deleted the row, then told hbbs
    core.admin.forget_peer(B_ID)
    assert core.admin.disabled_count() == 0
    # The ID registers anew (a new row, status unset) and is reachable.
    bring_online(core, T0 + 1, uuid=b"another-machine")
    msg = forwarded_to_b(core.on_frame(tcp(), punch_request(), T0 + 2))
    assert msg.WhichOneof("union") == "punch_hole"


def test_a_new_row_for_a_disabled_id_is_enabled() -> None:
    # The row was deleted behind hbbs's back (not through the console): the ID's next
    # registration inserts a new row, which is not disabled.
    core = make_core()
    core.admin.load_disabled([B_ID], 1)
    bring_online(core, T0)
    assert core.admin.disabled_count() == 0
    assert forwarded_to_b(core.on_frame(tcp(), punch_request(), T0 + 1)).HasField("punch_hole")


def test_an_id_change_keeps_the_device_disabled() -> None:
    core = disabled_core()
    link = tcp(B_ADDR)
    change = rm(register_pk=pb.RegisterPk(id="newname1", uuid=UUID, old_id=B_ID))
    actions = resolve(core, core.on_frame(link, change, T0 + 1), T0 + 1)
    assert actions == [Send(link, REG_OK), Close(link)]
    assert core.admin.disabled_peers(0, 10) == ["newname1"]
    bring_online(core, T0 + 2, peer_id=B_ID, uuid=b"another-machine")  # the old ID is free
    assert forwarded_to_b(core.on_frame(tcp(), punch_request(), T0 + 3)).HasField("punch_hole")
    replies = resolve(core, core.on_udp(register_peer("newname1"), B_ADDR, T0 + 4), T0 + 4)
    assert len(replies) == 1
    link = tcp()
    assert core.on_frame(link, punch_request("newname1"), T0 + 5) == [Send(link, PUNCH_OFFLINE)]


# -- bounds, bad input, cluster mode -----------------------------------------------------------


def test_the_set_is_bounded_and_refuses_rather_than_forgets(caplog) -> None:
    core = make_core(max_disabled=3)
    for peer_id in ("id1", "id2", "id3"):
        assert core.admin.disable_peer(peer_id) is Change.DONE
    with caplog.at_level(logging.WARNING, "pyhbb.rendezvous"):
        assert core.admin.disable_peer("id4") is Change.TABLE_FULL
    assert "3 IDs are disabled already" in caplog.text
    assert core.admin.disabled_peers(0, 10) == ["id1", "id2", "id3"]  # none forgotten
    assert core.admin.disable_peer("id2") is Change.DONE  # already in: no room needed
    core.admin.enable_peer("id1")
    assert core.admin.disable_peer("id4") is Change.DONE
    assert core.admin.disabled_peers(0, 10) == ["id2", "id3", "id4"]


def test_loading_more_than_the_bound_says_how_many_stay_reachable(caplog) -> None:
    core = make_core(max_disabled=2)
    with caplog.at_level(logging.WARNING, "pyhbb.rendezvous"):
        assert core.admin.load_disabled(["a1", "a2", "a3"], 5) == 2
    assert "5 IDs are disabled in the database" in caplog.text
    assert "the other 3 stay reachable" in caplog.text
    assert core.admin.disabled_peers(0, 10) == ["a1", "a2"]


def test_ids_no_client_can_have_are_refused() -> None:
    core = make_core()
    assert core.admin.disable_peer("") is Change.BAD_ID
    assert core.admin.disable_peer("x" * 101) is Change.BAD_ID
    assert core.admin.disable_peer("x" * 100) is Change.DONE
    assert core.admin.disabled_count() == 1


def test_cluster_mode_does_not_pretend() -> None:
    core = make_core(node_name="node-a")
    assert core.admin.disable_peer(B_ID) is Change.CLUSTER_MODE
    assert core.admin.enable_peer(B_ID) is Change.CLUSTER_MODE
    assert core.admin.disabled_count() == 0
    assert not core.admin.disabled_enforced


def test_disabled_peers_pages_keep_the_order_of_disabling() -> None:
    peers = DisabledPeers(limit=100)
    assert peers.add_all(f"p{i}" for i in range(25)) == 25
    assert peers.page(0, 10) == [f"p{i}" for i in range(10)]
    assert peers.page(20, 10) == [f"p{i}" for i in range(20, 25)]
    assert peers.page(30, 10) == []
    peers.rename("p3", "q3")
    assert "p3" not in peers and "q3" in peers and len(peers) == 25
    peers.rename("nobody", "q4")  # not disabled: nothing moves
    assert "q4" not in peers


# -- the console commands ---------------------------------------------------------------------


async def test_console_disable_enable_and_list() -> None:
    f = Fixture()
    bring_online(f.core, T0)
    assert await f.run(f"disable-peer {B_ID}") == "disabled\n"
    assert await f.run("disable-peer 222222222") == "disabled\n"
    link = tcp()
    assert f.core.on_frame(link, punch_request(), T0 + 1) == [Send(link, PUNCH_OFFLINE)]
    assert await f.run("disabled-peers") == f"2\n{B_ID}\n222222222\n"
    assert await f.run("disabled-peers 1") == "2\n222222222\n"
    assert "disabled_peers: 2\n" in await f.run("stats")
    assert await f.run(f"enable-peer {B_ID}") == "enabled\n"
    assert await f.run(f"enable-peer {B_ID}") == "enabled\n"
    assert forwarded_to_b(f.core.on_frame(tcp(), punch_request(), T0 + 2)).HasField("punch_hole")
    assert await f.run("disabled-peers") == "1\n222222222\n"


async def test_console_answers_bad_input_and_the_limit() -> None:
    f = Fixture(max_disabled=1)
    assert await f.run("disable-peer") == "usage: disable-peer <id>\n"
    assert await f.run("enable-peer") == "usage: enable-peer <id>\n"
    assert await f.run("disable-peer " + "9" * 101) == "invalid id\n"
    assert await f.run("disable-peer first") == "disabled\n"
    assert await f.run("disable-peer second") == "refused: 1 IDs are disabled already, the limit\n"
    assert await f.run("disabled-peers x") == "1\nfirst\n"  # not a number: from the start


async def test_console_in_cluster_mode_says_unsupported() -> None:
    f = Fixture(node_name="node-a")
    for line in (f"disable-peer {B_ID}", f"enable-peer {B_ID}", "disabled-peers"):
        assert await f.run(line) == "unsupported in cluster mode\n", line
