"""The commands an admin types: `pyhbb user/ab/group` and `pyhbb run` with the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, start, stop, wait_tcp
from tests.support.rdclient import Msg, TcpClient


def pyhbb(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "pyhbb"), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_account_commands(tmp_path: Path) -> None:
    done = pyhbb(tmp_path, "user", "add", "alice", "--admin", stdin="first pw\n")
    assert done.returncode == 0 and "created admin user alice" in done.stdout, done.stderr
    assert pyhbb(tmp_path, "user", "add", "bob", stdin="x\n").returncode == 0
    again = pyhbb(tmp_path, "user", "add", "ALICE", stdin="x\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    empty = pyhbb(tmp_path, "user", "add", "carol", stdin="\n")
    assert empty.returncode == 1 and "empty" in empty.stderr
    assert pyhbb(tmp_path, "user", "passwd", "alice", stdin="second pw\n").returncode == 0
    assert pyhbb(tmp_path, "user", "disable", "bob").returncode == 0
    assert pyhbb(tmp_path, "user", "list").stdout.splitlines() == [
        "alice\tadmin",
        "bob\tuser,disabled",
    ]
    missing = pyhbb(tmp_path, "user", "passwd", "nobody", stdin="x\n")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr

    assert pyhbb(tmp_path, "ab", "create", "Team", "--owner", "alice").returncode == 0
    assert pyhbb(tmp_path, "ab", "share", "Team", "--everyone", "--rule", "read").returncode == 0
    assert pyhbb(tmp_path, "ab", "share", "Team", "--user", "bob", "--rule", "rw").returncode == 0
    (line,) = pyhbb(tmp_path, "ab", "list").stdout.splitlines()
    assert line.startswith("Team\t") and "owner=alice" in line and "*=1, bob=2" in line
    bad = pyhbb(tmp_path, "ab", "share", "Nope", "--everyone", "--rule", "read")
    assert bad.returncode == 1 and "no shared address book" in bad.stderr

    assert pyhbb(tmp_path, "group", "add", "Lab").returncode == 0
    assert pyhbb(tmp_path, "group", "add", "lab").returncode == 1  # names ignore case
    assert pyhbb(tmp_path, "group", "list").stdout.splitlines() == ["Lab\tdevices=0"]
    unknown = pyhbb(tmp_path, "group", "assign", "Lab", "123456789")
    assert unknown.returncode == 1 and "no device" in unknown.stderr
    # The database is the one hbbs uses, in the working directory.
    assert (tmp_path / "db_v2.sqlite3").exists()


def test_api_option_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["--port", "x"], ["--hbbs", "host:port"], ["--max-body", "1"]):
        done = subprocess.run(
            [sys.executable, "-m", "pyhbb.api.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and done.stderr.startswith("pyhbb api: "), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_run_brings_up_the_api_on_p_minus_2(tmp_path: Path) -> None:
    port = free_base_port(offsets=(-2, -1, 0, 1, 2, 3))
    assert pyhbb(tmp_path, "user", "add", "admin", "--admin", stdin="s3cret\n").returncode == 0
    proc = start("pyhbb", ["run", "--", "-p", str(port), "--metrics", "off"], tmp_path)
    try:
        for p in (port - 2, port - 1, port, port + 1):
            wait_tcp(p)
        answer = httpx.post(
            f"http://127.0.0.1:{port - 2}/api/login",
            json={"username": "admin", "password": "s3cret", "id": "1", "uuid": ""},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["user"]["is_admin"] is True
        key = (tmp_path / "id_ed25519.pub").read_text()

        async def through_hbbs() -> tuple[int, bytes]:
            # hbbs on P tunnels to the API on P-2 (derived, not the default 21114).
            c = await TcpClient.connect(("127.0.0.1", port), "127.0.0.3")
            await c.secure(key)
            c.send(
                Msg(
                    http_proxy_request=pb.HttpProxyRequest(
                        method="GET", path="/api/login-options", headers=[], body=b""
                    )
                )
            )
            resp = (await c.recv(timeout=10)).http_proxy_response
            return resp.status, bytes(resp.body)

        status, body = asyncio.run(through_hbbs())
        assert (status, json.loads(body)) == (200, [])
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "hbbs stopped" in out and "hbbr stopped" in out and "API server stopped" in out
