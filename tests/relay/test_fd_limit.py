"""hbbr and the open-files limit: raised from soft to hard at start, the room it leaves
said in the log, and a clear throttled warning when descriptors run out (real hbbr
process, real sockets, a deliberately small limit)."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyhbb.wire.framing import encode_frame
from tests.relay.clients import request_relay
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, stop, wait_tcp

pytestmark = pytest.mark.timeout(60)

SOFT, HARD = 40, 72


def small_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def test_limit_raised_at_start_and_running_out_is_said_throttled(tmp_path: Path) -> None:
    port = free_base_port((0, 2))
    proc = subprocess.Popen(
        [str(VENV_BIN / "hbbr"), "-p", str(port)],
        cwd=tmp_path,
        env={"RUST_LOG": "info", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=small_limit,
    )
    socks: list[socket.socket] = []
    try:
        wait_tcp(port)
        # more sessions than 72 descriptors hold (each: two sockets, two pipes)
        for i in range(20):
            for _side in ("a", "b"):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(encode_frame(request_relay(f"fd-{i}")))
                socks.append(s)
            time.sleep(0.05)
        time.sleep(1.5)  # the listener pauses 0.5 s after a failed accept, then retries
    finally:
        for s in socks:
            s.close()
        _, out = stop(proc)
    assert f"open-files limit ({HARD}) leaves room for about" in out, out  # soft raised
    warnings = [line for line in out.splitlines() if "out of file descriptors" in line]
    assert warnings, out
    assert f"open-files limit {HARD}" in warnings[0] and "LimitNOFILE=" in warnings[0]
    # throttled: the 1st, 2nd, 4th, 8th ... occurrence, not one line per failure
    counts = [int(line.rsplit("(", 1)[1].split()[0]) for line in warnings]
    assert counts == [2**k for k in range(len(counts))], warnings


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="Linux descriptors and pipes")
