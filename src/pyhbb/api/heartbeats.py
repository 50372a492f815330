"""Device heartbeats (docs/api.md #24) without a database write per heartbeat.

Every device posts one each 15 s (3 s during sessions). A heartbeat only updates the
device's "API last seen", so the handler notes it in memory and a flusher writes all
pending ones in one transaction every few seconds (and at shutdown). The flush also tells
which devices have no sysinfo yet; their next heartbeat answers ``{"sysinfo": 1}``, so the
client uploads it at once instead of at its next service start.

Both tables are bounded. When ``pending`` is full, a flush is due at once and
heartbeats of devices not already pending are dropped until it has run (they are
answered normally; the device's next heartbeat counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Beat = tuple[str, str, float, str]  # id, uuid text, time, ip


@dataclass
class HeartbeatBuffer:
    max_pending: int = 200_000
    max_wanted: int = 200_000
    pending: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    dropped: int = 0
    received: int = 0

    def beat(self, device_id: str, uuid_text: str, ip: str, now: float) -> bool:
        """Note a heartbeat; True when the answer should ask for a sysinfo upload."""
        self.received += 1
        if len(self.pending) < self.max_pending or device_id in self.pending:
            self.pending[device_id] = (uuid_text, now, ip)
        else:
            self.dropped += 1
        if device_id in self.wanted:
            self.wanted.discard(device_id)
            return True
        return False

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def take(self) -> list[Beat]:
        """Everything pending, for one flush; the buffer starts empty again."""
        beats = [(i, u, t, ip) for i, (u, t, ip) in self.pending.items()]
        self.pending = {}
        return beats

    def restore(self, beats: list[Beat]) -> None:
        """Put back a batch whose flush failed; newer heartbeats noted meanwhile win."""
        for device_id, uuid_text, at, ip in beats:
            if device_id not in self.pending and len(self.pending) < self.max_pending:
                self.pending[device_id] = (uuid_text, at, ip)

    def want_sysinfo(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            if len(self.wanted) >= self.max_wanted:
                break
            self.wanted.add(device_id)

    def forget_wanted(self, device_id: str) -> None:
        """A sysinfo arrived: no need to ask for it."""
        self.wanted.discard(device_id)

    def last_seen(self, device_id: str) -> float | None:
        """A heartbeat noted but not yet flushed (newer than the database's)."""
        entry = self.pending.get(device_id)
        return None if entry is None else entry[1]
