"""The real hbbs command: CLI, configuration files, signals, durability, official database."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path

from pyhbb.wire import rendezvous_pb2 as pb
from tests.store.official import OFFICIAL_SCHEMA
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, start, stop, wait_tcp
from tests.support.rdclient import Msg, TcpClient, UdpPeer


def test_help_explains_every_option() -> None:
    out = subprocess.run([VENV_BIN / "hbbs", "--help"], capture_output=True, text=True, check=True)
    for word in (
        "--port",
        "--key",
        "--relay-servers",
        "--bind",
        "--rmem",
        "--serial",
        "--rendezvous-servers",
        "--software-url",
        "--mask",
        "--config",
        "LOCAL_IP",
        "ALWAYS_USE_RELAY",
        "DB_URL",
        "MAX_DATABASE_CONNECTIONS",
        "TEST_HBBS",
        "RUST_LOG",
        "TRUSTED_PROXIES",
    ):
        assert word in out.stdout, word


def test_bad_configuration_exits_2_with_a_clear_line(tmp_path: Path) -> None:
    r = subprocess.run([VENV_BIN / "hbbs", "-p", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "PORT=2 is out of range" in r.stderr
    (tmp_path / "id_ed25519").write_text("garbage")
    r = subprocess.run(
        [VENV_BIN / "hbbs", "-p", "30000"], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2 and "id_ed25519" in r.stderr


async def _register_many(port: int, count: int, local: str) -> list[str]:
    peer = await UdpPeer.open(("127.0.0.1", port), local)
    acked = []
    for i in range(count):
        peer_id = f"durable{i:04d}"
        if await peer.register_pk(peer_id, b"uuid-" + peer_id.encode(), b"\x01" * 32) == 0:
            acked.append(peer_id)
    peer.close()
    return acked


def _ids_in(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("select id from peer")}


def test_acknowledged_registrations_survive_kill_9(tmp_path: Path) -> None:
    port = free_base_port()
    proc = start("hbbs", ["-p", str(port)], tmp_path, {"REGISTER_BURST_PER_IP": "1000"})
    try:
        wait_tcp(port)
        acked = asyncio.run(_register_many(port, 40, "127.0.0.2"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    assert len(acked) == 40
    assert set(acked) <= _ids_in(tmp_path / "db_v2.sqlite3")


def test_sigterm_stops_cleanly_and_keeps_peers(tmp_path: Path) -> None:
    port = free_base_port()
    env = {"PORT": str(port), "RUST_LOG": "info"}
    proc = start("hbbs", [], tmp_path, env)
    try:
        wait_tcp(port)
        acked = asyncio.run(_register_many(port, 5, "127.0.0.3"))
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "hbbs stopped" in out
    assert f"UDP+TCP {port}" in out and "public key: " in out  # the startup line
    assert set(acked) == _ids_in(tmp_path / "db_v2.sqlite3")
    pub = (tmp_path / "id_ed25519.pub").read_text()
    assert pub in out


def test_env_file_and_config_file_precedence(tmp_path: Path) -> None:
    env_port, cfg_port = free_base_port(), free_base_port()
    (tmp_path / ".env").write_text(f"port={env_port}\nrelay_servers=from-env\n")
    (tmp_path / "extra.ini").write_text(f"PORT = {cfg_port}\n")
    proc = start("hbbs", ["-c", "extra.ini"], tmp_path, {"PORT": "1"})
    try:
        wait_tcp(cfg_port)  # --config beats .env, which beats the environment
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "relay servers: from-env" in out


async def _punch_known(port: int, peer_id: str, key: str) -> int:
    a = await TcpClient.connect(("127.0.0.1", port), "127.0.0.3")
    a.send(Msg(punch_hole_request=pb.PunchHoleRequest(id=peer_id, licence_key=key)))
    return (await a.recv_nonkeyexchange()).punch_hole_response.failure


def test_opens_a_database_written_by_the_official_server(tmp_path: Path) -> None:
    db = tmp_path / "db_v2.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("pragma journal_mode=wal")
        conn.executescript(OFFICIAL_SCHEMA)
        conn.execute(
            "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
            (b"\x01" * 16, "424242424", b"machine-1", b"\x07" * 32, '{"ip":"::ffff:127.0.0.2"}'),
        )
    port = free_base_port()
    proc = start("hbbs", ["-p", str(port), "-k", ""], tmp_path)
    try:
        wait_tcp(port)
        assert asyncio.run(_punch_known(port, "424242424", "")) == pb.PunchHoleResponse.OFFLINE
        assert asyncio.run(_punch_known(port, "000000000", "")) == pb.PunchHoleResponse.ID_NOT_EXIST

        async def same_machine_returns() -> int:
            b = await UdpPeer.open(("127.0.0.1", port), "127.0.0.2")
            return await b.register_pk("424242424", b"machine-1", b"\x07" * 32)

        assert asyncio.run(same_machine_returns()) == pb.RegisterPkResponse.OK
    finally:
        code, out = stop(proc)
    assert code == 0, out
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select guid, id, info from peer").fetchall()
    assert rows == [(b"\x01" * 16, "424242424", '{"ip":"::ffff:127.0.0.2"}')]  # nothing changed
