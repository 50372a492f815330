"""Frame header codec, with every vector of docs/protocol.md §14.1."""

from __future__ import annotations

import pytest

from pyhbb.wire.framing import (
    FrameDecoder,
    FrameError,
    encode_frame,
    encode_header,
    split_first_frame,
)

VECTORS = [
    (0, "00"),
    (1, "04"),
    (5, "14"),
    (63, "fc"),
    (64, "0101"),
    (100, "9101"),
    (255, "fd03"),
    (256, "0104"),
    (16383, "fdff"),
    (16384, "020001"),
    (65536, "020004"),
    (4194303, "feffff"),
    (4194304, "03000001"),
    (1073741823, "ffffffff"),
]


@pytest.mark.parametrize(("length", "header"), VECTORS)
def test_header_vectors(length: int, header: str) -> None:
    assert encode_header(length).hex() == header


@pytest.mark.parametrize(("length", "header"), VECTORS)
def test_decoder_reads_vector_headers(length: int, header: str) -> None:
    dec = FrameDecoder(max_payload=1 << 30)
    # Feed only the header plus a short prefix: the decoder must wait, not emit.
    assert dec.feed(bytes.fromhex(header)) == ([b""] if length == 0 else [])
    if 0 < length <= 70000:
        assert dec.feed(b"x" * length) == [b"x" * length]


def test_encoder_overflow() -> None:
    with pytest.raises(FrameError):
        encode_header(1 << 30)


def test_non_minimal_header_accepted() -> None:
    dec = FrameDecoder(max_payload=100)
    assert dec.feed(bytes.fromhex("1500") + b"hello") == [b"hello"]


def test_byte_by_byte_and_multiple_frames() -> None:
    stream = encode_frame(b"a" * 70) + encode_frame(b"") + encode_frame(b"xyz" * 6000)
    dec = FrameDecoder(max_payload=1 << 20)
    out: list[bytes] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert out == [b"a" * 70, b"", b"xyz" * 6000]
    assert dec.buffered == 0


def test_limit_enforced_from_header_alone() -> None:
    dec = FrameDecoder(max_payload=1000)
    with pytest.raises(FrameError):
        dec.feed(encode_header(1001))
    dec = FrameDecoder(max_payload=1000)
    assert dec.feed(encode_frame(b"z" * 1000)) == [b"z" * 1000]


def test_split_first_frame_leaves_the_rest_untouched() -> None:
    # what follows need not be frames: a relay client's raw stream right behind its request
    rest = b"\xff\xff\xff\xffraw"
    assert split_first_frame(encode_frame(b"req") + rest, 100) == (b"req", rest)
    assert split_first_frame(encode_frame(b"req")[:-1], 100) is None
    assert split_first_frame(b"", 100) is None
    with pytest.raises(FrameError):
        split_first_frame(encode_header(101), 100)


def test_limit_may_grow_between_frames() -> None:
    # The secure channel raises the limit after the KeyExchange frame, which may arrive in
    # the same read as the next, larger frame.
    dec = FrameDecoder(max_payload=10)
    dec.append(encode_frame(b"hello") + encode_frame(b"y" * 50))
    assert dec.next_frame() == b"hello"
    dec.max_payload = 100
    assert dec.next_frame() == b"y" * 50
    assert dec.next_frame() is None and dec.buffered == 0
    dec.append(encode_frame(b"z" * 101))
    with pytest.raises(FrameError):
        dec.next_frame()
