"""The bus interface: how one node reaches another (docs/cluster.md §1.2).

* :meth:`Bus.to_owner`: a request to the node holding a peer (pass on a punch or a
  relay request, evict a peer), answered by that node's :class:`BusHandler`;
* :meth:`Bus.await_answer` / :meth:`Bus.deliver_answer`: B's answer reaches whichever
  node it is sent to; it is delivered to the node where requester A waits;
* :meth:`Bus.online_scatter`: every other node's bitmap for an online query.

On a single server there is no other node: :class:`~pyhbb.cluster.local.LocalBus`.
"""

from __future__ import annotations

from typing import Protocol

from pyhbb.wire.addr_mangle import Addr

# Requests to the node holding a peer (the last token of its subject).
PUNCH = "punch"
RELAY = "relay"
EVICT = "evict"
TOPICS = (PUNCH, RELAY, EVICT)


class NodeGone(Exception):
    """Nobody listens for that node any more (it died or left): give up at once."""


class BusHandler(Protocol):
    """What a node does with what the bus brings it (see rendezvous/adapters/bus_handler.py)."""

    def on_request(self, topic: str, body: bytes) -> bytes:
        """A request from another node (one of :data:`TOPICS`); returns the reply."""
        ...

    def on_answer(self, key: Addr, payload: bytes) -> None:
        """B's answer for the requester ``key``, which waits here."""
        ...

    def online_states(self, peers: list[str]) -> bytes:
        """This node's online bitmap for ``peers``."""
        ...


class Bus(Protocol):
    """Messages between the nodes of one cluster."""

    node: str
    """This node's name ("" for the single server)."""

    async def to_owner(self, node: str, topic: str, body: bytes) -> bytes:
        """Request ``topic`` of ``node``; its reply. Raises :class:`NodeGone` when no
        such node listens, :class:`TimeoutError` when it did not answer in time."""
        ...

    def await_answer(self, key: Addr) -> None:
        """A requester waits here under ``key`` (for a bounded time)."""
        ...

    def deliver_answer(self, key: Addr, payload: bytes) -> None:
        """Send B's answer to the node where the requester ``key`` waits."""
        ...

    async def online_scatter(self, peers: list[str]) -> list[bytes]:
        """The other nodes' online bitmaps for ``peers`` (those that answered in time)."""
        ...

    async def close(self) -> None: ...
