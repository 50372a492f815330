"""The relay core before pairing (§8.1, §9): accepting, the first message,
the console gate, handshake bounds and the blocklist. No sockets; time is passed in."""

from __future__ import annotations

import pytest

from pyhbb.relay.actions import Deadline, Drop, Reply, Wait
from pyhbb.relay.bandwidth import MEBIBIT
from pyhbb.relay.conns import Phase
from pyhbb.relay.console import HELP
from pyhbb.relay.core import WS_OPEN_TIMEOUT
from pyhbb.wire.framing import encode_frame
from tests.relay.clients import request_relay
from tests.relay.core_helpers import arrive_tcp, frame, make_core, tcp, ws

# -- TCP first frame -------------------------------------------------------------------------


def test_tcp_connection_gets_the_first_message_deadline() -> None:
    core = make_core(first_message_timeout=30.0)
    a = tcp()
    assert core.connected(a, now=5.0) == [Deadline(a, 35.0)]
    assert a.phase is Phase.HANDSHAKE
    assert core.handshakes.count == 1


def test_first_frame_then_wait_keeps_the_bytes_after_it() -> None:
    core = make_core()
    a = tcp()
    core.connected(a, 0.0)
    # Opaque bytes that would read as a 1 GiB frame header: kept verbatim, never parsed.
    assert core.tcp_data(a, frame("u") + b"\xff\xff\xff\xffraw", 1.0) == [Wait(a)]
    assert a.phase is Phase.WAITING and a.uuid == "u" and a.leftover == b"\xff\xff\xff\xffraw"
    assert core.handshakes.count == 0  # no longer before its first message
    assert len(core.pairing) == 1


def test_first_frame_in_pieces_and_with_a_non_minimal_header() -> None:
    core = make_core()
    a = tcp()
    core.connected(a, 0.0)
    payload = request_relay("u")
    data = ((len(payload) << 2) | 1).to_bytes(2, "little") + payload + b"tail"
    for i in range(len(data) - 5):
        assert core.tcp_data(a, data[i : i + 1], 1.0) == []
    assert core.tcp_data(a, data[-5:], 1.0) == [Wait(a)]
    assert a.leftover == b"tail"


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"\x00", id="empty-frame"),
        pytest.param(encode_frame(b"\x0a\x00"), id="not-request-relay"),
        pytest.param(encode_frame(b"\xff\xff\xff"), id="garbage"),
        pytest.param(frame(""), id="empty-uuid"),
        pytest.param((70_000 << 2 | 2).to_bytes(3, "little"), id="first-frame-too-big"),
    ],
)
def test_bad_first_frame_drops_and_frees_the_slot(first: bytes) -> None:
    core = make_core()
    a = tcp()
    core.connected(a, 0.0)
    (drop,) = core.tcp_data(a, first, 1.0)
    assert isinstance(drop, Drop) and drop.conn is a
    assert a.phase is Phase.CLOSED
    assert core.handshakes.count == 0 and len(core.pairing) == 0
    assert core.tcp_data(a, frame("u"), 2.0) == []  # nothing more is read from it


def test_end_of_stream_before_the_first_frame_drops() -> None:
    core = make_core()
    a = tcp()
    core.connected(a, 0.0)
    core.tcp_data(a, frame("u")[:3], 1.0)
    assert core.tcp_eof(a, 2.0) == [Drop(a, "closed before its first message")]
    assert core.handshakes.count == 0


def test_first_message_deadline() -> None:
    core = make_core(first_message_timeout=30.0)
    a = tcp()
    core.connected(a, 0.0)
    core.tcp_data(a, frame("u")[:2], 10.0)  # trickled bytes do not extend the deadline
    assert core.deadline(a, 29.0) == [Deadline(a, 30.0)]  # early timer: re-armed
    assert core.deadline(a, 30.0) == [Drop(a, "no first message in time")]
    assert a.phase is Phase.CLOSED and core.handshakes.count == 0


def test_deadline_after_the_first_message_is_ignored() -> None:
    core = make_core()
    a = tcp()
    arrive_tcp(core, a, "u")
    assert core.deadline(a, 100.0) == []
    assert a.phase is Phase.WAITING


# -- WebSocket first message -----------------------------------------------------------------


