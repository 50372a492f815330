"""The start after a restart in place, in-process: inherited sockets are adopted only when
they are what hbbs would bind, and a damaged or stale peer snapshot falls back to the
warm start from the database (the peer still comes back), with one log line saying why.
Real loopback sockets, a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pyhbb.config.hbbs import HbbsOptions
from pyhbb.config.sources import ConfigError
from pyhbb.rendezvous.adapters.restart import Inherited, RestartInPlace
from pyhbb.rendezvous.app import HbbsServer, serve
from pyhbb.rendezvous.handover import SOCKET_ROLES, encode_snapshot
from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.hbbs_server import running_hbbs
from tests.support.ports import free_base_port
from tests.support.rdclient import UdpPeer

pytestmark = pytest.mark.timeout(60)

PEER = "123456789"


def listeners(port: int) -> dict[str, socket.socket]:
    """What the previous process would have left: UDP and TCP P, TCP P-1 and P+2."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    made = {"udp": udp}
    for role, p in (("tcp", port), ("nat", port - 1), ("ws", port + 2)):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", p))
        tcp.listen(16)
        made[role] = tcp
    return made


@contextlib.asynccontextmanager
async def restarted_hbbs(
    workdir: Path, inherited: Inherited, port: int
) -> AsyncIterator[HbbsServer]:
    """hbbs on ``port`` started as the exec of a restart in place would start it."""
    opts = HbbsOptions(port=port, workdir=workdir, test_hbbs="no", bind="127.0.0.1")
    stop = asyncio.Event()
    started: asyncio.Future[HbbsServer] = asyncio.get_running_loop().create_future()
    restart = RestartInPlace(lambda: None, inherited)
    task = asyncio.ensure_future(serve(opts, stop, started.set_result, restart))
    done, _ = await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield started.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def registered_peer(workdir: Path) -> UdpPeer:
    peer = await UdpPeer.open(("127.0.0.1", 9), "127.0.0.2")
    async with running_hbbs(workdir) as hbbs:
        peer.server = hbbs.udp
        assert await peer.register_pk(PEER, b"uuid", b"k" * 32) == pb.RegisterPkResponse.OK
    return peer


def inherit(made: dict[str, socket.socket]) -> Inherited:
    """The descriptors handed over, as the new process finds them (owned by nobody)."""
    return Inherited({role: sock.detach() for role, sock in made.items()}, time.time())


@pytest.mark.parametrize(
    ("snapshot", "reason"),
    [
        (b"PYHBBHO\x00 damaged", "unusable (too short"),
        (encode_snapshot(["x"], [b"\0" * 9], 0.0, time.time() - 120, True), "unusable (stale"),
        (None, "unreadable (No such file"),
        ("fifo", "unreadable (not a regular file"),
    ],
)
async def test_a_bad_snapshot_falls_back_to_the_warm_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, snapshot: bytes | str | None, reason: str
) -> None:
    peer = await registered_peer(tmp_path)
    path = tmp_path / "db_v2.sqlite3.handover"
    if snapshot == "fifo":
        os.mkfifo(path)  # nobody writes to it: opening it must not wait
    elif snapshot is not None:
        path.write_bytes(snapshot)
    port = free_base_port()
    made = listeners(port)
    udp_fd = made["udp"].fileno()
    caplog.set_level(logging.INFO, "pyhbb.rendezvous")
    try:
        async with restarted_hbbs(tmp_path, inherit(made), port) as server:
            assert server.sockets["udp"].fileno() == udp_fd  # adopted, not bound anew
            peer.server = ("127.0.0.1", port)
            # back through the database: answered without asking for the key
            assert await peer.register_peer(PEER) is False
            log = caplog.text
            assert f"peer snapshot {path} {reason}" in log
            assert "peers come back through the database (warm start)" in log
            assert "restarted in place: 0 peers kept" in log
            assert not path.exists()  # used once
    finally:
        peer.close()


