"""The same API through hbbs's secure TCP tunnel (HttpProxyRequest, docs/protocol.md §7.6),
as a client that reaches only port 21116 uses it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from pyhbb.wire import rendezvous_pb2 as pb
from tests.api.support import running_api
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.rdclient import Msg, TcpClient


async def tunnel(
    hbbs: RunningHbbs, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, bytes]:
    """One API call over a new secure TCP connection to hbbs, as the client's fallback."""
    c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
    await c.secure(hbbs.public_key)
    headers = [pb.HeaderEntry(name="Content-Type", value="application/json")]
    if token:
        headers.append(pb.HeaderEntry(name="Authorization", value=f"Bearer {token}"))
    content = b"" if body is None else json.dumps(body).encode()
    c.send(
        Msg(
            http_proxy_request=pb.HttpProxyRequest(
                method=method, path=path, headers=headers, body=content
            )
        )
    )
    resp = (await c.recv(timeout=10)).http_proxy_response
    c.close()
    assert not resp.error, resp.error
    return resp.status, bytes(resp.body)


async def test_client_calls_through_the_hbbs_tunnel(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, running_hbbs(tmp_path, api_server=api.url) as hbbs:
        await api.add_user("alice")
        status, body = await tunnel(
            hbbs,
            "POST",
            "/api/login",
            {"username": "alice", "password": "secret", "id": "tun1", "uuid": "AAAA"},
        )
        assert status == 200
        token = json.loads(body)["access_token"]
        status, body = await tunnel(hbbs, "POST", "/api/ab/personal", token=token)
        guid = json.loads(body)["guid"]
        status, body = await tunnel(
            hbbs, "POST", f"/api/ab/peer/add/{guid}", {"id": "123456789"}, token
        )
        assert (status, body) == (200, b"")  # the empty body survives the tunnel
        status, body = await tunnel(
            hbbs, "POST", f"/api/ab/peers?current=1&pageSize=100&ab={guid}", token=token
        )
        assert json.loads(body)["total"] == 1
        status, body = await tunnel(hbbs, "GET", "/api/nothing")
        assert (status, json.loads(body)) == (404, {"error": "not found"})
        status, body = await tunnel(hbbs, "POST", "/api/ab/personal", token="bad")
        assert status == 401
    # The API saw the client's address (hbbs on loopback is a trusted proxy).
    with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
        assert conn.execute("select ip from api_login_log").fetchall() == [("127.0.0.3",)]


async def test_forwarded_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    from pyhbb.net.forwarded import parse_networks

    async with running_api(tmp_path, trusted_proxies=parse_networks(["192.0.2.1"])) as api:
        await api.add_user("alice")
        c = api.client()
        resp = await c.request(
            "POST",
            "/api/login",
            {"username": "alice", "password": "secret", "id": "1", "uuid": ""},
            headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"},
        )
        assert resp.status_code == 200
    with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
        # Loopback is not trusted here, so the headers were ignored.
        assert conn.execute("select ip from api_login_log").fetchall() == [("127.0.0.1",)]
