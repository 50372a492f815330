"""The ``hbbr`` command as an admin runs it: a subprocess with uvloop, env, keys, signals."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.relay.clients import closed_by_server, read_exactly, tcp_relay_client
from tests.relay.test_relay_tcp import pump_both_ways
from tests.support.ports import free_base_port

pytestmark = pytest.mark.timeout(180)

HBBR = str(Path(sys.executable).with_name("hbbr"))
RunHbbr = Callable[[list[str], dict[str, str], int], "subprocess.Popen[bytes]"]


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "hbbr exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("hbbr did not start listening")


@pytest.fixture
def run_hbbr(tmp_path: Path) -> Iterator[RunHbbr]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], env: dict[str, str], ws_port: int) -> subprocess.Popen[bytes]:
        full_env = {**os.environ, "RUST_LOG": "info", **env}
        proc = subprocess.Popen(
            [HBBR, *args],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        wait_listening(ws_port, proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=20)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


async def test_subprocess_relays_64_mib_each_way_and_stops_on_sigterm(
    run_hbbr: RunHbbr, tmp_path: Path
) -> None:
    port = free_base_port((0, 2))
    env = {"PORT": str(port - 1), "SINGLE_BANDWIDTH": "100000", "TOTAL_BANDWIDTH": "100000"}
    proc = await asyncio.to_thread(run_hbbr, [], env, port + 2)
    r1, w1 = await tcp_relay_client(port, "cli-64", "127.0.0.2", extra=b"early")
    r2, w2 = await tcp_relay_client(port, "cli-64", "127.0.0.3")
    assert await read_exactly(r2, 5) == b"early"
    await pump_both_ways(r1, w1, r2, w2, 64 << 20)
    w1.close()
    assert await closed_by_server(r2)
    w2.close()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert f"TCP port {port} and WebSocket port {port + 2}" in err
    assert "no key" in err


async def test_key_dash_loads_or_generates_the_key_file(run_hbbr: RunHbbr, tmp_path: Path) -> None:
    port = free_base_port((0, 2))
    proc = await asyncio.to_thread(
        run_hbbr,
        ["-p", str(port), "-k", "-"],
        {},
        port + 2,
    )
    public = (tmp_path / "id_ed25519.pub").read_text()
    assert len(base64.b64decode(public)) == 32
    bad_r, bad_w = await tcp_relay_client(port, "cli-k", "127.0.0.2", licence_key="wrong")
    assert await closed_by_server(bad_r)
    _r1, w1 = await tcp_relay_client(port, "cli-k", "127.0.0.2", licence_key=public)
    r2, w2 = await tcp_relay_client(port, "cli-k", "127.0.0.3", licence_key=public)
    w1.write(b"keyed")
    await w1.drain()
    assert await read_exactly(r2, 5) == b"keyed"
    for w in (bad_w, w1, w2):
        w.close()
    proc.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    assert proc.stderr is not None
    assert f"key {public}" in proc.stderr.read().decode()


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    port = free_base_port((0, 2))
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    holder.bind(("::", port))
    holder.listen()
    try:
        proc = subprocess.run(
            [HBBR, "-p", str(port)], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    finally:
        holder.close()
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hbbr: cannot listen on TCP") and str(port) in last


async def test_config_file_applies_with_the_port_plus_one_rule(
    run_hbbr: RunHbbr, tmp_path: Path
) -> None:
    # PORT in a -c file names hbbs' port, as in the environment: hbbr listens on PORT+1.
    port = free_base_port((0, 2))
    (tmp_path / "relay.conf").write_text(
        f"# shared with hbbs\nPORT={port - 1}\nsingle-bandwidth=100000\nTOTAL_BANDWIDTH=100000\n"
    )
    proc = await asyncio.to_thread(run_hbbr, ["-c", "relay.conf"], {"PORT": "1"}, port + 2)
    r1, w1 = await tcp_relay_client(port, "cli-conf", "127.0.0.2", extra=b"early")
    r2, w2 = await tcp_relay_client(port, "cli-conf", "127.0.0.3")
    assert await read_exactly(r2, 5) == b"early"
    await pump_both_ways(r1, w1, r2, w2, 1 << 20)
    w1.close()
    w2.close()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    assert proc.stderr is not None
    assert f"TCP port {port} and WebSocket port {port + 2}" in proc.stderr.read().decode()


def test_bad_value_exits_2_with_one_line_instead_of_falling_back(tmp_path: Path) -> None:
    # The official hbbr would keep 1024 Mb/s here; pyhbb refuses to start (deliberate).
    (tmp_path / ".env").write_text("KEY=\nTOTAL_BANDWIDTH=abc\n")
    proc = subprocess.run(
        [HBBR, "-p", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "hbbr: TOTAL_BANDWIDTH=abc is not a number: expected a number above 0 "
        f"(from {tmp_path / '.env'} line 2)"
    ]
