"""Decide whether a loopback connection is an admin-console session or protocol traffic.

docs/protocol.md §9 "pyhbb decision": a connection is a console session only if its first
bytes are printable ASCII text starting with a known command word. Every protobuf message
a client sends on these ports carries a field tag byte >= 0x80 within its first two
bytes, so a protocol frame never passes the test.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum

CONSOLE_READ_LIMIT = 1024
CONSOLE_READ_TIMEOUT = 1.0


class Verdict(Enum):
    CONSOLE = "console"
    PROTOCOL = "protocol"
    UNDECIDED = "undecided"  # too few bytes yet (a lone printable byte)


def classify(first: bytes, commands: Collection[str]) -> Verdict:
    """Classify the bytes received so far on a loopback connection."""
    if not first:
        return Verdict.UNDECIDED
    text = first.rstrip(b" \t\r\n")
    if not text or any(b < 0x20 or b > 0x7E for b in text):
        return Verdict.PROTOCOL
    word = text.split(b" ", 1)[0].decode("ascii")
    if word in commands:
        # A single byte could still be a frame header whose tag byte has not arrived.
        return Verdict.UNDECIDED if len(first) == 1 else Verdict.CONSOLE
    if len(text) == 1 and len(first) == 1 and any(c.startswith(word) for c in commands):
        return Verdict.UNDECIDED
    return Verdict.PROTOCOL


def parse_command(data: bytes) -> list[str]:
    """Split a console request the upstream way: UTF-8, trimmed, single spaces."""
    return data.decode("utf-8", errors="replace").strip().split(" ")
