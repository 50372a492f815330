"""Connecting a node to the NATS cluster and opening its KV buckets (docs/cluster.md §1.3)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from pyhbb.cluster.messages import NODES_BUCKET, PEERS_BUCKET, RELAYS_BUCKET

log = logging.getLogger("pyhbb.cluster")

JS_TIMEOUT = 2.0
"""A directory operation not acknowledged by the quorum in this time fails (the client
gets SERVER_ERROR and retries) rather than keeping it waiting."""
PRESENCE_TTL = 10.0
PING_INTERVAL = 2.0  # the client's own ping: a dead server is noticed within seconds


def replicas_for(urls: list[str]) -> int:
    """R3 with three or more servers (the quorum survives one loss), else R1."""
    return 3 if len(urls) >= 3 else 1


async def connect(
    urls: list[str],
    name: str,
    on_reconnected: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
    on_disconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to any of ``urls``, reconnecting for ever (to any server of the cluster)."""

    async def disconnected() -> None:
        if on_disconnected is not None:
            await on_disconnected()

    return await nats.connect(
        servers=urls,
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1,
        ping_interval=PING_INTERVAL,
        max_outstanding_pings=2,
        reconnected_cb=on_reconnected,
        disconnected_cb=disconnected,
        error_cb=on_error,
    )


async def _bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        log.info("creating the %s bucket (replicas %d)", config.bucket, config.replicas)
        # Two nodes may create it at once: the same configuration is accepted twice.
        return await js.create_key_value(config)


def leader_reads(kv: KeyValue, js: JetStreamContext) -> KeyValue:
    """The same bucket read through its stream leader: up to date after a lost race,
    where a replica's direct read may not have the winning write yet."""
    return KeyValue(name=kv._name, stream=kv._stream, pre=kv._pre, js=js, direct=False)


async def open_buckets(js: JetStreamContext, replicas: int) -> tuple[KeyValue, KeyValue, KeyValue]:
    """PEERS (file storage: acknowledged claims survive a restart of every server),
    NODES and RELAYS (memory, entries expire after 10 s)."""
    peers = await _bucket(
        js,
        KeyValueConfig(
            bucket=PEERS_BUCKET,
            description="pyhbb peer directory",
            history=1,
            replicas=replicas,
            storage=StorageType.FILE,
            direct=True,  # reads served by any replica: they go on without a quorum
        ),
    )
    presence = [
        await _bucket(
            js,
            KeyValueConfig(
                bucket=name,
                history=1,
                replicas=replicas,
                storage=StorageType.MEMORY,
                ttl=PRESENCE_TTL,
                direct=True,
            ),
        )
        for name in (NODES_BUCKET, RELAYS_BUCKET)
    ]
    return peers, presence[0], presence[1]
