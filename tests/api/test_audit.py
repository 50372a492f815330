"""Audit ingestion (docs/api.md #27-#29): append-only, nonce de-duplication, conn_id join."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

from pyhbb.api import audit, jobs
from tests.api.support import RunningApi, running_api
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import UdpPeer


async def test_audit_events_deduplicated_and_joined(tmp_path: Path) -> None:
    async with (
        running_hbbs(tmp_path) as hbbs,
        running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api,
    ):
        device = api.client("controlled1")
        udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await udp.register("controlled1", uuid=device.uuid)
        udp.close()

        def event(**fields: object) -> dict[str, object]:
            return {"conn_id": 7, "session_id": 0, "nonce": str(uuid.uuid4()), **fields}

        new = event(action="new", ip="192.0.2.10")
        auth = event(peer=["controller9", "Alice's PC"], type=0, session_id=123456789)
        close = event(action="close")
        for body in (new, new, auth, close, close):  # retried posts carry the same nonce
            resp = await device.device_call("/api/audit/conn", body)
            assert (resp.status_code, resp.content) == (200, b"")
        # The client restarted: conn_id 7 again, a new connection.
        await device.device_call("/api/audit/conn", event(action="new", ip="192.0.2.11"))
        files = {"ip": "192.0.2.10", "name": "Alice", "num": 1, "files": [["a.txt", 10]]}
        file_event = {
            "peer_id": "controller9",
            "conn_id": 7,
            "type": 0,
            "path": "/tmp/a.txt",
            "is_file": True,
            "info": json.dumps(files),
            "nonce": "n-file",
        }
        alarm = {"typ": 2, "info": json.dumps({"ip": "192.0.2.66"}), "nonce": "n-alarm"}
        for path, body in (("/api/audit/file", file_event), ("/api/audit/alarm", alarm)) * 2:
            resp = await device.device_call(path, body)
            assert (resp.status_code, resp.content) == (200, b"")

        # Unknown device or wrong uuid: 400, which the client drops (no retry storm).
        for stranger in (api.client("controlled1"), api.client("nobody")):
            resp = await stranger.device_call("/api/audit/conn", event(action="new"))
            assert (resp.status_code, resp.json()) == (400, {"error": "ID_NOT_FOUND"})

        # The controlling side's end-of-session note comes with the user's token.
        await api.add_user("alice")
        controller = api.client("controller9")
        await controller.login("alice")
        resp = await controller.request(
            "POST",
            "/api/audit/conn",
            {"id": "controlled1", "session_id": 123456789, "note": "done"},
        )
        assert (resp.status_code, resp.content) == (200, b"")
        resp = await api.client().request(
            "POST", "/api/audit/conn", {"id": "controlled1", "note": "forged"}, auth=False
        )
        assert resp.status_code == 400

        conns = await jobs.read(api.ctx.db, audit.connections)
    assert [(c["ip"], c["events"]) for c in conns] == [("192.0.2.11", 1), ("192.0.2.10", 3)]
    first = conns[1]
    assert first["peer_id"] == "controller9" and first["peer_name"] == "Alice's PC"
    assert first["opened_at"] is not None and first["closed_at"] >= first["opened_at"]
    assert conns[0]["closed_at"] is None
    with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
        counts = [
            conn.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("api_audit_conn", "api_audit_file", "api_audit_alarm")
        ]
        (note,) = conn.execute("select note from api_audit_conn where note != ''").fetchone()
    assert counts == [5, 1, 1] and note == "done"


async def test_audit_without_nonce_from_older_clients_is_stored(api: RunningApi) -> None:
    resp = await api.client().request(
        "POST", "/api/audit/conn", {"id": "x", "uuid": "AAAA", "conn_id": 1, "action": "new"}
    )
    assert resp.status_code == 400  # no such peer: dropped, but never a 5xx


async def test_audit_tables_survive_restart(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        async with running_api(tmp_path) as api:
            device = api.client("controlled2")
            udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
            await udp.register("controlled2", uuid=device.uuid)
            udp.close()
            body = {"conn_id": 1, "action": "new", "nonce": "same"}
            assert (await device.device_call("/api/audit/conn", body)).status_code == 200
        async with running_api(tmp_path) as api:
            device.url = api.url
            # The nonce is remembered across a restart: the retry is not stored twice.
            assert (await device.device_call("/api/audit/conn", body)).content == b""
            assert len(await jobs.read(api.ctx.db, audit.connections)) == 1
