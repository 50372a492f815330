"""pyhbb cluster import / export: a single server's database into the directory and back
(issue 10 item 6), through the real command, on a real NATS cluster."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.cluster.harness import Cluster
from tests.cluster.peers import connected_peer
from tests.cluster.test_flows import directory_entry
from tests.store.official import OFFICIAL_SCHEMA
from tests.support.rdclient import pb

ROWS = [
    (bytes([i]) * 16, f"imported{i:02d}", f"uuid{i}".encode(), bytes([i]) * 32, '{"ip":"1.2.3.4"}')
    for i in range(1, 21)
]


def pyhbb(*args: str, cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyhbb.cli", "cluster", *args, "--cluster", ",".join(cluster.urls)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )


async def test_import_then_serve_then_export(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "db_v2.sqlite3"
    conn = sqlite3.connect(source)
    conn.executescript(OFFICIAL_SCHEMA)
    conn.executemany(
        "insert into peer (guid, id, uuid, pk, info, note, status) values (?, ?, ?, ?, ?, 'n', 1)",
        ROWS,
    )
    conn.commit()
    conn.close()

    done = pyhbb("import", str(source), cluster=cluster)
    assert done.returncode == 0, done.stderr
    assert "20 peers imported, 0 already" in done.stdout
    again = pyhbb("import", str(source), cluster=cluster)
    assert "0 peers imported, 20 already" in again.stdout
    assert await directory_entry(cluster, "imported05") == ("", b"uuid5")  # held by none

    # an imported peer registers with its own uuid and key on any node: claimed, not new
    peer = await connected_peer(cluster.node_addr(2), "127.0.0.99")
    assert (
        await peer.register_pk("imported05", b"uuid5", bytes([5]) * 32) == pb.RegisterPkResponse.OK
    )
    assert (
        await peer.register_pk("imported06", b"other", bytes(32))
        == pb.RegisterPkResponse.UUID_MISMATCH
    )
    peer.close()
    assert await directory_entry(cluster, "imported05") == ("n3", b"uuid5")

    target = tmp_path / "back" / "db_v2.sqlite3"
    target.parent.mkdir()
    out = pyhbb("export", str(target), cluster=cluster)
    assert out.returncode == 0, out.stderr
    conn = sqlite3.connect(target)
    rows = {
        r[1]: r for r in conn.execute("select guid, id, uuid, pk, info, note, status from peer")
    }
    conn.close()
    for guid, peer_id, uuid, pk, info in ROWS:
        if peer_id == "imported05":  # registered from its new address meanwhile
            info = '{"ip":"127.0.0.99"}'
        assert rows[peer_id] == (guid, peer_id, uuid, pk, info, "n", 1)


def test_without_servers_the_command_says_what_to_do(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pyhbb.cli", "cluster", "export", str(tmp_path / "x.sqlite3")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "CLUSTER"},
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "--cluster or CLUSTER" in out.stderr


def test_nats_config_for_one_host() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyhbb.cli",
            "cluster",
            "nats-config",
            "n1",
            "10.0.0.1",
            "--routes",
            "10.0.0.2,10.0.0.3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "server_name: n1" in out.stdout and "nats-route://10.0.0.3:6222" in out.stdout
    assert "jetstream" in out.stdout and 'ping_interval: "2s"' in out.stdout
