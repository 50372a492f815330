"""Pairing rules of §8.1-8.2, without sockets (time is passed in)."""

from __future__ import annotations

from pyhbb.relay.pairing import Paired, Pairing, Refusal, Rejected, Waiting


def make(key: str = "", timeout: float = 30.0, total: int = 100, per_ip: int = 10) -> Pairing[str]:
    return Pairing(key, timeout, total, per_ip)


def test_first_waits_second_pairs() -> None:
    p = make()
    assert p.request("A", "1.1.1.1", "u", "", now=0.0) == Waiting(30.0)
    assert len(p) == 1
    assert p.request("B", "2.2.2.2", "u", "", now=5.0) == Paired("A", "1.1.1.1")
    assert len(p) == 0 and p.waiting_from("1.1.1.1") == 0


def test_different_uuids_do_not_pair() -> None:
    p = make()
    assert isinstance(p.request("A", "1.1.1.1", "u1", "", 0.0), Waiting)
    assert isinstance(p.request("B", "1.1.1.1", "u2", "", 0.0), Waiting)
    assert len(p) == 2


def test_licence_key_checked_only_when_set() -> None:
    p = make(key="K")
    assert p.request("A", "1.1.1.1", "u", "wrong", 0.0) == Rejected(Refusal.LICENCE_KEY)
    assert p.request("A", "1.1.1.1", "u", "", 0.0) == Rejected(Refusal.LICENCE_KEY)
    assert isinstance(p.request("B", "2.2.2.2", "u", "K", 0.0), Waiting)
    # A mismatching request never pairs with (nor removes) the waiter.
    assert isinstance(p.request("C", "3.3.3.3", "u", "bad", 1.0), Rejected)
    assert len(p) == 1
    assert p.request("D", "4.4.4.4", "u", "K", 2.0) == Paired("B", "2.2.2.2")
    open_relay = make(key="")
    assert isinstance(open_relay.request("A", "1.1.1.1", "u", "anything", 0.0), Waiting)


def test_empty_uuid_rejected() -> None:
    assert make().request("A", "1.1.1.1", "", "", 0.0) == Rejected(Refusal.EMPTY_UUID)


def test_expire_removes_only_own_entry() -> None:
    # Upstream quirk: A's timer would remove C, a newer waiter under the same uuid.
    p = make(timeout=30.0)
    p.request("A", "1.1.1.1", "u", "", now=0.0)
    assert isinstance(p.request("B", "2.2.2.2", "u", "", now=10.0), Paired)
    assert p.request("C", "3.3.3.3", "u", "", now=20.0) == Waiting(50.0)
    assert p.expire(30.0) == []  # A's deadline: nothing of A's is left to remove
    assert len(p) == 1
    assert p.expire(49.9) == []
    assert p.expire(50.0) == ["C"]
    assert len(p) == 0 and p.waiting_from("3.3.3.3") == 0


def test_remove_checks_identity() -> None:
    p = make()
    p.request("A", "1.1.1.1", "u", "", 0.0)
    assert not p.remove("other", "u")
    assert not p.remove("A", "nope")
    assert p.remove("A", "u")
    assert not p.remove("A", "u")
    assert len(p) == 0


def test_global_and_per_ip_bounds() -> None:
    p = make(total=3, per_ip=2)
    assert isinstance(p.request("a1", "1.1.1.1", "u1", "", 0.0), Waiting)
    assert isinstance(p.request("a2", "1.1.1.1", "u2", "", 0.0), Waiting)
    refused = p.request("a3", "1.1.1.1", "u3", "", 0.0)
    assert refused == Rejected(Refusal.WAITING_PER_IP)
    assert isinstance(p.request("b1", "2.2.2.2", "u4", "", 0.0), Waiting)
    assert p.request("c1", "3.3.3.3", "u5", "", 0.0) == Rejected(Refusal.WAITING_FULL)
    # Pairing with a waiter is always allowed, even when the table is full.
    assert p.request("x", "1.1.1.1", "u1", "", 0.0) == Paired("a1", "1.1.1.1")
    assert isinstance(p.request("a3", "1.1.1.1", "u3", "", 0.0), Waiting)


def test_waiting_listing_and_clear() -> None:
    p = make()
    p.request("A", "1.1.1.1", "u1", "", 0.0)
    p.request("B", "2.2.2.2", "u2", "", 0.0)
    assert sorted(p.waiting()) == [("u1", "A", "1.1.1.1"), ("u2", "B", "2.2.2.2")]
    assert sorted(p.clear()) == ["A", "B"]
    assert len(p) == 0 and p.waiting_from("1.1.1.1") == 0
