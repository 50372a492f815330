"""bench/hbbs_spread_gen.c and its Python side (bench/hbbs_spread_c.py): the C load
generator sends each peer's own messages from the peer's own address and follows the
client rules, against a real UDP server on loopback; the seeded database holds the rows a
registration would have written."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # bench/ is a folder of scripts, not a package

import hbbs_spread_c as gen  # noqa: E402
from hbbs_spread import (  # noqa: E402
    HB_OK,
    HB_REQUEST_PK,
    PK_OK,
    SpreadLayout,
    register_peer,
    register_pk,
    register_pk_key,
)

from pyhbb.rendezvous.stored_peer import StoredPeer  # noqa: E402
from pyhbb.store.database import SqliteDatabase  # noqa: E402
from pyhbb.store.peers import SqlitePeerStore  # noqa: E402

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.mark.parametrize("peers,per_addr", [(1, 1), (600, 1), (600, 25), (1000, 250)])
def test_templates_splice_every_peers_own_messages(peers: int, per_addr: int) -> None:
    layout = SpreadLayout(peers, per_addr)
    hb, pk = gen.templates(layout)
    for k in {0, 1, peers // 2, peers - 1}:
        assert hb.splice(layout, k, register_pk_key(k)) == register_peer(layout, k)
        assert pk.splice(layout, k, register_pk_key(k)) == register_pk(layout, k)


def test_templates_refuse_ids_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        gen.templates(SpreadLayout(20, 1, first_id=99_999_990))


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    return gen.build_generator(tmp_path_factory.mktemp("gen"))


class FakeServer:
    """A UDP socket on 127.0.0.1 answering as hbbs does to peers it does not know yet:
    the first heartbeat of each peer gets request_pk, RegisterPk gets OK, then OK."""

    def __init__(self, layout: SpreadLayout) -> None:
        self.layout = layout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.port_of: dict[int, tuple[str, int]] = {}
        self.registered: set[int] = set()
        self.mismatches: list[str] = []
        self.heartbeats = self.register_pks = 0

    def serve(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        by_id = {self.layout.peer_id(k): k for k in range(self.layout.peers)}
        while time.monotonic() < end:
            try:
                data, src = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            k = next((by_id[i] for i in by_id if i.encode() in data), -1)
            if k < 0:
                self.mismatches.append(f"unknown message {data.hex()}")
                continue
            if src[0] != self.layout.addr_ip(k // self.layout.per_addr):
                self.mismatches.append(f"peer {k} from {src}")
            if self.port_of.setdefault(k, src) != src:
                self.mismatches.append(f"peer {k} moved from {self.port_of[k]} to {src}")
            if data == register_pk(self.layout, k):
                self.register_pks += 1
                self.registered.add(k)
                self.sock.sendto(PK_OK, src)
            elif data == register_peer(self.layout, k):
                self.heartbeats += 1
                self.sock.sendto(HB_OK if k in self.registered else HB_REQUEST_PK, src)
            else:
                self.mismatches.append(f"peer {k} sent {data.hex()}")


@needs_gcc
@pytest.mark.parametrize("per_addr", [1, 5])
def test_generator_plays_the_client_rules_over_loopback(exe: Path, per_addr: int) -> None:
    layout = SpreadLayout(40, per_addr)
    server = FakeServer(layout)
    pool = gen.CSpreadPool(layout, ("127.0.0.1", server.port), True, exe, period=1.0)
    try:
        assert pool.sizes == [40]
        pool.send("run", time.monotonic())
        assert pool.gather() == ["running"]
        server.serve(2.5)  # two periods and a half: request_pk, RegisterPk, then accepted
        stats = pool.call("stats", True)[0]
    finally:
        pool.close()
        server.sock.close()
    assert server.mismatches == []
    assert server.register_pks == 40  # each peer re-registered once, on request_pk
    # peers behind one IP differ by port; each peer keeps its own
    ports = {src for src in server.port_of.values()}
    assert len(ports) == 40
    assert len({p for _, p in ports}) == per_addr
    assert stats["online"] == 40
    assert stats["counts"]["hb_request_pk"] == 40
    assert stats["counts"]["pk_ok"] == 40
    times = [t for t in memoryview(stats["online_at"]).cast("d") if t]
    assert len(times) == 40


@needs_gcc
def test_unanswered_requests_are_resent_after_retry(exe: Path) -> None:
    layout = SpreadLayout(3, 1)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.05)
    pool = gen.CSpreadPool(layout, ("127.0.0.1", sink.getsockname()[1]), True, exe, period=1.0)
    try:
        pool.call("run", time.monotonic())
        got = 0
        end = time.monotonic() + 4.5  # the first round within 1 s, each resent 3 s later
        while time.monotonic() < end:
            try:
                sink.recvfrom(512)
                got += 1
            except TimeoutError:
                pass
        stats = pool.call("stop")[0]
    finally:
        pool.close()
        sink.close()
    assert stats["online"] == 0
    assert stats["counts"]["retries"] == 3  # no heartbeat while one is unanswered
    assert got == 6


def test_seeded_database_reads_back_as_registered_peers(tmp_path: Path) -> None:
    layout = SpreadLayout(600, 25)
    path = tmp_path / "db_v2.sqlite3"
    gen.seed_database(path, layout, chunk=256)

    async def read() -> dict[str, StoredPeer]:
        async with await SqliteDatabase.open(str(path)) as db:
            return await SqlitePeerStore(db).get_many([layout.peer_id(k) for k in range(600)])

    rows = asyncio.run(read())
    assert len(rows) == 600
    for k in (0, 24, 25, 599):
        row = rows[layout.peer_id(k)]
        assert row.pk == register_pk_key(k)
        assert row.ip == layout.addr_ip(k // 25)
        assert row.uuid == f"spread-{k:09d}-0000-4000-8000-00000000".encode()
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(distinct guid) from peer").fetchone() == (600,)
