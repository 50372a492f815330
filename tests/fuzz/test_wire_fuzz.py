"""Property tests of the wire layer on arbitrary bytes: decoders are total, round trips
hold, and damaged ciphertext is always refused."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhbb.net.console_gate import Verdict, classify
from pyhbb.rendezvous.console import COMMANDS
from pyhbb.wire import addr_mangle
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame, split_first_frame
from pyhbb.wire.secure_channel import HandshakeError, SecureSession

EXAMPLES = settings(max_examples=400, deadline=None)


@EXAMPLES
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(1, 50), max_size=40),
)
def test_frames_survive_any_segmentation(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = FrameDecoder(max_payload=1000)
    got: list[bytes] = []
    pos = 0
    for cut in cuts:
        got += dec.feed(stream[pos : pos + cut])
        pos += cut
    got += dec.feed(stream[pos:])
    assert got == payloads
    assert dec.buffered == 0


@EXAMPLES
@given(data=st.binary(max_size=200), limit=st.integers(0, 100))
def test_decoders_never_fail_on_garbage(data: bytes, limit: int) -> None:
    try:
        frames = FrameDecoder(limit).feed(data)
    except FrameError:
        pass
    else:
        assert all(len(f) <= limit for f in frames)
    with contextlib.suppress(FrameError):
        split_first_frame(data, limit)
    ip, port = addr_mangle.decode(data)  # clients never reject: neither do we
    assert 0 <= port <= 65535 and isinstance(ip, str)


@EXAMPLES
@given(
    octets=st.tuples(*[st.integers(0, 255)] * 4),
    port=st.integers(0, 65535),
    t=st.integers(0, 2**32 - 1),
)
def test_ipv4_addr_mangle_round_trips_for_any_time(
    octets: tuple[int, int, int, int], port: int, t: int
) -> None:
    ip = ".".join(map(str, octets))
    assert addr_mangle.decode(addr_mangle.encode((ip, port), t)) == (ip, port)


@EXAMPLES
@given(raw=st.binary(min_size=16, max_size=16), port=st.integers(0, 65535))
def test_ipv6_addr_mangle_round_trips(raw: bytes, port: int) -> None:
    import ipaddress

    ip = addr_mangle.try_into_v4(str(ipaddress.IPv6Address(raw)))
    assert addr_mangle.decode(addr_mangle.encode((ip, port))) == (ip, port)


# -- the pure address conversions agree with the C library's inet_pton / inet_ntop ----------


def _inet_pton(ip: str) -> bytes | None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_pton(family, ip)
    except OSError:
        return None


def _ip_to_bytes(ip: str) -> bytes | None:
    try:
        return addr_mangle.ip_to_bytes(ip)
    except ValueError:
        return None


@EXAMPLES
@given(raw=st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)))
def test_ip_text_is_inet_ntop_and_parses_back(raw: bytes) -> None:
    text = addr_mangle.ip_from_bytes(raw)
    assert text == socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)
    assert addr_mangle.ip_to_bytes(text) == raw


# Address-like text: the zero runs and short groups where parsers go wrong.
_WORDS = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0DB8, 0xABC, 0x10])
_V6_TEXT = st.lists(_WORDS, min_size=8, max_size=8).map(
    lambda words: str(ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words)))
)


@st.composite
def _damaged(draw: st.DrawFn, text: st.SearchStrategy[str]) -> str:
    """Valid address text with a few random edits (insert, delete, replace)."""
    chars = list(draw(text))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(chars)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(list("0123456789aAfF:.gx ")))
        if edit == "insert":
            chars.insert(pos, char)
        elif chars:
            pos = min(pos, len(chars) - 1)
            if edit == "delete":
                del chars[pos]
            else:
                chars[pos] = char
    return "".join(chars)


_V4_TEXT = st.tuples(*[st.integers(0, 255)] * 4).map(lambda o: ".".join(map(str, o)))


@settings(max_examples=3000, deadline=None)
@given(
    ip=st.one_of(
        _damaged(_V6_TEXT),
        _damaged(_V4_TEXT),
        _damaged(st.sampled_from(["::", "::1", "1::", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4"])),
        st.text(alphabet="0123456789abcdefABCDEF:.", max_size=42),
    )
)
def test_ip_parsing_accepts_and_refuses_what_inet_pton_does(ip: str) -> None:
    assert _ip_to_bytes(ip) == _inet_pton(ip)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
        ("::0.0.1.0", "::100"),
        ("::1.2.3.4", "::1.2.3.4"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
    ],
)
def test_ip_text_corner_cases(ip: str, expected: str) -> None:
    assert addr_mangle.ip_from_bytes(addr_mangle.ip_to_bytes(ip)) == expected


@EXAMPLES
@given(plain=st.binary(min_size=2, max_size=200), flip=st.integers(0, 10_000))
def test_damaged_ciphertext_is_refused(plain: bytes, flip: int) -> None:
    sender, receiver = SecureSession(b"k" * 32), SecureSession(b"k" * 32)
    sealed = bytearray(sender.encrypt(plain))
    sealed[flip % len(sealed)] ^= 1 << (flip % 8)
    with pytest.raises(HandshakeError):
        receiver.decrypt(bytes(sealed))


@EXAMPLES
@given(plain=st.lists(st.binary(max_size=100), max_size=10))
def test_sessions_stay_in_step(plain: list[bytes]) -> None:
    a, b = SecureSession(b"s" * 32), SecureSession(b"s" * 32)
    assert [b.decrypt(a.encrypt(p)) for p in plain] == plain


@EXAMPLES
@given(data=st.binary(min_size=1, max_size=40))
def test_protocol_frames_are_never_taken_for_console_text(data: bytes) -> None:
    # Any message a client sends on these ports starts with a frame header and then a
    # field tag >= 0x80 (fields 18, 20, 23): the gate must answer PROTOCOL or UNDECIDED.
    for tag in (b"\x92\x01", b"\xa2\x01", b"\xba\x01"):
        frame = encode_frame(tag + data)
        assert classify(frame, COMMANDS) is Verdict.PROTOCOL
        assert classify(frame[:1], COMMANDS) in (Verdict.PROTOCOL, Verdict.UNDECIDED)
