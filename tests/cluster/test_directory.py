"""The NATS peer directory on a real 3-server JetStream cluster (R3): what a lost race,
and a write still being replicated, look like to the node (docs/cluster.md §1.3-1.4).

The PEERS stream's two followers are paused (SIGSTOP, by PID, always resumed) to hold a
write in flight at the leader: without a follower's acknowledgement nothing commits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError

from pyhbb.cluster.directory import IdTaken, StaleRevision
from pyhbb.cluster.messages import PEERS_BUCKET, peer_key
from pyhbb.rendezvous.adapters.cluster.connection import open_buckets
from pyhbb.rendezvous.adapters.cluster.directory import NatsDirectory
from tests.cluster.harness import NATS_SERVER, Proc, start_nats

PK = bytes(32)


class Servers:
    def __init__(self, procs: list[Proc], ports: list[int]) -> None:
        self.procs = procs
        self.urls = [f"nats://127.0.0.1:{p}" for p in ports]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    if not NATS_SERVER.exists():
        pytest.fail(f"{NATS_SERVER} is missing: install the cluster extra (scripts/bootstrap.sh)")
    procs, ports = start_nats(tmp_path_factory.mktemp("nats"))
    try:
        yield Servers(procs, ports)
    finally:
        for proc in procs:
            proc.stop()


async def _connect(url: str) -> Client:
    return await nats.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=0)


async def _directory(nc: Client, node: str) -> NatsDirectory:
    js = nc.jetstream(timeout=2.0)
    deadline = time.monotonic() + 30
    while True:  # JetStream needs a meta leader first (a few seconds after start)
        try:
            peers, _, _ = await open_buckets(js, 3)
            return NatsDirectory(peers, js, node)
        except (NatsError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def stream_leader(servers: Servers) -> int:
    """Index of the server leading the PEERS stream (creating the bucket if need be)."""
    probe = await _connect(servers.urls[0])
    try:
        await _directory(probe, "probe")
        info = await probe.jetstream(timeout=2.0).stream_info(f"KV_{PEERS_BUCKET}")
    finally:
        await probe.close()
    assert info.cluster is not None and info.cluster.leader
    return int(info.cluster.leader.removeprefix("s")) - 1  # members are s1..s3


@asynccontextmanager
async def two_nodes(servers: Servers) -> AsyncIterator[tuple[NatsDirectory, NatsDirectory]]:
    """Directories of n1 and n2, both connected to the server leading PEERS (so their
    requests are not slowed by routes)."""
    url = servers.urls[await stream_leader(servers)]
    ncs = [await _connect(url) for _ in range(2)]
    try:
        yield await _directory(ncs[0], "n1"), await _directory(ncs[1], "n2")
    finally:
        for nc in ncs:
            await nc.close()


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` stopped: on a loaded machine a SIGSTOP takes effect only
    once each thread is scheduled again, and until then a follower may still answer."""
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir():
        stat = (task / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            return False
    return True


@asynccontextmanager
async def followers_paused(servers: Servers) -> AsyncIterator[None]:
    """Pause every PEERS replica but the leader, which then can commit nothing."""
    leader = await stream_leader(servers)
    pids = [p.popen.pid for i, p in enumerate(servers.procs) if i != leader and p.popen]
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not all(_stopped(pid) for pid in pids):
            assert time.monotonic() < deadline, "the followers did not stop"
            await asyncio.sleep(0.005)
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_a_create_refused_while_the_winner_is_in_flight_waits_for_the_decision(
    servers: Servers,
) -> None:
    """Two machines create one id at once. While the first create is being replicated the
    leader refuses the second without comparing anything (10164), and a read from the
    leader still finds no entry. The loser must not hear "taken" before the winner is
    stored: then it reads the winner's entry, never "absent" (which made the node create
    again until its attempts ran out: SERVER_ERROR instead of UUID_MISMATCH)."""
    async with two_nodes(servers) as (d1, d2):
        for i in range(3):
            peer_id = f"inflight{i:03d}"
            async with followers_paused(servers):
                creates = [
                    asyncio.ensure_future(d.create(bytes([n]) * 16, peer_id, uuid, PK, "10.0.0.1"))
                    for d, n, uuid in ((d1, 1, b"uuid-1"), (d2, 2, b"uuid-2"))
                ]
                await asyncio.sleep(0.3)  # both reached the leader, which can commit nothing
                decided = [repr(c.exception() or c.result()) for c in creates if c.done()]
            assert decided == [], "decided while nothing was stored"
            results = await asyncio.gather(*creates, return_exceptions=True)
            won = [r for r in results if isinstance(r, int)]
            lost = [j for j, r in enumerate(results) if isinstance(r, IdTaken)]
            assert len(won) == 1 and len(lost) == 1, results
            winner, loser = ("n2", d1) if lost == [0] else ("n1", d2)
            entry = await loser.get(peer_id)  # what the loser decides again on
            assert entry is not None and (entry.owner, entry.revision) == (winner, won[0])


async def test_a_rename_whose_old_entry_changed_takes_the_new_one_back(servers: Servers) -> None:
    async with two_nodes(servers) as (d1, d2):
        revision = await d1.create(b"r1" * 8, "renameold1", b"uuid-r", PK, "10.0.0.3")
        seen = await d2.get("renameold1")
        assert seen is not None
        await d2.claim("renameold1", seen.revision)  # n2 takes the peer meanwhile
        with pytest.raises(StaleRevision):
            await d1.rename(b"r1" * 8, "renameold1", "renamenew1", revision)
        with pytest.raises(KeyNotFoundError):
            await d1.leader.get(peer_key("renamenew1"))
        held = await d1.leader.get(peer_key("renameold1"))
        assert held.revision > seen.revision


async def test_an_id_renamed_away_can_be_created_again(servers: Servers) -> None:
    """A rename leaves a deletion marker under the old id: a create writes over it."""
    async with two_nodes(servers) as (d1, d2):
        revision = await d1.create(b"m1" * 8, "markerold1", b"uuid-m", PK, "10.0.0.4")
        await d1.rename(b"m1" * 8, "markerold1", "markernew1", revision)
        with pytest.raises(KeyNotFoundError):
            await d2.leader.get(peer_key("markerold1"))
        created = await d2.create(b"m2" * 8, "markerold1", b"uuid-n", PK, "10.0.0.5")
        assert (await d1.leader.get(peer_key("markerold1"))).revision == created
        with pytest.raises(IdTaken):
            await d1.create(b"m3" * 8, "markernew1", b"uuid-o", PK, "10.0.0.6")
