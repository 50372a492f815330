"""The peer-store interface (§10.4): what hbbs needs from a database, and the store errors.

The rendezvous core never touches the database; its adapter awaits these calls. A second
implementation (for example a networked database shared by several servers) only has to
provide this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyhbb.rendezvous.stored_peer import CompactPage, CompactRow, StoredPeer

__all__ = ["CompactPage", "CompactRow", "IdTaken", "PeerStore", "StoreError", "StoredPeer"]


class StoreError(Exception):
    """A database operation failed; the caller answers the client SERVER_ERROR."""


class Conflict(StoreError):
    """A write broke a UNIQUE or PRIMARY KEY constraint: the value is already used.

    ``constraint`` names it as SQLite does: ``table.column`` (columns joined by ", " for
    a multi-column key), or ``index 'name'`` for an index on expressions.
    """

    def __init__(self, message: str, constraint: str) -> None:
        super().__init__(message)
        self.constraint = constraint


PEER_ID_CONSTRAINT = "peer.id"


class IdTaken(Conflict):
    """The id is already used by another row (unique index ``index_peer_id``)."""

    def __init__(self, message: str = "id already used by another peer") -> None:
        super().__init__(message, PEER_ID_CONSTRAINT)


class PeerStore(Protocol):
    """Asynchronous peer storage; every method may raise :class:`StoreError`."""

    async def get(self, peer_id: str) -> StoredPeer | None:
        """The row with this id, or ``None``."""
        ...

    async def get_many(self, peer_ids: Sequence[str]) -> dict[str, StoredPeer]:
        """The rows with these ids, by id; ids without a row are left out."""
        ...

    async def scan(self, after_guid: bytes, limit: int) -> list[StoredPeer]:
        """Up to ``limit`` rows in guid order, after ``after_guid`` (``b""``: the first)."""
        ...

    async def scan_compact(self, after_guid: bytes, limit: int) -> CompactPage:
        """The page :meth:`scan` would return, as ``(id, pk, ip)`` tuples with the same
        values (the warm start reads the whole table this way)."""
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

    async def disabled_ids(self, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` ids of the rows the web console disabled (``status`` 0), and
        how many such rows there are."""
        ...

    async def close(self) -> None:
        """Finish every write already requested, then release the database."""
        ...
