"""The in-process Directory and Bus: what a single server uses (no other node exists).

:class:`LocalDirectory` is the SQLite peer store seen as a directory: this server holds
every peer, revisions are always 0 and a claim changes nothing. :class:`LocalBus` has
no other node to reach: requests to another node find nobody, answers stay here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyhbb.cluster.bus import Bus, NodeGone
from pyhbb.cluster.directory import Directory
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.store.base import PeerStore, StoreError
from pyhbb.wire.addr_mangle import Addr


class LocalDirectory:
    """:class:`~pyhbb.cluster.directory.Directory` on one server's :class:`PeerStore`."""

    def __init__(self, store: PeerStore | None) -> None:
        self._peers = store

    @property
    def store(self) -> PeerStore:
        if self._peers is None:  # an executor built without storage (benchmarks)
            raise StoreError("this server has no peer store")
        return self._peers

    async def get(self, peer_id: str) -> StoredPeer | None:
        return await self.store.get(peer_id)

    async def get_many(self, peer_ids: Sequence[str]) -> dict[str, StoredPeer]:
        return await self.store.get_many(peer_ids)

    async def create(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> int:
        await self.store.insert(guid, peer_id, uuid, pk, ip)
        return 0

    async def compare_and_set(
        self, guid: bytes, peer_id: str, pk: bytes, ip: str, revision: int
    ) -> int:
        await self.store.update(guid, peer_id, pk, ip)  # one writer: nothing to compare
        return 0

    async def claim(self, peer_id: str, revision: int) -> int:
        return 0  # every peer is this server's already

    async def rename(self, guid: bytes, old_id: str, new_id: str, revision: int) -> int:
        await self.store.rename(guid, new_id)
        return 0

    async def count(self) -> int:
        return await self.store.count()

    async def close(self) -> None:
        await self.store.close()


class LocalBus:
    """:class:`~pyhbb.cluster.bus.Bus` of a server that is the only node."""

    node = ""

    async def to_owner(self, node: str, topic: str, body: bytes) -> bytes:
        raise NodeGone(node)

    def await_answer(self, key: Addr) -> None:
        """Answers reach this server only: nothing to arrange."""

    def deliver_answer(self, key: Addr, payload: bytes) -> None:
        """The requester is not here, and there is nowhere else it could be."""

    async def online_scatter(self, peers: list[str]) -> list[bytes]:
        return []

    async def close(self) -> None:
        """Nothing to release."""


if TYPE_CHECKING:  # mypy proves both satisfy the interfaces the executor programs against
    _directory: type[Directory] = LocalDirectory
    _bus: type[Bus] = LocalBus
