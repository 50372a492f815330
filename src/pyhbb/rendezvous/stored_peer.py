"""The peer row the rendezvous core receives from a store (docs/protocol.md §10.4).

It lives with the core, which defines what it needs; stores (store/) produce it.
"""

from __future__ import annotations

from typing import NamedTuple


class StoredPeer(NamedTuple):
    """One row of the ``peer`` table, as far as hbbs uses it (a named tuple: a restart
    reads a million of them, and building one costs a third of a frozen dataclass)."""

    guid: bytes
    id: str
    uuid: bytes
    pk: bytes
    ip: str
    """``info.ip``: the IP text of the last accepted RegisterPk ("" when unknown)."""
    owner: str = ""
    """The node holding the peer in a shared directory (cluster mode, docs/cluster.md §1.3);
    "" in a single server's database, where every peer is this server's."""
    revision: int = 0
    """The directory entry's revision, which a claim must name (0 in SQLite)."""


CompactRow = tuple[str, bytes, str]
"""What a warm start needs of a row: ``(id, pk, info.ip)``, the values of the same names
in :class:`StoredPeer`. A plain tuple, as the database driver returns it: a restart reads
a million, and no per-row object beyond the driver's own is built for them."""


class CompactPage(NamedTuple):
    """One page of a table scan for the warm start."""

    rows: list[CompactRow]
    """In guid order."""
    last_guid: bytes
    """The guid of the last row: the next page starts after it (``b""`` with no rows)."""
