"""The peer directory on a JetStream KV bucket, replicated by RAFT (docs/cluster.md §1.3).

A write is acknowledged only once a quorum of the servers stored it, and it names the
revision its decision was made on: two nodes racing for one id cannot both succeed.
Every write makes this node the peer's holder.

The stream leader answers a conditional write in one of three ways: stored; refused
after comparing (10071, "wrong last sequence: N": the entry is at revision N, which a
read from the leader now returns); or refused *without* comparing (10164, "wrong last
sequence"), because another write to the same key is still being replicated. The last
one decides nothing: the other write may still fail, and until it is applied the
leader itself reads the key as it was. It is therefore never reported as a lost race;
the write is tried again once the other one is decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from nats.errors import Error as NatsError
from nats.js.api import Header, PubAck
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_OP, KeyValue

from pyhbb.cluster.directory import Directory, DirectoryBusy, IdTaken, StaleRevision
from pyhbb.cluster.messages import BadMessage, Entry, decode_entry, encode_entry, peer_key
from pyhbb.rendezvous.adapters.cluster.connection import JS_TIMEOUT, key_subject, leader_reads
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
COMPARED = 10071  # the leader compared the revision and refused: the race is lost
NOT_COMPARED = 10164  # refused unread: another write to the key is still in flight
FIRST_PAUSE = 0.001  # before trying a write again that another one's replication blocked
MAX_PAUSE = 0.05
CREATE_TRIES = 3  # a create meeting the marker a deletion left tries again at its revision


class _Compared(StoreError):
    """The leader compared the revision a write named with the entry's, and refused."""


class _NotCompared(StoreError):
    """The leader refused a write without comparing: another one to the key is in flight."""


def utc_timestamp() -> str:
    """``created_at`` as SQLite's ``current_timestamp`` writes it (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


class NatsDirectory:
    """:class:`~pyhbb.cluster.directory.Directory` on the PEERS bucket."""

    def __init__(
        self,
        kv: KeyValue,
        js: JetStreamContext,
        node: str,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.kv = kv
        """Reads from any replica (fast, and they go on without a quorum)."""
        self.js = js
        self.leader = leader_reads(kv, js)
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
        except (KeyNotFoundError, StoreError):
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
        """Store ``entry`` if ``peer_id`` is still at ``revision`` (0: absent)."""
        data = encode_entry(entry)
        last = revision
        for _ in range(CREATE_TRIES):
            try:
                new = await self._put(peer_id, data, last)
            except _Compared as e:
                # lost: the leader holds the winning write, read it from there for a while
                self._read.pop(peer_id, None)
                self._contended[peer_id] = time.monotonic()
                if revision:
                    raise StaleRevision(f"{peer_id} changed since revision {revision}") from e
                last = await self._deleted_at(peer_id)
                if not last:
                    raise IdTaken(f"{peer_id} exists in the directory") from e
                continue  # only the marker of a deletion: create over it
            self._read[peer_id] = (new, entry)
            return new
        raise IdTaken(f"{peer_id} exists in the directory (deleted and created again)")

    async def _put(self, peer_id: str, data: bytes, last: int, delete: bool = False) -> int:
        """Publish ``data`` (or a deletion marker) as ``peer_id``'s entry if it is still at
        revision ``last`` (0: absent); returns the new revision, raises :class:`_Compared`
        when the race is lost. A refusal that compared nothing is retried until the write
        in flight is decided, for as long as a write may take (JS_TIMEOUT)."""
        subject = key_subject(self.kv, peer_key(peer_id))
        headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(last)}
        if delete:
            headers[KV_OP] = KV_DEL
        deadline = time.monotonic() + JS_TIMEOUT
        pause = FIRST_PAUSE
        while True:
            try:
                ack = await self._op(self._publish(subject, data, headers))
                return ack.seq
            except _NotCompared as e:
                if time.monotonic() + pause > deadline:
                    raise StoreError(
                        f"directory unavailable: another write to {peer_id} stayed "
                        f"undecided for {JS_TIMEOUT:g} s"
                    ) from e
            await asyncio.sleep(pause)
            pause = min(2 * pause, MAX_PAUSE)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
        try:
            return await self.js.publish(subject, data, headers=headers)
        except APIError as e:
            if e.err_code == COMPARED:
                raise _Compared(e.description or "wrong last sequence") from e
            if e.err_code == NOT_COMPARED:
                raise _NotCompared(e.description or "wrong last sequence") from e
            raise

    async def _deleted_at(self, peer_id: str) -> int:
        """The revision of the marker a deletion of ``peer_id`` left, as the leader has it;
        0 when the entry exists."""
        try:
            await self._op(self.leader.get(peer_key(peer_id)))
        except KeyNotFoundError as e:
            # nats-py attaches the marker's entry for a deleted key (none: never written)
            marker = e.entry
            return int(marker.revision or 0) if marker is not None else 0
        return 0

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
            await self._put(old_id, b"", revision, delete=True)
        except _Compared as e:
            # the old entry changed meanwhile: take the new one back, decide again
            await self._put(new_id, b"", new, delete=True)
            self._read.pop(new_id, None)
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
