"""A node started before its NATS cluster has formed waits for JetStream instead of
exiting (docs/cluster-deployment.md: servers and nodes may start in any order)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType

from pyhbb.rendezvous.adapters.cluster.connection import JetStreamNotReady, _bucket
from pyhbb.wire.keys import load_or_generate
from tests.cluster.harness import NATS_SERVER, Cluster, node_proc, start_nats
from tests.support.ports import free_base_port
from tests.support.processes import wait_tcp


@pytest.fixture
def two_of_three(tmp_path: Path) -> Cluster:
    if not NATS_SERVER.exists():
        pytest.fail(f"{NATS_SERVER} is missing: install the cluster extra (scripts/bootstrap.sh)")
    (tmp_path / "keys").mkdir()
    load_or_generate(tmp_path / "keys")
    c = Cluster(tmp_path, free_base_port((-1, 0, 1, 2, 3)))
    c.nats, c.nats_ports = start_nats(tmp_path, running=2)
    return c


async def test_a_bucket_waits_for_jetstream_and_says_why_when_it_never_forms(
    two_of_three: Cluster,
) -> None:
    c = two_of_three
    try:
        nc = await nats.connect(servers=c.urls[:2], connect_timeout=5)
        try:
            js = nc.jetstream(timeout=2.0)
            config = KeyValueConfig(
                bucket="STARTUP", history=1, replicas=3, storage=StorageType.MEMORY
            )
            # Two of three servers: a quorum, but no room for three replicas.
            with pytest.raises(JetStreamNotReady, match="did not become ready within 3 s"):
                await _bucket(js, config, wait=3.0)
            waiting = asyncio.create_task(_bucket(js, config, wait=60.0))
            await asyncio.sleep(1.0)
            assert not waiting.done()
            c.nats[2].start()
            kv = await asyncio.wait_for(waiting, 60.0)
            await kv.put("k", b"v")
            assert (await kv.get("k")).value == b"v"
        finally:
            await nc.close()
    finally:
        c.stop()


def test_a_node_started_before_the_cluster_formed_comes_up_when_it_does(
    two_of_three: Cluster,
) -> None:
    c = two_of_three
    try:
        node = node_proc(c, 0, [])
        c.nodes.append(node)
        node.start()
        deadline = time.monotonic() + 20
        while "JetStream is not ready yet" not in node.log.read_text(errors="replace"):
            assert node.running, node.log.read_text(errors="replace")
            assert time.monotonic() < deadline, node.log.read_text(errors="replace")
            time.sleep(0.1)
        c.nats[2].start()
        deadline = time.monotonic() + 60
        while "hbbs listening" not in node.log.read_text(errors="replace"):
            assert node.running, node.log.read_text(errors="replace")
            assert time.monotonic() < deadline, node.log.read_text(errors="replace")
            time.sleep(0.1)
        wait_tcp(c.base, 5, "127.0.0.11")
        assert "Traceback" not in node.log.read_text(errors="replace")
    finally:
        c.stop()
