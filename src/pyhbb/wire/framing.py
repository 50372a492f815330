"""RustDesk TCP framing (docs/protocol.md §2.1): a 1-4 byte little-endian length header.

The low two bits of the first byte give the header size minus one; the header value
shifted right by two is the payload length. Decoding accepts non-minimal headers, as the
official decoder does, but enforces a caller-chosen maximum payload size.
"""

from __future__ import annotations

MAX_PAYLOAD = 0x3FFFFFFF  # largest length the 4-byte header can express


class FrameError(Exception):
    """Raised for a frame the encoder cannot express or the decoder must refuse."""


def encode_header(length: int) -> bytes:
    """Return the shortest header for a payload of ``length`` bytes."""
    if length <= 0x3F:
        return bytes((length << 2,))
    if length <= 0x3FFF:
        return ((length << 2) | 1).to_bytes(2, "little")
    if length <= 0x3FFFFF:
        return ((length << 2) | 2).to_bytes(3, "little")
    if length <= MAX_PAYLOAD:
        return ((length << 2) | 3).to_bytes(4, "little")
    raise FrameError(f"payload of {length} bytes is too long for a frame")


def encode_frame(payload: bytes) -> bytes:
    """Return ``payload`` with its frame header prepended."""
    return encode_header(len(payload)) + payload


def _header(buf: bytes | bytearray, pos: int, max_payload: int) -> tuple[int, int] | None:
    """``(payload start, payload length)`` of the frame at ``pos``, or None while its header
    is incomplete; raises :class:`FrameError` past ``max_payload``."""
    if pos >= len(buf):
        return None
    head_len = (buf[pos] & 3) + 1
    if len(buf) - pos < head_len:
        return None
    length = int.from_bytes(buf[pos : pos + head_len], "little") >> 2
    if length > max_payload:
        raise FrameError(f"frame of {length} bytes exceeds the {max_payload} limit")
    return pos + head_len, length


def split_first_frame(data: bytes, max_payload: int) -> tuple[bytes, bytes] | None:
    """``(payload, rest)`` once ``data`` holds a whole first frame, else None.

    Only the first frame is decoded: the relay forwards what follows verbatim, and it need
    not be frames at all. Raises :class:`FrameError` past ``max_payload``.
    """
    found = _header(data, 0, max_payload)
    if found is None:
        return None
    start, length = found
    if len(data) - start < length:
        return None
    return data[start : start + length], data[start + length :]


class FrameDecoder:
    """Incremental frame decoder with a hard payload-size limit.

    Feed it whatever the socket delivered; it returns every complete payload and keeps the
    rest. A header announcing more than ``max_payload`` raises :class:`FrameError` at once,
    before any of that payload is buffered, so a hostile peer cannot make us hold more
    than ``max_payload`` plus one read. :meth:`append` and :meth:`next_frame` decode one
    frame at a time, for callers whose limit changes between frames.
    """

    __slots__ = ("_buf", "_pos", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0

    def append(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete payload, checked against the current ``max_payload``."""
        found = _header(self._buf, self._pos, self.max_payload)
        if found is None:
            return None
        start, length = found
        if len(self._buf) - start < length:
            return None
        self._pos = start + length
        return bytes(self._buf[start : self._pos])

    def feed(self, data: bytes) -> list[bytes]:
        self.append(data)
        frames: list[bytes] = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos
