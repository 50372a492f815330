"""Property tests of the wire layer on arbitrary bytes: decoders are total, round trips
hold, and damaged ciphertext is always refused."""

from __future__ import annotations

import contextlib

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
