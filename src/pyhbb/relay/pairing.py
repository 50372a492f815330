"""Pairing of relay connections by uuid (§8.1 steps 5-6, §8.2), without I/O.

The first connection that sends ``RequestRelay{uuid}`` waits; the next one with the same
uuid is paired with it. A waiter leaves the table when paired, when its own deadline
passes (upstream's timer removed whatever sat under the uuid, possibly a newer waiter:
here each entry carries its own deadline), or when the server drops it. The table is
bounded globally and per IP so that idle connections cannot exhaust the server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")


class Refusal(enum.Enum):
    LICENCE_KEY = "licence key mismatch"
    EMPTY_UUID = "empty uuid"
    WAITING_FULL = "too many connections waiting for their partner"
    WAITING_PER_IP = "too many connections from this IP waiting for their partner"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Close the connection, for ``reason``."""

    reason: Refusal


@dataclass(frozen=True, slots=True)
class Waiting:
    """The connection now waits for its partner until ``deadline``."""

    deadline: float


@dataclass(frozen=True, slots=True)
class Paired(Generic[C]):
    """The connection pairs with ``partner``, which has left the waiting table."""

    partner: C
    partner_ip: str


@dataclass(slots=True)
class _Entry(Generic[C]):
    conn: C
    ip: str
    deadline: float


class Pairing(Generic[C]):
    """The waiting table. ``C`` is whatever handle the adapter uses for a connection."""

    def __init__(
        self,
        licence_key: str,
        wait_timeout: float,
        max_waiting: int,
        max_waiting_per_ip: int,
    ) -> None:
        self.licence_key = licence_key
        self.wait_timeout = wait_timeout
        self.max_waiting = max_waiting
        self.max_waiting_per_ip = max_waiting_per_ip
        self._by_uuid: dict[str, _Entry[C]] = {}
        self._per_ip: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_uuid)

    def request(
        self, conn: C, ip: str, uuid: str, licence_key: str, now: float
    ) -> Rejected | Waiting | Paired[C]:
        """A connection's first message was ``RequestRelay{uuid, licence_key}``."""
        if self.licence_key and licence_key != self.licence_key:
            return Rejected(Refusal.LICENCE_KEY)
        if not uuid:
            return Rejected(Refusal.EMPTY_UUID)
        entry = self._by_uuid.get(uuid)
        if entry is not None:
            self._drop(uuid, entry)
            return Paired(entry.conn, entry.ip)
        if len(self._by_uuid) >= self.max_waiting:
            return Rejected(Refusal.WAITING_FULL)
        if self._per_ip.get(ip, 0) >= self.max_waiting_per_ip:
            return Rejected(Refusal.WAITING_PER_IP)
        deadline = now + self.wait_timeout
        self._by_uuid[uuid] = _Entry(conn, ip, deadline)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return Waiting(deadline)

    def _drop(self, uuid: str, entry: _Entry[C]) -> None:
        del self._by_uuid[uuid]
        left = self._per_ip[entry.ip] - 1
        if left:
            self._per_ip[entry.ip] = left
        else:
            del self._per_ip[entry.ip]

    def remove(self, conn: C, uuid: str) -> bool:
        """Withdraw ``conn`` if it is still the waiter under ``uuid``; True if it was."""
        entry = self._by_uuid.get(uuid)
        if entry is None or entry.conn is not conn:
            return False
        self._drop(uuid, entry)
        return True

    def expire(self, now: float) -> list[C]:
        """Remove and return the waiters whose own deadline has passed."""
        due = [(u, e) for u, e in self._by_uuid.items() if e.deadline <= now]
        for uuid, entry in due:
            self._drop(uuid, entry)
        return [entry.conn for _, entry in due]

    def waiting(self) -> list[tuple[str, C, str]]:
        """``(uuid, conn, ip)`` of every waiter, e.g. to re-check the blocklist."""
        return [(u, e.conn, e.ip) for u, e in self._by_uuid.items()]

    def waiting_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def clear(self) -> list[C]:
        """Remove and return every waiter (shutdown)."""
        conns = [e.conn for e in self._by_uuid.values()]
        self._by_uuid.clear()
        self._per_ip.clear()
        return conns
