"""`pyhbb run`: both services from one command, as the README's run command starts them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.ports import free_base_port
from tests.support.processes import start, stop, wait_tcp
from tests.support.rdclient import Msg, TcpClient, UdpPeer


async def _relay_pair(relay_port: int, key: str) -> bytes:
    """Two relay clients with the server's key pair up and exchange bytes."""
    first = await TcpClient.connect(("127.0.0.1", relay_port), "127.0.0.2")
    second = await TcpClient.connect(("127.0.0.1", relay_port), "127.0.0.3")
    for c in (first, second):
        c.send(Msg(request_relay=pb.RequestRelay(uuid="run-test", licence_key=key)))
    await asyncio.sleep(0.1)
    first.send_raw(b"hello through the relay")
    async with asyncio.timeout(5):
        return await second.reader.readexactly(23)


def _hbbs_child(pid: int) -> int:
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if b"pyhbb.rendezvous.cli" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise AssertionError("no hbbs child")


def _restarted_in_place(pid: int, timeout: float = 20.0) -> None:
    """Wait until ``pid`` runs the code a restart in place execs (same PID, new image)."""
    deadline = time.monotonic() + timeout
    while b"PYHBB_HANDOVER=" not in Path(f"/proc/{pid}/environ").read_bytes():
        assert time.monotonic() < deadline, "hbbs did not restart in place"
        time.sleep(0.05)


def test_run_starts_hbbs_and_hbbr_with_one_key(tmp_path: Path) -> None:
    port = free_base_port(offsets=(-2, -1, 0, 1, 2, 3))  # the API server on P-2 too
    proc = start("pyhbb", ["run", "--", "-p", str(port), "--metrics", "off"], tmp_path)
    try:
        for p in (port - 2, port - 1, port, port + 1, port + 2, port + 3):
            wait_tcp(p)
        key = (tmp_path / "id_ed25519.pub").read_text()

        async def register() -> bool:
            b = await UdpPeer.open(("127.0.0.1", port), "127.0.0.2")
            return await b.register_peer("123456789")

        assert asyncio.run(register()) is True
        assert asyncio.run(_relay_pair(port + 1, key)) == b"hello through the relay"

        async def register_pk() -> bool:
            b = await UdpPeer.open(("127.0.0.1", port), "127.0.0.2")
            assert await b.register_pk("123456789", b"uuid", b"k" * 32) == 0
            return await b.register_peer("123456789")

        assert asyncio.run(register_pk()) is False
        # SIGUSR2 to pyhbb run restarts hbbs in place; hbbr and the API are not touched
        hbbs_pid = _hbbs_child(proc.pid)
        os.kill(proc.pid, signal.SIGUSR2)
        _restarted_in_place(hbbs_pid)
        wait_tcp(port)
        assert asyncio.run(register()) is False  # still known: no key asked for
        assert asyncio.run(_relay_pair(port + 1, key)) == b"hello through the relay"
        assert proc.poll() is None
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "hbbs stopped" in out and "hbbr stopped" in out
    assert "restarted in place: 1 peers kept" in out
    assert out.count("hbbr listening") == 1  # hbbr ran on: it got no SIGUSR2
    assert out.count(key) >= 2  # both services announce the same key
