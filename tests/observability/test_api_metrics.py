"""The API service's /metrics and /healthz after real HTTP requests (real uvicorn,
real SQLite file), with a real hbbs beside it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.api.support import ApiError, running_api
from tests.observability.free import free_port
from tests.observability.scrape import check_conventions, health, scrape
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import UdpPeer


async def test_requests_logins_heartbeats_and_audits_are_counted(tmp_path: Path) -> None:
    where = ("127.0.0.1", free_port())
    async with (
        running_hbbs(tmp_path) as hbbs,
        running_api(tmp_path, hbbs_port=hbbs.opts.nat_port, metrics=where) as api,
    ):
        before = await scrape(where)
        device = api.client("metrics-dev-1")
        udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await udp.register("metrics-dev-1", uuid=device.uuid)
        udp.close()
        for _ in range(3):
            assert (await device.device_call("/api/heartbeat", {"ver": 1})).status_code == 200
        stored = {"conn_id": 1, "action": "new", "nonce": "n-1", "ip": "192.0.2.1"}
        assert (await device.device_call("/api/audit/conn", stored)).status_code == 200
        stranger = api.client("metrics-nobody")
        assert (await stranger.device_call("/api/audit/conn", stored)).status_code == 400
        await api.add_user("alice")
        try:
            await device.login("alice", "wrong")
            raise AssertionError("a wrong password logged in")
        except ApiError as e:
            assert e.status == 401
        await device.login("alice")
        await device.pull_address_books()
        assert (await device.request("DELETE", "/api/ab/peer/some-guid", ["x"])).status_code < 500
        assert (await device.request("GET", "/no/such/path")).status_code == 404

        after = await scrape(where)
        check_conventions(after, {"metrics-dev-1", "metrics-nobody", "alice", "some-guid"})

        def moved(name: str, **labels: str) -> float:
            return after.delta(before, name, **labels)

        beat = {"route": "/api/heartbeat", "method": "POST", "status": "200"}
        assert moved("pyhbb_api_requests_total", **beat) == 3
        assert (
            moved("pyhbb_api_requests_total", route="/api/login", method="POST", status="401") == 1
        )
        assert (
            moved("pyhbb_api_requests_total", route="/api/login", method="POST", status="200") == 1
        )
        delete = {"route": "/api/ab/peer/{guid}", "method": "DELETE"}
        assert (
            sum(moved("pyhbb_api_requests_total", status=str(s), **delete) for s in (200, 400, 404))
            == 1
        )
        assert moved("pyhbb_api_requests_total", route="unmatched", method="GET", status="404") == 1
        assert moved("pyhbb_api_request_duration_seconds_count", route="/api/heartbeat") == 3
        assert moved("pyhbb_api_logins_total", result="ok") == 1
        assert moved("pyhbb_api_logins_total", result="failed") == 1
        assert moved("pyhbb_api_heartbeats_total") == 3
        assert moved("pyhbb_api_audit_events_total", kind="conn", result="stored") == 1
        assert moved("pyhbb_api_audit_events_total", kind="conn", result="unknown_device") == 1
        assert moved("pyhbb_database_operation_seconds_count", operation="write") >= 2
        assert after.get("pyhbb_info", service="api", version="0.1.0") == 1

        status, body = await health(where)
        assert status == 200, body
        assert set(body["checks"]) == {"loop", "database", "hbbs"}
        assert body["status"] == "ok", json.dumps(body)


async def test_without_hbbs_the_api_is_degraded_not_failing(tmp_path: Path) -> None:
    where = ("127.0.0.1", free_port())
    async with running_api(tmp_path, metrics=where):
        for _ in range(40):  # the first probe of hbbs may still be under way
            status, body = await health(where)
            assert status == 200, body
            if body["status"] != "ok":
                break
            await asyncio.sleep(0.1)
        assert body["status"] == "degraded"
        assert not body["checks"]["hbbs"]["ok"] and not body["checks"]["hbbs"]["critical"]
