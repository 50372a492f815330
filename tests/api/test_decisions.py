"""The API's decisions without HTTP: sharing rules, login limits, tokens, heartbeats,
presence bitmaps, typed field access."""

from __future__ import annotations

import base64

import pytest

from pyhbb.api.addressbook import FULL, NONE, READ, READ_WRITE, Book, effective_rule
from pyhbb.api.devices import decode_uuid
from pyhbb.api.heartbeats import HeartbeatBuffer
from pyhbb.api.http import ApiError, Fields
from pyhbb.api.login_limits import Bucket, LoginLimiter
from pyhbb.api.presence import decode_states
from pyhbb.api.tokens import TokenPolicy, bearer, new_token, token_hash
from pyhbb.api.users import User, valid_name


def user(uid: int, admin: bool = False) -> User:
    return User(uid, bytes(16), f"u{uid}", "", "", "", admin, 1)


def book(owner: int, personal: bool) -> Book:
    return Book(7, "g", owner, f"u{owner}", personal, "b", "")


def test_personal_books_belong_to_their_owner_only() -> None:
    mine = book(1, personal=True)
    assert effective_rule(mine, user(1), NONE, NONE) == FULL
    assert effective_rule(mine, user(2), FULL, FULL) == NONE  # rules cannot open it
    assert effective_rule(mine, user(3, admin=True), NONE, NONE) == NONE  # nor can admins


def test_shared_book_rules() -> None:
    shared = book(1, personal=False)
    assert effective_rule(shared, user(1), NONE, NONE) == FULL  # owner
    assert effective_rule(shared, user(9, admin=True), NONE, NONE) == FULL
    assert effective_rule(shared, user(2), NONE, NONE) == NONE
    assert effective_rule(shared, user(2), READ, NONE) == READ
    assert effective_rule(shared, user(2), NONE, READ_WRITE) == READ_WRITE  # everyone
    assert effective_rule(shared, user(2), READ, READ_WRITE) == READ_WRITE  # the higher
    assert effective_rule(shared, user(2), FULL, READ) == FULL


def test_login_limiter_per_ip_counts_attempts() -> None:
    limiter = LoginLimiter(per_ip=Bucket(3, 1.0), per_user=Bucket(100, 1.0))
    now = 1000.0
    for name in ("a", "b", "c"):
        assert limiter.admit("192.0.2.1", name, now) == 0
    assert limiter.admit("192.0.2.1", "d", now) == pytest.approx(1.0)
    assert limiter.admit("192.0.2.2", "d", now) == 0  # another IP is not affected
    assert limiter.admit("192.0.2.1", "d", now + 1.0) == 0  # one token back per second


def test_login_limiter_per_user_counts_failures_from_every_ip() -> None:
    limiter = LoginLimiter(per_ip=Bucket(100, 1.0), per_user=Bucket(2, 0.1))
    now = 1000.0
    for ip in ("192.0.2.1", "192.0.2.2"):
        assert limiter.admit(ip, "Alice", now) == 0
        limiter.failed("alice", now)  # names compare case-insensitively
    assert limiter.admit("192.0.2.3", "ALICE", now) == pytest.approx(10.0)
    assert limiter.admit("192.0.2.3", "bob", now) == 0
    assert limiter.admit("192.0.2.3", "alice", now + 10.0) == 0


def test_login_limiter_tables_are_bounded() -> None:
    limiter = LoginLimiter(per_ip=Bucket(1, 0.001), per_user=Bucket(1, 0.001), max_entries=10)
    for i in range(1000):
        limiter.admit(f"10.0.{i // 256}.{i % 256}", f"user{i}", 0.0)
        limiter.failed(f"user{i}", 0.0)
    assert len(limiter.ips) == 10 and len(limiter.users) == 10


def test_tokens() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert token_hash(a) != token_hash(b) and len(token_hash(a)) == 32
    assert bearer(f"Bearer {a}") == a and bearer(f"bearer  {a} ") == a
    for header in (None, "", "Basic abc", "Bearer", "Bearer " + "x" * 300):
        assert bearer(header) is None
    policy = TokenPolicy(ttl=100.0, slide_every=10.0)
    assert policy.expires_at(5.0) == 105.0
    assert not policy.should_slide(used_at=0.0, now=9.9)
    assert policy.should_slide(used_at=0.0, now=10.0)


def test_heartbeat_buffer() -> None:
    buf = HeartbeatBuffer(max_pending=2)
    assert buf.beat("a", "u", "192.0.2.1", 1.0) is False
    buf.beat("a", "u", "192.0.2.1", 2.0)  # same device: one pending entry, newest time
    buf.beat("b", "u", "192.0.2.1", 2.0)
    assert buf.full
    buf.beat("c", "u", "192.0.2.1", 2.0)  # table full: dropped, counted
    assert buf.dropped == 1 and buf.last_seen("a") == 2.0 and buf.last_seen("c") is None
    batch = buf.take()
    assert sorted(batch) == [("a", "u", 2.0, "192.0.2.1"), ("b", "u", 2.0, "192.0.2.1")]
    assert not buf.pending
    buf.beat("a", "u", "192.0.2.9", 5.0)
    buf.restore(batch)  # a failed flush: newer heartbeats win
    assert buf.pending["a"] == ("u", 5.0, "192.0.2.9") and buf.pending["b"][1] == 2.0
    buf.want_sysinfo(["a"])
    assert buf.beat("a", "u", "", 6.0) is True  # asked once
    assert buf.beat("a", "u", "", 7.0) is False


def test_online_bitmap_is_msb_first() -> None:
    # 10 ids, indexes 0, 2, 8 and 9 online -> a0 c0 (docs/protocol.md §6.12)
    assert decode_states(b"\xa0\xc0", 10) == [
        True,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    assert decode_states(b"", 3) == [False, False, False]  # a short answer: offline


def test_uuid_is_base64_of_the_raw_uuid() -> None:
    raw = bytes(range(16))
    assert decode_uuid(base64.b64encode(raw).decode()) == raw
    for bad in ("", "not base64!", "é", "AAA"):
        assert decode_uuid(bad) is None


def test_fields_refuse_wrong_types_with_the_field_name() -> None:
    f = Fields({"s": 1, "i": "1", "b": "yes", "l": ["a", 2], "big": 1 << 70, "flag": True})
    for call in (
        lambda: f.text("s"),
        lambda: f.integer("i"),
        lambda: f.integer("flag"),
        lambda: f.flag("b"),
        lambda: f.text_list("l"),
        lambda: f.integer("big"),
        lambda: f.required_text("missing"),
    ):
        with pytest.raises(ApiError) as e:
            call()
        assert e.value.status == 400
    assert f.text("missing", "d") == "d" and f.bool_text("flag") == "true"
    assert Fields({"p": 3389}).number_text("p") == "3389"


def test_user_names() -> None:
    assert valid_name("alice") is None and valid_name("Émile Zola") is None
    for bad in ("", " alice", "alice ", "a\nb", "x" * 65):
        assert valid_name(bad) is not None
