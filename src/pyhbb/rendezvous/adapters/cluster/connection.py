"""Connecting a node to the NATS cluster and opening its KV buckets (docs/cluster.md §1.3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import APIError, BucketNotFoundError
from nats.js.kv import KeyValue

from pyhbb.cluster.messages import NODES_BUCKET, PEERS_BUCKET, RELAYS_BUCKET

log = logging.getLogger("pyhbb.cluster")

JS_TIMEOUT = 2.0
"""A directory operation not acknowledged by the quorum in this time fails (the client
gets SERVER_ERROR and retries) rather than keeping it waiting."""
PRESENCE_TTL = 10.0
PING_INTERVAL = 2.0  # the client's own ping: a dead server is noticed within seconds
JETSTREAM_READY_WAIT = 60.0
"""How long a starting node waits for JetStream to form (servers started together elect
their meta leader and learn each other's peers over several seconds)."""
_NOT_READY_CODES = {10005, 10008}  # no suitable peers for placement; JetStream not ready


class JetStreamNotReady(Exception):
    """JetStream did not become usable within JETSTREAM_READY_WAIT."""


def _not_ready(e: BaseException) -> bool:
    """An error that means JetStream is still forming, not that the request is wrong."""
    if isinstance(e, NoRespondersError | NatsTimeoutError | asyncio.TimeoutError):
        return True
    return isinstance(e, APIError) and (e.code == 503 or e.err_code in _NOT_READY_CODES)


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


async def _open_or_create(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        log.info("creating the %s bucket (replicas %d)", config.bucket, config.replicas)
        # Two nodes may create it at once: the same configuration is accepted twice.
        return await js.create_key_value(config)


async def _bucket(
    js: JetStreamContext, config: KeyValueConfig, wait: float = JETSTREAM_READY_WAIT
) -> KeyValue:
    """Open (or create) a bucket, waiting while JetStream forms: a node started together
    with its NATS servers is then not turned away by a cluster that is seconds from ready."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    delay = 0.2
    logged = False
    while True:
        try:
            return await _open_or_create(js, config)
        except Exception as e:
            if not _not_ready(e):
                raise
            if loop.time() + delay > deadline:
                raise JetStreamNotReady(
                    f"the NATS servers' JetStream did not become ready within {wait:.0f} s "
                    f"({e}): check that every server has jetstream enabled and that a "
                    "majority of them are up and routed to each other"
                ) from e
            if not logged:
                log.warning(
                    "JetStream is not ready yet (%s): waiting up to %.0f s for the NATS "
                    "cluster to form",
                    e,
                    wait,
                )
                logged = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def key_subject(kv: KeyValue, key: str) -> str:
    """The subject a write to ``key`` of ``kv`` is published on (a KV key is a subject)."""
    return f"{kv._pre}{key}"


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
