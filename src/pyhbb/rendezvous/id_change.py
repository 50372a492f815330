""" "Change ID" from a client (docs/protocol.md §7.10), which the official server does not serve.

The client sends ``RegisterPk{old_id, id = new id, uuid}`` on a new connection and reads one
answer. The rename is allowed when the new id has the client's own format, the old id
belongs to the asking machine (same uuid), and the new id is free; the database row keeps
its guid, so the peer keeps its key and history.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from pyhbb.rendezvous.actions import Action, Close, Persist, RenamePeer, Send
from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.links import Link
from pyhbb.rendezvous.messages import REGISTER_PK, Result
from pyhbb.rendezvous.peer_registry import PeerRecord
from pyhbb.rendezvous.state import CoreState
from pyhbb.wire import rendezvous_pb2 as pb

log = logging.getLogger("pyhbb.rendezvous")

# The client's own rule: an ASCII letter, then 5-15 word characters or '-'.
ID_FORMAT = re.compile(r"[A-Za-z][\w-]{5,15}")
RENAME_INTERVAL = 60.0  # one successful change per id and minute
MAX_RECENT = 10_000


class IdChange:
    """Validates and performs ID changes."""

    def __init__(self, state: CoreState) -> None:
        self.s = state
        # new id → time of its rename; when full the oldest goes, in O(1)
        self._recent: BoundedTable[str, float] = BoundedTable(MAX_RECENT)

    def change_id(self, link: Link, req: pb.RegisterPk, now: float) -> list[Action]:
        s = self.s
        old_id, new_id, uuid = req.old_id, req.id, bytes(req.uuid)

        def reply(result: int) -> list[Action]:
            # The answer may come after database look-ups: close only after sending it.
            return [Send(link, REGISTER_PK[result]), Close(link)]

        if not s.settings.id_change:
            return reply(Result.NOT_SUPPORT)
        if not ID_FORMAT.fullmatch(new_id):
            return reply(Result.INVALID_ID_FORMAT)
        if not uuid:
            return reply(Result.UUID_MISMATCH)
        if not s.blocker.allow(link.addr[0], new_id, now):
            return reply(Result.TOO_FREQUENT)

        def with_old(record: PeerRecord | None, now: float, ok: bool) -> list[Action]:
            if not ok:
                return reply(Result.SERVER_ERROR)
            if record is None or record.uuid != uuid:
                ip = link.addr[0]
                if n := s.log_throttle.count("id change refused", now):
                    log.info(
                        "ID change %s -> %s from %s refused: not its id (%d this minute)",
                        old_id,
                        new_id,
                        ip,
                        n,
                    )
                return reply(Result.UUID_MISMATCH)
            last = self._recent.get(old_id)
            if last is not None and now - last < RENAME_INTERVAL:
                return reply(Result.TOO_FREQUENT)
            if new_id == old_id:
                return reply(Result.OK)

            # the details may leave memory while we look up new_id
            guid, holder = record.guid, s.owner_elsewhere(record)
            revision = record.details.revision if record.details is not None else 0

            def with_new(taken: PeerRecord | None, now: float, ok: bool) -> list[Action]:
                if holder is not None:  # cluster mode: held by another node (or by none)
                    return self._rename_elsewhere(
                        guid, revision, holder, taken, ok, old_id, new_id, now, reply
                    )
                return self._rename(record, guid, revision, taken, ok, old_id, new_id, now, reply)

            return s.with_peer(new_id, now, with_new)

        return s.with_peer(old_id, now, with_old, need_details=True)

    def _rename(
        self,
        record: PeerRecord,
        guid: bytes,
        revision: int,
        taken: PeerRecord | None,
        ok: bool,
        old_id: str,
        new_id: str,
        now: float,
        reply: Callable[[int], list[Action]],
    ) -> list[Action]:
        s = self.s
        if not ok:
            return reply(Result.SERVER_ERROR)
        # Look again: the old record may have been evicted or renamed meanwhile.
        if taken is not None or s.peers.get(old_id) is not record:
            return reply(Result.ID_EXISTS if taken is not None else Result.UUID_MISMATCH)
        s.rename_peer(old_id, new_id)
        self._recent[new_id] = now
        if n := s.log_throttle.count("id change", now):
            log.info("peer %s changed its id to %s (%d this minute)", old_id, new_id, n)
        if not guid:
            return reply(Result.OK)
        return [
            Persist(
                RenamePeer(guid, old_id, new_id, revision),
                on_ok=reply(Result.OK),
                on_fail=reply(Result.SERVER_ERROR),
                on_conflict=reply(Result.ID_EXISTS),
            )
        ]

    def _rename_elsewhere(
        self,
        guid: bytes,
        revision: int,
        holder: str,
        taken: PeerRecord | None,
        ok: bool,
        old_id: str,
        new_id: str,
        now: float,
        reply: Callable[[int], list[Action]],
    ) -> list[Action]:
        """Cluster mode: the asking machine's id is held by another node. The directory
        entry moves to ``new_id`` (its holder is this node until the client registers its
        new id again) and the former holder forgets ``old_id``."""
        if not ok:
            return reply(Result.SERVER_ERROR)
        if taken is not None:
            return reply(Result.ID_EXISTS)
        self._recent[new_id] = now
        if n := self.s.log_throttle.count("id change", now):
            log.info("peer %s changed its id to %s (%d this minute)", old_id, new_id, n)
        return [
            Persist(
                RenamePeer(guid, old_id, new_id, revision),
                on_ok=reply(Result.OK),
                on_fail=reply(Result.SERVER_ERROR),
                on_conflict=reply(Result.ID_EXISTS),
                evict=holder,
            )
        ]
