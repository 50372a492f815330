"""Keys seen lately, remembered in fixed memory: a Bloom filter in two generations.

Its users keep what forged packets can name (any id, any source address and port), so an
exact table would grow with the forger's imagination. Instead each key sets two bits of a
bitmap of 2^``bits_log2`` bits (a Bloom filter), and memory stays fixed however many keys
arrive. Forgetting is by generation: :meth:`RecentKeys.rotate`, called from housekeeping,
turns the current bitmap into the older one every ``period`` seconds and drops the older
one, so a key is remembered for one to two periods after it was last marked. Bitmaps are
allocated when the first key is marked and given back after two quiet periods: a server
that is never flooded pays nothing.

Bit positions come from the process's randomised ``hash`` (a string hashes differently in
every process, and so does a tuple holding one): a forger cannot compute which keys share
bits, so it cannot aim at a key it wants found, or not found.

A key never marked can be reported seen (a false positive; never the reverse). With ``n``
keys in a generation of ``m`` bits a look-up hits by mistake with probability about
(1 - e^(-2n/m))^2, up to twice that while both generations are full. For 2^24 bits
(2 MiB): 0.01 % at 100,000 keys, 1.3 % at a million; for 2^25 bits (4 MiB): 0.3 % at
900,000 keys (a 30,000/s flood of new keys for 30 s). Each user says what a false positive
costs it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

Positions = tuple[int, int, int, int]  # byte and bit mask of each of a key's two bits


class RecentKeys:
    """Which keys were marked in the last one to two ``period`` seconds (see the module)."""

    __slots__ = ("_current", "_previous", "_rotated_at", "marked", "mask", "period", "shift")

    def __init__(self, bits_log2: int, period: float) -> None:
        # both bit positions are cut from one 64-bit hash
        if not 3 <= bits_log2 <= 32:
            raise ValueError(f"bits_log2 must be 3 to 32, not {bits_log2}")
        if not period > 0:
            raise ValueError(f"period must be positive, not {period}")
        self.shift = bits_log2
        self.mask = (1 << bits_log2) - 1
        self.period = period
        self._current: bytearray | None = None
        self._previous: bytearray | None = None
        self._rotated_at = -math.inf
        self.marked = 0
        """Marks made in the current generation (a flood's footprint)."""

    @property
    def size(self) -> int:
        """Bytes of one generation's bitmap."""
        return 1 << (self.shift - 3)

    @property
    def allocated(self) -> int:
        """Bytes held now: 0, one or two generations."""
        return self.size * ((self._current is not None) + (self._previous is not None))

    def _positions(self, key: Hashable) -> Positions:
        h = hash(key)
        a = h & self.mask
        b = (h >> self.shift) & self.mask
        return a >> 3, 1 << (a & 7), b >> 3, 1 << (b & 7)

    def _set(self, positions: Positions) -> None:
        current = self._current
        if current is None:
            current = self._current = bytearray(self.size)
        byte_a, bit_a, byte_b, bit_b = positions
        current[byte_a] |= bit_a
        current[byte_b] |= bit_b
        self.marked += 1

    def seen(self, key: Hashable, carry: bool = False) -> bool:
        """Whether ``key`` was marked in the last one to two periods. With ``carry``, a key
        found only in the older generation is marked again, so that a key asked about
        often enough is never forgotten."""
        current = self._current
        previous = self._previous
        if current is None and previous is None:
            return False
        positions = byte_a, bit_a, byte_b, bit_b = self._positions(key)
        if current is not None and current[byte_a] & bit_a and current[byte_b] & bit_b:
            return True
        if previous is None or not (previous[byte_a] & bit_a and previous[byte_b] & bit_b):
            return False
        if carry:
            self._set(positions)
        return True

    def mark(self, key: Hashable) -> None:
        """Remember ``key`` from now on, for one to two periods."""
        self._set(self._positions(key))

    def seen_or_mark(self, key: Hashable) -> bool:
        """True when ``key`` was marked in the last one to two periods (it is not marked
        again); else mark it and return False. One hash for both."""
        positions = byte_a, bit_a, byte_b, bit_b = self._positions(key)
        current = self._current
        if current is not None and current[byte_a] & bit_a and current[byte_b] & bit_b:
            return True
        previous = self._previous
        if previous is not None and previous[byte_a] & bit_a and previous[byte_b] & bit_b:
            return True
        self._set(positions)
        return False

    def rotate(self, now: float) -> None:
        """Housekeeping (call it often, e.g. once a second): every ``period`` seconds the
        current generation becomes the older one and the older one is dropped; the first
        call starts a generation."""
        if now - self._rotated_at < self.period:
            return
        self._rotated_at = now
        self._previous, self._current = self._current, None
        self.marked = 0