def test_ws_handshake_then_first_message_deadlines() -> None:
    core = make_core(first_message_timeout=30.0)
    a = ws("1.1.1.1", 5)
    assert core.connected(a, 0.0) == [Deadline(a, WS_OPEN_TIMEOUT)]
    assert core.deadline(a, WS_OPEN_TIMEOUT) == [Drop(a, "no first message in time")]
    b = ws("1.1.1.1", 6)
    core.connected(b, 0.0)
    assert core.ws_opened(b, ("203.0.113.9", 6), 2.0) == [Deadline(b, 32.0)]
    assert b.addr == ("203.0.113.9", 6) and b.peer == ("1.1.1.1", 6)
    assert core.ws_message(b, request_relay("u"), 3.0) == [Wait(b)]
    assert core.pairing.waiting() == [("u", b, "203.0.113.9")]  # attributed address


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(None, id="text"),
        pytest.param(b"\x00" * 70_000, id="over-64-KiB"),
        pytest.param(b"\x0a\x00", id="not-request-relay"),
        pytest.param(request_relay(""), id="empty-uuid"),
    ],
)
def test_bad_ws_first_message_drops(message: bytes | None) -> None:
    core = make_core()
    a = ws()
    core.connected(a, 0.0)
    core.ws_opened(a, a.peer, 0.0)
    (drop,) = core.ws_message(a, message, 1.0)
    assert isinstance(drop, Drop)
    assert core.handshakes.count == 0 and len(core.pairing) == 0


# -- licence key -----------------------------------------------------------------------------


def test_licence_key_mismatch_never_waits_nor_pairs() -> None:
    core = make_core(licence_key="K")
    waiter = tcp("1.1.1.1")
    core.connected(waiter, 0.0)
    assert core.tcp_data(waiter, frame("u", "K"), 0.0) == [Wait(waiter)]
    for key in ("wrong", ""):
        bad = tcp("2.2.2.2")
        core.connected(bad, 0.0)
        (drop,) = core.tcp_data(bad, frame("u", key), 0.0)
        assert isinstance(drop, Drop) and bad.phase is Phase.CLOSED
    assert len(core.pairing) == 1 and not core.sessions
    assert core.refused["licence_key"] == 2


# -- handshake bounds ------------------------------------------------------------------------


def test_handshakes_bounded_per_ip_and_in_total() -> None:
    core = make_core(max_handshakes_per_ip=2, max_handshakes=3)
    a1, a2, a3 = tcp("1.1.1.1", 1), tcp("1.1.1.1", 2), tcp("1.1.1.1", 3)
    assert isinstance(core.connected(a1, 0.0)[0], Deadline)
    assert isinstance(core.connected(a2, 0.0)[0], Deadline)
    assert core.connected(a3, 0.0) == [Drop(a3, "too many connections in progress")]
    assert a3.phase is Phase.CLOSED
    b = ws("2.2.2.2")
    assert isinstance(core.connected(b, 0.0)[0], Deadline)
    c = tcp("3.3.3.3")
    assert isinstance(core.connected(c, 0.0)[0], Drop)  # total reached
    # A first message frees the slot; so does closing.
    core.tcp_data(a1, frame("u1"), 1.0)
    core.closed(b, 1.0)
    assert isinstance(core.connected(tcp("1.1.1.1", 4), 1.0)[0], Deadline)
    assert isinstance(core.connected(tcp("3.3.3.3"), 1.0)[0], Deadline)
    assert core.handshakes.count == 3


def test_waiting_connections_bounded_per_ip_and_in_total() -> None:
    core = make_core(max_waiting_per_ip=2, max_waiting=3)
    for i in range(2):
        assert arrive_tcp(core, tcp("1.1.1.1", i), f"u{i}") == [Wait(core.pairing.waiting()[i][1])]
    (drop,) = arrive_tcp(core, tcp("1.1.1.1", 9), "u9")
    assert isinstance(drop, Drop)
    assert isinstance(arrive_tcp(core, tcp("2.2.2.2"), "v")[0], Wait)
    assert isinstance(arrive_tcp(core, tcp("3.3.3.3"), "w")[0], Drop)  # table full
    assert core.refused == {"waiting_per_ip": 1, "waiting_full": 1}
    assert core.handshakes.count == 0


# -- blocklist -------------------------------------------------------------------------------


def test_blocklisted_peer_refused_at_accept() -> None:
    core = make_core(blocklist=("1.1.1.1", "127.0.0.5"))
    a = tcp("1.1.1.1")
    assert core.connected(a, 0.0) == [Drop(a, "blocked")]
    assert a.phase is Phase.CLOSED and core.handshakes.count == 0
    b = ws("127.0.0.5")  # no console on R+2: loopback is checked at once too
    assert core.connected(b, 0.0) == [Drop(b, "blocked")]
    assert core.refused["blocklist"] == 2


