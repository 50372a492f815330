"""Keep warnings about floods readable: log the 1st, 2nd, 4th, 8th ... occurrence."""

from __future__ import annotations


def worth_logging(count: int) -> bool:
    """True when ``count`` (occurrences so far, from 1) is a power of two."""
    return count > 0 and count & (count - 1) == 0
