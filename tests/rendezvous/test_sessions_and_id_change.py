"""Session limits (§7.4) and ID change (§7.10) as seen on the wire by the client."""

from __future__ import annotations

from pyhbb.rendezvous.actions import Close, LoadPeer, Persist, RenamePeer, Send
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    REG_INVALID_ID,
    REG_OK,
    REG_SERVER_ERROR,
    REG_UUID_MISMATCH,
    T0,
    UUID,
    bring_online,
    database,
    decode,
    loaded,
    make_core,
    register_pk,
    resolve,
    rm,
    row,
    sends,
    stored,
    tcp,
)

REG_ID_EXISTS = bytes.fromhex("8201020803")


def test_sessions_per_ip_are_limited() -> None:
    core = make_core(max_sessions_per_ip=1)
    first = tcp(("192.0.2.1", 1))
    resolve(core, core.on_frame(first, register_pk("peer001"), T0), T0)
    second = tcp(("192.0.2.1", 2))
    actions = resolve(core, core.on_frame(second, register_pk("peer002"), T0), T0)
    ((target, payload),) = sends(actions)
    assert target is second
    assert decode(payload).register_pk_response.result == pb.RegisterPkResponse.TOO_FREQUENT
    assert actions[-1] == Close(second)
    # Another IP, or the same IP once the first session is gone, is fine.
    other = tcp(("192.0.2.2", 1))
    assert not any(
        isinstance(a, Close)
        for a in resolve(core, core.on_frame(other, register_pk("peer003"), T0), T0)
    )
    core.on_link_closed(first, T0 + 1)
    third = tcp(("192.0.2.1", 3))
    actions = resolve(core, core.on_frame(third, register_pk("peer002"), T0 + 1), T0 + 1)
    assert not any(isinstance(a, Close) for a in actions)
    assert decode(sends(actions)[0][1]).register_pk_response.result == pb.RegisterPkResponse.OK


def test_closing_a_session_frees_the_route_but_keeps_the_record() -> None:
    core = make_core()
    link = tcp(B_ADDR)
    resolve(core, core.on_frame(link, register_pk(), T0), T0)
    core.on_link_closed(link, T0 + 5)
    assert core.state.sessions == {}
    record = core.state.peers.get(B_ID)
    assert record is not None and record.session is None


# -- ID change (§7.10) -----------------------------------------------------------------------


def loaded_except(core: object, actions: list, now: float, peer_id: str) -> list:
    """Answer only ``peer_id``'s load (the old id's details), leaving the new id's load."""
    from pyhbb.rendezvous.core import RendezvousCore

    assert isinstance(core, RendezvousCore)
    out = []
    for action in actions:
        if isinstance(action, LoadPeer) and action.peer_id == peer_id:
            out += core.peer_loaded(peer_id, database(core).get(peer_id), now)
        else:
            out.append(action)
    return out


def change_id(new_id: str, old_id: str = B_ID, uuid: bytes = UUID) -> bytes:
    return rm(register_pk=pb.RegisterPk(id=new_id, uuid=uuid, old_id=old_id))


def test_id_change_renames_the_row_and_answers_ok_before_closing() -> None:
    core = make_core()
    bring_online(core, T0)
    guid = row(core).guid
    link = tcp(B_ADDR)
    actions = loaded_except(core, core.on_frame(link, change_id("newname1"), T0 + 1), T0 + 1, B_ID)
    assert actions == [LoadPeer("newname1")]  # is the new id free in the database?
    (persist,) = core.peer_loaded("newname1", None, T0 + 1)
    assert isinstance(persist, Persist)
    assert persist.write == RenamePeer(guid, B_ID, "newname1")
    assert persist.on_ok == [Send(link, REG_OK), Close(link)]
    assert persist.on_fail == [Send(link, REG_SERVER_ERROR), Close(link)]
    assert persist.on_conflict == [Send(link, REG_ID_EXISTS), Close(link)]
    assert core.state.peers.get("newname1") is not None
    assert core.state.peers.get(B_ID) is None


def test_id_change_to_a_taken_id_is_id_exists() -> None:
    core = make_core()
    bring_online(core, T0)
    link = tcp(B_ADDR)
    loaded_except(core, core.on_frame(link, change_id("taken01"), T0 + 1), T0 + 1, B_ID)
    actions = core.peer_loaded("taken01", stored("taken01", uuid=b"x"), T0 + 1)
    assert actions == [Send(link, REG_ID_EXISTS), Close(link)]


def test_id_change_checks_format_and_ownership() -> None:
    core = make_core()
    bring_online(core, T0)
    for bad in ("1abcdef", "abc", "a" * 17, "abc def", ""):
        link = tcp(B_ADDR)
        assert core.on_frame(link, change_id(bad), T0 + 1) == [
            Send(link, REG_INVALID_ID),
            Close(link),
        ], bad
    link = tcp(B_ADDR)
    actions = core.on_frame(link, change_id("validid", uuid=b"other"), T0 + 1)
    assert loaded(core, actions, T0 + 1) == [
        Send(link, REG_UUID_MISMATCH),
        Close(link),
    ]
    link = tcp(B_ADDR)
    assert core.on_frame(link, change_id("validid", old_id="nobody1"), T0 + 1) == [
        LoadPeer("nobody1")
    ]
    assert core.peer_loaded("nobody1", None, T0 + 1) == [Send(link, REG_UUID_MISMATCH), Close(link)]
