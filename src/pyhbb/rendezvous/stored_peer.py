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
