"""`pyhbb run` as one node of a cluster (issue 10 item 2): CLUSTER and NODE_NAME from the
environment, hbbs + hbbr + the API server started together, joining the running cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.cluster.harness import Cluster
from tests.cluster.peers import connected_peer
from tests.support.processes import wait_tcp
from tests.support.rdclient import Msg, TcpClient, pb

N4 = "127.0.0.14"


async def test_pyhbb_run_joins_the_cluster_as_a_fourth_node(cluster: Cluster) -> None:
    workdir = cluster.root / "n4"
    workdir.mkdir()
    for name in ("id_ed25519", "id_ed25519.pub"):
        shutil.copy(cluster.root / "keys" / name, workdir / name)
    env = {
        **os.environ,
        "TEST_HBBS": "no",
        "CLUSTER": ",".join(cluster.urls),
        "NODE_NAME": "n4",
        "RUST_LOG": "info",
    }
    base = cluster.base
    args = ["run", "--", "-b", N4, "-p", str(base), "-r", f"{N4}:{base + 1}"]
    log = (workdir / "run.log").open("wb")
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "pyhbb"), *args],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        for port in (base - 2, base - 1, base, base + 1):
            wait_tcp(port, 30, N4)
        b = await connected_peer((N4, base), "127.0.0.68")
        assert await b.register_pk("runnode001", b"u-run", os.urandom(32)) == 0
        a = await TcpClient.connect(cluster.node_addr(0), "127.0.0.69")
        a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="runnode001", licence_key=cluster.public_key
                )
            )
        )
        assert (await b.recv_kind("punch_hole", timeout=5)).punch_hole  # n1 → n4 → B
        a.close()
        b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    out = (workdir / "run.log").read_text(errors="replace")
    assert "cluster mode: node n4" in out and "hbbr stopped" in out and "hbbs stopped" in out
