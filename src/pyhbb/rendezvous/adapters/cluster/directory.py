"""The peer directory on a JetStream KV bucket, replicated by RAFT (docs/cluster.md §1.3).

A write is acknowledged only once a quorum of the servers stored it, and it names the
revision its decision was made on: two nodes racing for one id cannot both succeed.
Every write makes this node the peer's holder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from pyhbb.cluster.directory import Directory, DirectoryBusy, IdTaken, StaleRevision
from pyhbb.cluster.messages import BadMessage, Entry, decode_entry, encode_entry, peer_key
from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.store.base import StoreError
from pyhbb.store.peers import info_json

T = TypeVar("T")

MAX_IN_FLIGHT = 4096
"""Directory operations waiting at once; past it the node answers TOO_FREQUENT (a claim
storm drains at the quorum's pace, docs/cluster.md §1.5)."""
MAX_READ_CACHE = 50_000
CONTENDED_FOR = 5.0  # seconds an id is read from the leader after a lost race


def utc_timestamp() -> str:
    """``created_at`` as SQLite's ``current_timestamp`` writes it (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


class NatsDirectory:
    """:class:`~pyhbb.cluster.directory.Directory` on the PEERS bucket."""

    def __init__(
        self,
        kv: KeyValue,
        node: str,
        leader: KeyValue | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.kv = kv
        """Reads from any replica (fast, and they go on without a quorum)."""
        self.leader = leader or kv
        """Reads from the stream leader, for ids whose last write lost a race."""
        self._contended: BoundedTable[str, float] = BoundedTable(MAX_READ_CACHE)
        self.node = node
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._read: BoundedTable[str, tuple[int, Entry]] = BoundedTable(MAX_READ_CACHE)
        """Entries as last read, by id: a write after a read does not read again."""

    async def _op(self, operation: Awaitable[T]) -> T:
        """Run one KV operation, bounded in number; NATS failures become StoreError."""
        if self.in_flight >= self.max_in_flight:
            close = getattr(operation, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning
            raise DirectoryBusy(f"{self.in_flight} directory operations in flight")
        self.in_flight += 1
        try:
            return await operation
        except (KeyNotFoundError, KeyWrongLastSequenceError, StoreError):
            raise
        except (NatsError, TimeoutError, OSError) as e:
            raise StoreError(f"directory unavailable: {type(e).__name__} {e}".strip()) from e
        finally:
            self.in_flight -= 1

    async def get(self, peer_id: str) -> StoredPeer | None:
        contended = self._contended.get(peer_id)
        fresh = contended is not None and time.monotonic() - contended < CONTENDED_FOR
        kv = self.leader if fresh else self.kv
        try:
            found = await self._op(kv.get(peer_key(peer_id)))
        except KeyNotFoundError:
            self._read.pop(peer_id, None)
            return None
        entry = self._decode(found.value)
        if entry.id != peer_id:
            raise StoreError(f"directory entry of {peer_id} names {entry.id}")
        revision = found.revision or 0
        self._read[peer_id] = (revision, entry)
        return entry.stored(revision)

    async def get_many(self, peer_ids: Sequence[str]) -> dict[str, StoredPeer]:
        """One :meth:`get` per id, all at once (the KV store has no multi-key read)."""
        entries = await asyncio.gather(*(self.get(peer_id) for peer_id in peer_ids))
        return {peer_id: e for peer_id, e in zip(peer_ids, entries, strict=True) if e is not None}

    @staticmethod
    def _decode(value: bytes | None) -> Entry:
        try:
            return decode_entry(value or b"")
        except BadMessage as e:
            raise StoreError(str(e)) from e

    async def _entry_at(self, peer_id: str, revision: int) -> Entry:
        cached = self._read.get(peer_id)
        if cached is None or cached[0] != revision:
            await self.get(peer_id)
            cached = self._read.get(peer_id)
        if cached is None or cached[0] != revision:
            raise StaleRevision(f"{peer_id} changed since revision {revision}")
        return cached[1]

    async def _write(self, peer_id: str, entry: Entry, revision: int) -> int:
        data = encode_entry(entry)
        try:
            if revision:
                new = await self._op(self.kv.update(peer_key(peer_id), data, last=revision))
            else:
                new = await self._op(self.kv.create(peer_key(peer_id), data))
        except (KeyWrongLastSequenceError, KeyNotFoundError) as e:
            # (nats-py re-reads after a failed create; that read may miss the winner)
            self._read.pop(peer_id, None)
            self._contended[peer_id] = time.monotonic()
            if revision:
                raise StaleRevision(f"{peer_id} changed since revision {revision}") from e
            raise IdTaken(f"{peer_id} exists in the directory") from e
        self._read[peer_id] = (new, entry)
        return new

    def _claimed(self, entry: Entry) -> Entry:
        return dataclasses.replace(entry, owner=self.node, claimed_at=time.time())

    async def create(self, guid: bytes, peer_id: str, uuid: bytes, pk: bytes, ip: str) -> int:
        entry = Entry(guid, peer_id, uuid, pk, info_json(ip), created_at=utc_timestamp())
        return await self._write(peer_id, self._claimed(entry), 0)

    async def compare_and_set(
        self, guid: bytes, peer_id: str, pk: bytes, ip: str, revision: int
    ) -> int:
        base = await self._entry_at(peer_id, revision)
        if base.guid != guid:
            raise StaleRevision(f"{peer_id} belongs to another row now")
        entry = self._claimed(dataclasses.replace(base, pk=pk, info=info_json(ip, base.info)))
        return await self._write(peer_id, entry, revision)

    async def claim(self, peer_id: str, revision: int) -> int:
        base = await self._entry_at(peer_id, revision)
        return await self._write(peer_id, self._claimed(base), revision)

    async def rename(self, guid: bytes, old_id: str, new_id: str, revision: int) -> int:
        base = await self._entry_at(old_id, revision)
        if base.guid != guid:
            raise StaleRevision(f"{old_id} belongs to another row now")
        new = await self._write(new_id, self._claimed(dataclasses.replace(base, id=new_id)), 0)
        try:
            await self._op(self.kv.delete(peer_key(old_id), last=revision))
        except KeyWrongLastSequenceError as e:
            # the old entry changed meanwhile: take the new one back, decide again
            await self._op(self.kv.delete(peer_key(new_id), last=new))
            raise StaleRevision(f"{old_id} changed during the rename") from e
        self._read.pop(old_id, None)
        return new

    async def count(self) -> int:
        status = await self._op(self.kv.status())
        return int(status.values)

    async def close(self) -> None:
        """Writes are acknowledged when they return: nothing is left to finish."""


if TYPE_CHECKING:
    _interface: type[Directory] = NatsDirectory