def test_blocklisted_loopback_is_refused_once_it_is_not_the_console() -> None:
    core = make_core(blocklist=("127.0.0.5",))
    a = tcp("127.0.0.5", loopback=True)
    assert isinstance(core.connected(a, 0.0)[0], Deadline)  # may be the console
    assert core.tcp_data(a, frame("u"), 1.0) == [Drop(a, "blocked")]
    c = tcp("127.0.0.5", loopback=True)
    core.connected(c, 0.0)
    assert core.tcp_data(c, b"u\n", 1.0) == [Reply(c, "")]  # the console still works


def test_blocklisted_forwarded_address_refused_at_first_message() -> None:
    core = make_core(blocklist=("198.51.100.7",))
    a = ws("127.0.0.2")
    core.connected(a, 0.0)
    core.ws_opened(a, ("198.51.100.7", 1000), 0.0)
    assert core.ws_message(a, request_relay("u"), 1.0) == [Drop(a, "blocked")]
    assert core.handshakes.count == 0


def test_blocklist_added_during_the_handshake_applies() -> None:
    core = make_core()
    a = tcp("1.1.1.1")
    core.connected(a, 0.0)
    core.blocklist.add(["1.1.1.1"])
    assert core.tcp_data(a, frame("u"), 1.0) == [Drop(a, "blocked")]


# -- console on loopback (§9) ----------------------------------------------------------------


def test_console_command_from_loopback() -> None:
    core = make_core()
    a = tcp("127.0.0.1", loopback=True)
    core.connected(a, 0.0)
    assert core.tcp_data(a, b"sb 2\n", 1.0) == [Reply(a, "")]
    assert core.settings.single_bandwidth == 2
    assert a.phase is Phase.CLOSED and core.handshakes.count == 0
    b = tcp("::1", loopback=True)
    core.connected(b, 0.0)
    assert core.tcp_data(b, b"sb", 1.0) == [Reply(b, "2Mb/s\n")]


def test_one_letter_console_command_runs_after_a_second_or_at_end_of_stream() -> None:
    core = make_core()
    a = tcp("127.0.0.1", loopback=True)
    core.connected(a, 0.0)
    # One printable byte could be a frame header: wait up to 1 s for more.
    assert core.tcp_data(a, b"h", 5.0) == [Deadline(a, 6.0)]
    assert core.deadline(a, 6.0) == [Reply(a, HELP)]
    b = tcp("127.0.0.1", loopback=True)
    core.connected(b, 0.0)
    core.tcp_data(b, b"h", 5.0)
    assert core.tcp_eof(b, 5.5) == [Reply(b, HELP)]


# A RequestRelay frame whose 1-byte header is "h" (a 26-byte payload): alone, that byte
# is also the console's help command.
H_FRAME = frame("u" * 21)
assert H_FRAME[:1] == b"h"


def test_loopback_protocol_frame_is_a_relay_client() -> None:
    core = make_core()
    a = tcp("127.0.0.1", loopback=True)
    core.connected(a, 0.0)
    assert core.tcp_data(a, H_FRAME[:1], 1.0) == [Deadline(a, 2.0)]
    assert core.tcp_data(a, H_FRAME[1:], 1.5) == [Wait(a)]
    b = tcp("127.0.0.1", loopback=True)
    core.connected(b, 0.0)
    assert core.tcp_data(b, frame("v"), 1.0) == [Wait(b)]  # non-printable header: at once


def test_loopback_frame_header_byte_then_rest_restores_the_first_message_deadline() -> None:
    core = make_core(first_message_timeout=30.0)
    a = tcp("127.0.0.1", loopback=True)
    core.connected(a, 0.0)
    assert core.tcp_data(a, H_FRAME[:1], 1.0) == [Deadline(a, 2.0)]
    assert core.tcp_data(a, H_FRAME[1:3], 1.5) == []  # a protocol frame after all
    assert core.deadline(a, 2.0) == [Deadline(a, 30.0)]
    assert core.tcp_data(a, H_FRAME[3:], 3.0) == [Wait(a)]


def test_console_words_from_elsewhere_are_not_the_console() -> None:
    core = make_core()
    a = tcp("1.1.1.1")
    core.connected(a, 0.0)
    assert core.tcp_data(a, b"h", 1.0) == []  # a frame header announcing 26 bytes
    assert core.tcp_eof(a, 2.0) == [Drop(a, "closed before its first message")]


def test_console_total_bandwidth_applies_to_the_shared_limiter_at_once() -> None:
    core = make_core()
    a = tcp("127.0.0.1", loopback=True)
    core.connected(a, 0.0)
    assert core.tcp_data(a, b"tb 2", 1.0) == [Reply(a, "")]
    assert core.total.rate == 2 * MEBIBIT