async def test_inherited_sockets_that_do_not_fit_are_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_base_port()
    other = free_base_port()
    wrong = listeners(other)  # bound to other ports than hbbs is configured for
    swapped = {"udp": wrong["tcp"], "tcp": wrong["udp"], "nat": wrong["nat"], "ws": wrong["ws"]}
    inherited = inherit(swapped)
    with open(tmp_path / "not-a-socket", "wb") as f:
        inherited.fds["ws"] = f.fileno()  # no socket: warned about, never closed
        caplog.set_level(logging.INFO, "pyhbb.rendezvous")
        async with restarted_hbbs(tmp_path, inherited, port) as server:
            log = caplog.text
            assert f"inherited UDP descriptor {inherited.fds['udp']}: a SOCK_STREAM socket" in log
            assert f"inherited TCP descriptor {inherited.fds['tcp']}: a SOCK_DGRAM" in log
            assert f"bound to 127.0.0.1:{other - 1}, not port {port - 1}" in log
            assert "Socket operation on non-socket" in log and "binding anew" in log
            assert server.sockets["udp"].getsockname() == ("127.0.0.1", port)
            peer = await UdpPeer.open(("127.0.0.1", port), "127.0.0.3")
            assert await peer.register_peer(PEER) is True  # served on the right port
            peer.close()
        f.write(b"still open")  # the file descriptor was left alone
        f.flush()


def test_sigusr2_is_refused_while_starting_in_cluster_mode_twice_and_on_bad_config(
    caplog: pytest.LogCaptureFixture,
) -> None:
    begun: list[bool] = []
    problems: list[Exception] = []

    def check_config() -> None:
        if problems:
            raise problems[0]

    restart = RestartInPlace(check_config, None)
    caplog.set_level(logging.INFO, "pyhbb.rendezvous")
    restart.on_signal()
    assert "still starting" in caplog.text and not begun

    with unbound_sockets() as sockets:
        restart.attach(lambda: begun.append(True), sockets, cluster=True)
        restart.on_signal()
        assert "not supported in cluster mode" in caplog.text and not begun

        restart.attach(lambda: begun.append(True), sockets, cluster=False)
        refused_to_begin(restart, begun, problems, caplog)
    for fd in restart.kept.values():
        os.close(fd)


def refused_to_begin(
    restart: RestartInPlace,
    begun: list[bool],
    problems: list[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    problems.append(ConfigError("PORT=x is not a port"))
    restart.on_signal()
    assert "refused: PORT=x is not a port; still running with the old configuration" in (
        caplog.text
    )
    assert not begun and not restart.accepted

    problems.clear()
    restart.on_signal()
    assert begun == [True] and restart.accepted
    assert set(restart.kept) == set(SOCKET_ROLES)
    assert all(os.get_inheritable(fd) for fd in restart.kept.values())
    restart.on_signal()  # a second signal during the hand-over
    assert "already under way" in caplog.text and begun == [True]


@contextlib.contextmanager
def unbound_sockets() -> Iterator[dict[str, socket.socket]]:
    sockets = {
        role: socket.socket(type=socket.SOCK_DGRAM if role == "udp" else socket.SOCK_STREAM)
        for role in SOCKET_ROLES
    }
    try:
        yield sockets
    finally:
        for sock in sockets.values():
            sock.close()


def test_sigusr2_is_refused_while_running_when_the_sockets_cannot_be_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    begun: list[bool] = []
    restart = RestartInPlace(lambda: None, None)
    caplog.set_level(logging.INFO, "pyhbb.rendezvous")
    with unbound_sockets() as sockets:
        sockets["ws"].close()  # its descriptor is gone: dup fails as when out of them
        before = set(os.listdir("/proc/self/fd"))
        restart.attach(lambda: begun.append(True), sockets, cluster=False)
        restart.on_signal()
        assert "cannot keep the listening sockets" in caplog.text
        assert "still running" in caplog.text
        assert not begun and not restart.accepted and restart.kept == {}
        assert set(os.listdir("/proc/self/fd")) == before  # the duplicates made were closed
