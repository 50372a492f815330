"""The peer directory interface: where every node reads and claims peers (docs/cluster.md §1.3).

A single server's directory is its SQLite database, where every peer is its own and
revisions do not exist (0). In cluster mode each entry also names the node holding the
peer (``owner``) and carries a revision; a write names the revision its decision was
made on and is refused (:class:`StaleRevision`) if the entry changed since, so two nodes
can never both believe a claim succeeded. Writes made by a node always make it the
holder of the peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.store.base import IdTaken, StoreError

__all__ = ["Directory", "DirectoryBusy", "IdTaken", "StaleRevision", "StoreError", "StoredPeer"]


class StaleRevision(StoreError):
    """The entry changed since the revision the write named: read and decide again."""


class DirectoryBusy(StoreError):
    """Too many directory operations in flight (a claim storm): refused without trying,
    so the client hears TOO_FREQUENT and retries later instead of waiting in a queue."""


class Directory(Protocol):
    """Asynchronous peer directory; every method may raise :class:`StoreError`."""

    async def get(self, peer_id: str) -> StoredPeer | None:
        """The entry of ``peer_id`` (with ``owner`` and ``revision``), or ``None``."""
        ...

    async def get_many(self, peer_ids: Sequence[str]) -> dict[str, StoredPeer]:
        """The entries of these ids, by id (ids without one are left out): what many
        look-ups at once cost less as (hbbs batches them under load)."""
        ...

    async def create(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> int:
        """A new entry held by this node; raises :class:`IdTaken` if the id exists.
        Returns the new revision."""
        ...

    async def compare_and_set(
        self, guid: bytes, peer_id: str, pk: bytes, ip: str, revision: int
    ) -> int:
        """Change the key and ``info.ip`` of the entry read at ``revision``, making this
        node its holder; raises :class:`StaleRevision` if it changed since."""
        ...

    async def claim(self, peer_id: str, revision: int) -> int:
        """Make this node the holder of the entry read at ``revision``, nothing else
        changed; raises :class:`StaleRevision` if it changed since."""
        ...

    async def rename(self, guid: bytes, old_id: str, new_id: str, revision: int) -> int:
        """Move the entry to ``new_id`` (held by this node); raises :class:`IdTaken` if
        ``new_id`` exists, :class:`StaleRevision` if ``old_id`` changed since."""
        ...

    async def count(self) -> int:
        """Number of entries (for statistics)."""
        ...

    async def close(self) -> None:
        """Finish every write already requested, then release the directory."""
        ...
