"""One node of a cluster: its NATS connection, directory, bus, presence and relay loads.

Every 3 s the node writes its presence (NODES) and its reachable relays with the pairs
it handed out lately (RELAYS), both expiring after 10 s, and reads the others': the
online scatter then knows how many answers to wait for, and each punch gets the least
loaded relay of the whole cluster (docs/cluster.md §1.3-1.4). After a reconnect, or
when the client reports dropped messages, an evict may have been lost: every held peer
is checked against the directory at its next use (docs/cluster.md §1.5).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from pyhbb.config.sources import ConfigError
from pyhbb.observability.throttle import LogThrottle
from pyhbb.rendezvous import relay_health
from pyhbb.rendezvous.actions import Action
from pyhbb.rendezvous.adapters.bus_handler import CoreBusHandler
from pyhbb.rendezvous.adapters.cluster.bus import NatsBus
from pyhbb.rendezvous.adapters.cluster.connection import (
    JS_TIMEOUT,
    JetStreamNotReady,
    connect,
    open_buckets,
    replicas_for,
)
from pyhbb.rendezvous.adapters.cluster.directory import NatsDirectory
from pyhbb.rendezvous.admin import CoreAdmin
from pyhbb.rendezvous.core import RendezvousCore

log = logging.getLogger("pyhbb.cluster")

PRESENCE_INTERVAL = 3.0
LOAD_WINDOWS = 3  # pairs counted over the last 3 intervals (~the entries' 10 s life)


class ClusterNode:
    """The NATS side of one hbbs in cluster mode."""

    def __init__(
        self,
        nc: Client,
        node: str,
        urls: list[str],
        directory: NatsDirectory,
        bus: NatsBus,
        nodes: KeyValue,
        relays: KeyValue,
    ) -> None:
        self.nc = nc
        self.node = node
        self.urls = urls
        self.directory = directory
        self.bus = bus
        self._nodes_kv = nodes
        self._relays_kv = relays
        self.live_nodes: set[str] = {node}
        self._admin: CoreAdmin | None = None
        self._own_relays: list[str] = []
        self._pairs: collections.deque[dict[str, int]] = collections.deque(maxlen=LOAD_WINDOWS)
        self._task: asyncio.Task[None] | None = None
        self._throttle = LogThrottle()
        self.reconnects = 0

    @classmethod
    async def connect(cls, urls: list[str], node: str) -> ClusterNode:
        """Connect and open the buckets; refuses a node name another live node answers for."""
        holder: list[ClusterNode] = []

        async def reconnected() -> None:
            if holder:
                holder[0]._reconnected()

        async def error(e: Exception) -> None:
            if holder:
                holder[0]._error(e)

        try:
            nc = await connect(urls, f"pyhbb-hbbs-{node}", reconnected, error)
        except (NatsError, OSError, TimeoutError) as e:
            why = str(e) or type(e).__name__
            servers = ",".join(urls)
            raise ConfigError(f"cannot reach the NATS servers {servers} (CLUSTER): {why}") from e
        try:
            js = nc.jetstream(timeout=JS_TIMEOUT)
            try:
                peers, nodes, relays = await open_buckets(js, replicas_for(urls))
            except JetStreamNotReady as e:
                raise ConfigError(str(e)) from e
            directory = NatsDirectory(peers, js, node)
            self = cls(nc, node, urls, directory, NatsBus(nc, node, _Unset()), nodes, relays)
            self.bus.other_nodes = lambda: len(self.live_nodes) - 1
            if await self.bus.name_in_use():
                raise ConfigError(
                    f"NODE_NAME={node} is in use by another live node: give every node its "
                    "own name (--node-name)"
                )
        except BaseException:
            await nc.close()
            raise
        holder.append(self)
        return self

    async def start(
        self,
        core: RendezvousCore,
        run: Callable[[list[Action]], None],
        clock: Callable[[], float],
        own_relays: list[str],
    ) -> None:
        """Serve the bus for ``core`` and start the presence loop."""
        self._admin = core.admin
        self._own_relays = list(own_relays)
        self.bus.handler = CoreBusHandler(core, run, clock)
        await self.bus.start()
        await self._presence_once()
        self._task = asyncio.ensure_future(self._presence_forever())

    def _reconnected(self) -> None:
        self.reconnects += 1
        log.warning(
            "reconnected to NATS (%s)",
            self.nc.connected_url.netloc if self.nc.connected_url else "?",
        )
        if self._admin is not None:
            self._admin.doubt_ownership()

    def _error(self, e: Exception) -> None:
        if isinstance(e, SlowConsumerError):
            # messages were dropped for us: an evict may be among them
            if self._admin is not None and (n := self._throttle.count("slow")):
                log.warning("NATS dropped messages for this node (%d this minute)", n)
            if self._admin is not None:
                self._admin.doubt_ownership()
        elif n := self._throttle.count("error"):
            log.warning("NATS: %s (%d this minute)", str(e) or type(e).__name__, n)

    async def _presence_forever(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_INTERVAL)
            try:
                await self._presence_once()
            except (NatsError, OSError, TimeoutError) as e:
                if n := self._throttle.count("presence"):
                    log.warning("cluster presence not refreshed: %s (%d this minute)", e, n)

    async def _presence_once(self) -> None:
        admin = self._admin
        assert admin is not None
        self.bus.sweep()
        results = await asyncio.gather(*(relay_health.reachable(r) for r in self._own_relays))
        up = [r for r, ok in zip(self._own_relays, results, strict=True) if ok]
        self._pairs.append(admin.take_relay_pairs())
        pairs: collections.Counter[str] = collections.Counter()
        for window in self._pairs:
            pairs.update(window)
        mine = {"node": self.node, "at": time.time(), "pid": os.getpid()}
        await self._nodes_kv.put(self.node, json.dumps(mine).encode())
        relays_doc = {"node": self.node, "relays": up, "pairs": dict(pairs)}
        await self._relays_kv.put(self.node, json.dumps(relays_doc).encode())
        self.live_nodes = set(await _keys(self._nodes_kv)) | {self.node}
        relays: list[str] = []
        loads: collections.Counter[str] = collections.Counter()
        for key in sorted(await _keys(self._relays_kv)):
            with contextlib.suppress(NatsError, ValueError, KeyError, TypeError):
                doc = json.loads((await self._relays_kv.get(key)).value or b"")
                relays += [r for r in doc["relays"] if isinstance(r, str) and r not in relays]
                loads.update({str(r): int(n) for r, n in dict(doc["pairs"]).items()})
        if not relays:
            relays = up or self._own_relays  # never hand out an empty relay
        admin.set_cluster_relays(relays, dict(loads))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await self.bus.close()
            await self._nodes_kv.delete(self.node)
            await self._relays_kv.delete(self.node)
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await self.nc.drain()
        await self.nc.close()


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except NoKeysError:
        return []


class _Unset:
    """The bus handler before :meth:`ClusterNode.start` (no request can arrive yet: the
    node does not subscribe before)."""

    def on_request(self, topic: str, body: bytes) -> bytes:
        return b"unknown"

    def on_answer(self, key: tuple[str, int], payload: bytes) -> None:
        return None

    def online_states(self, peers: list[str]) -> bytes:
        return b""
