"""The peer-store interface (docs/protocol.md §10.4): what hbbs needs from a database.

The rendezvous core never touches the database; its adapter awaits these calls. A second
implementation (for example a networked database shared by several servers) only has to
provide this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """A database operation failed; the caller answers the client SERVER_ERROR."""


class IdTaken(StoreError):
    """The id is already used by another row (unique index ``index_peer_id``)."""


@dataclass(frozen=True, slots=True)
class StoredPeer:
    """One row of the ``peer`` table, as far as hbbs uses it."""

    guid: bytes
    id: str
    uuid: bytes
    pk: bytes
    ip: str
    """``info.ip``: the IP text of the last accepted RegisterPk ("" when unknown)."""


class PeerStore(Protocol):
    """Asynchronous peer storage; every method may raise :class:`StoreError`."""

    async def get(self, peer_id: str) -> StoredPeer | None:
        """The row with this id, or ``None``."""
        ...

    async def insert(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> None:
        """Insert a new row; raises :class:`IdTaken` if the id exists."""
        ...

    async def update(self, guid: bytes, peer_id: str, pk: bytes, ip: str) -> None:
        """Update ``id``, ``pk`` and ``info`` of the row with this guid."""
        ...

    async def rename(self, guid: bytes, new_id: str) -> None:
        """Change the id of the row with this guid; raises :class:`IdTaken` if it is used."""
        ...

    async def count(self) -> int:
        """Number of rows (for statistics)."""
        ...

    async def close(self) -> None:
        """Finish every write already requested, then release the database."""
        ...
