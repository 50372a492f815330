"""Ids that the database does not hold, remembered so that heartbeats for them cost no
read: the negative cache of the heartbeat take-back (registration.py).

Forged heartbeats may name any id, so the memory is fixed: a Bloom filter (two bits per
id) in two generations, the older dropped every ``period`` seconds. An id is remembered
for one to two periods after it was last looked up or asked about (a client that keeps
heartbeating an unknown id keeps it cached, at no read). Bit positions come from the
process's randomised ``hash``: a forger cannot aim at them. A false positive (about 0.1 %
with 100,000 ids in a generation, 5 % with a million) makes a registered peer's heartbeat
answer ``request_pk``, the behaviour before take-back; never the reverse. The bitmaps are
allocated when the first id is marked and freed after two quiet periods.
"""

from __future__ import annotations

DEFAULT_BITS_LOG2 = 24  # 2 MiB per generation
DEFAULT_PERIOD = 60.0


class AbsentIds:
    """Which ids were found missing from the database lately (see the module)."""

    def __init__(self, bits_log2: int = DEFAULT_BITS_LOG2, period: float = DEFAULT_PERIOD) -> None:
        self.shift = bits_log2
        self.mask = (1 << bits_log2) - 1
        self.size = 1 << (bits_log2 - 3)
        self.period = period
        self._current: bytearray | None = None
        self._previous: bytearray | None = None
        self._rotated_at = 0.0
        self.marked = 0
        """Ids marked in the current generation (a flood's footprint)."""

    def _bits(self, peer_id: str) -> tuple[int, int, int, int]:
        h = hash(peer_id)
        a = h & self.mask
        b = (h >> self.shift) & self.mask
        return a >> 3, 1 << (a & 7), b >> 3, 1 << (b & 7)

    def seen(self, peer_id: str) -> bool:
        """Whether ``peer_id`` was marked missing in the last one to two periods; a hit in
        the older generation is carried into the current one."""
        previous = self._previous
        current = self._current
        if current is None and previous is None:
            return False
        byte_a, bit_a, byte_b, bit_b = self._bits(peer_id)
        if current is not None and current[byte_a] & bit_a and current[byte_b] & bit_b:
            return True
        if previous is not None and previous[byte_a] & bit_a and previous[byte_b] & bit_b:
            self.mark(peer_id)
            return True
        return False

    def mark(self, peer_id: str) -> None:
        """``peer_id`` is not in the database."""
        current = self._current
        if current is None:
            current = self._current = bytearray(self.size)
        byte_a, bit_a, byte_b, bit_b = self._bits(peer_id)
        current[byte_a] |= bit_a
        current[byte_b] |= bit_b
        self.marked += 1

    def rotate(self, now: float) -> None:
        """Housekeeping: every ``period`` seconds the current generation becomes the older
        one and the older one is dropped (both are gone after two quiet periods)."""
        if now - self._rotated_at < self.period:
            return
        self._rotated_at = now
        self._previous, self._current = self._current, None
        self.marked = 0
