"""Restart in place (SIGUSR2) with the real ``hbbs`` command: same PID, same sockets, the
peer table kept; over real loopback sockets and a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, wait_tcp
from tests.support.rdclient import Msg, TcpClient, UdpPeer

pytestmark = pytest.mark.timeout(120)

PEER = "123456789"


class Hbbs:
    """``hbbs`` as a child process whose log goes to a file we can read while it runs."""

    def __init__(self, workdir: Path, command: str, args: list[str]) -> None:
        self.log_path = workdir / "hbbs.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = {**os.environ, "TEST_HBBS": "no"}
        self.proc = subprocess.Popen(
            [str(VENV_BIN / command), *args],
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log()}"
            time.sleep(0.02)

    def socket_inodes(self) -> set[str]:
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        links = set()
        for fd in fd_dir.iterdir():
            try:
                links.add(os.readlink(fd))
            except OSError:
                continue  # closed meanwhile
        return {link for link in links if link.startswith("socket:")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


@pytest.fixture
def hbbs(tmp_path: Path) -> Iterator[tuple[Hbbs, int]]:
    port = free_base_port()
    server = Hbbs(tmp_path, "hbbs", ["-p", str(port)])
    try:
        wait_tcp(port)
        server.wait_log("hbbs listening")
        yield server, port
    finally:
        server.stop()


async def online(port: int, peer_id: str) -> bool:
    """What another client's online query (TCP P-1) says of ``peer_id``."""
    q = await TcpClient.connect(("127.0.0.1", port - 1), "127.0.0.9")
    try:
        q.send(Msg(online_request=pb.OnlineRequest(id="x", peers=[peer_id])))
        return (await q.recv()).online_response.states == b"\x80"
    finally:
        q.close()


def test_sigusr2_keeps_pid_sockets_and_peers(hbbs: tuple[Hbbs, int], tmp_path: Path) -> None:
    server, port = hbbs
    pid = server.proc.pid
    sockets_before = server.socket_inodes()
    command = Path(f"/proc/{pid}/cmdline").read_bytes()

    async def scenario() -> None:
        peer = await UdpPeer.open(("127.0.0.1", port), "127.0.0.2")
        try:
            assert await peer.register_pk(PEER, b"uuid", b"k" * 32) == pb.RegisterPkResponse.OK
            assert await peer.register_peer(PEER) is False
            assert await online(port, PEER)

            os.kill(pid, signal.SIGUSR2)
            server.wait_log("hand-over: 1 peers written")
            # the old process reads no more, the new one not yet: the kernel keeps it
            peer.send(Msg(register_peer=pb.RegisterPeer(id=PEER, serial=3)))
            server.wait_log("restarted in place: 1 peers kept")
            answer = await peer.recv_kind("register_peer_response", timeout=10)
            assert answer.register_peer_response.request_pk is False
            assert await peer.register_peer(PEER) is False  # the next heartbeat too
            assert await online(port, PEER)  # another client sees it online
        finally:
            peer.close()

    asyncio.run(scenario())
    assert server.proc.poll() is None and server.proc.pid == pid
    # the same command line and name (for pidof and supervisors): the console script
    assert Path(f"/proc/{pid}/comm").read_text() == "hbbs\n"
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == command
    kept = sockets_before & server.socket_inodes()
    assert len(kept) >= 4, (sockets_before, server.socket_inodes())  # UDP P, TCP P, P-1, P+2
    for p in (port - 1, port, port + 2):
        wait_tcp(p, timeout=5)
    assert not (tmp_path / "db_v2.sqlite3.handover").exists()  # read once, then deleted
    log = server.log()
    assert "peer snapshot" not in log  # no fallback
    assert server.stop() == 0


def test_bad_config_at_sigusr2_keeps_the_old_one_running(
    hbbs: tuple[Hbbs, int], tmp_path: Path
) -> None:
    server, port = hbbs
    (tmp_path / ".env").write_text("MAX_PEERS_IN_MEMORY=lots\n")
    os.kill(server.proc.pid, signal.SIGUSR2)
    server.wait_log("restart in place refused")
    assert "still running with the old configuration" in server.log()

    async def still_serving() -> bool:
        peer = await UdpPeer.open(("127.0.0.1", port), "127.0.0.3")
        try:
            return await peer.register_peer(PEER)
        finally:
            peer.close()

    assert asyncio.run(still_serving()) is True  # answered: unknown id, send your key
    assert "restarted in place" not in server.log()
    # fixed: the next SIGUSR2 goes ahead
    (tmp_path / ".env").unlink()
    os.kill(server.proc.pid, signal.SIGUSR2)
    server.wait_log("restarted in place: 0 peers kept")
    # and a second one, on the restarted process, works as well
    os.kill(server.proc.pid, signal.SIGUSR2)
    server.wait_log("restarted in place:", count=2)
    assert asyncio.run(still_serving()) is True
