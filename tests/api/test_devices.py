"""The device side against a real hbbs (docs/api.md #22-#25): RegisterPk over UDP, then
heartbeat and sysinfo; the device list joins peer, sysinfo, owner and live presence."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from pyhbb.api import devices, jobs
from pyhbb.api.app import flush_heartbeats
from tests.api.support import RdApiClient, RunningApi, running_api
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import UdpPeer

SYSINFO = {
    "cpu": "Intel(R) Core(TM) i5",
    "memory": "16GB",
    "os": "Windows / Windows 11 Pro",
    "hostname": "office-pc",
    "username": "carol",
    "version": "1.4.9",
}


async def registered(hbbs_udp: tuple[str, int], api: RunningApi, peer_id: str) -> RdApiClient:
    """A device registered with hbbs as the client does (RegisterPeer, RegisterPk)."""
    device = api.client(peer_id)
    udp = await UdpPeer.open(hbbs_udp, "127.0.0.2")
    await udp.register(peer_id, uuid=device.uuid)
    udp.close()
    return device


async def test_heartbeat_sysinfo_and_device_list(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        async with running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api:
            device = await registered(hbbs.udp, api, "device01")
            beat = {"ver": 1004009, "modified_at": 0}
            resp = await device.device_call("/api/heartbeat", beat)
            assert (resp.status_code, resp.json()) == (200, {})
            await flush_heartbeats(api.ctx)  # what the flusher does every few seconds
            # No sysinfo stored yet: the next heartbeat asks for one, once.
            assert (await device.device_call("/api/heartbeat", beat)).json() == {"sysinfo": 1}
            assert (await device.device_call("/api/heartbeat", beat)).json() == {}
            resp = await device.device_call("/api/sysinfo", SYSINFO)
            assert (resp.status_code, resp.text) == (200, "SYSINFO_UPDATED")
            assert resp.headers["content-type"].startswith("text/plain")

            # A wrong uuid, an unknown id, a uuid that is not base64: refused.
            impostor = api.client("device01")
            unknown = api.client("nobody99", device.uuid)
            for client in (impostor, unknown):
                resp = await client.device_call("/api/sysinfo", SYSINFO)
                assert (resp.status_code, resp.text) == (200, "ID_NOT_FOUND")
            resp = await device.request(
                "POST", "/api/sysinfo", {"id": "device01", "uuid": "%%%", **SYSINFO}, auth=False
            )
            assert resp.text == "ID_NOT_FOUND"

            # The owner is the latest user who logged in on that device.
            await api.add_user("carol")
            await api.add_user("admin", admin=True)
            await api.add_user("dave")
            device.token = ""
            await device.login("carol")
            admin, dave = api.client(), api.client()
            await admin.login("admin")
            await dave.login("dave")
            other = await registered(hbbs.udp, api, "device02")

            (mine,) = await device.pages("GET", "/api/peers", "&accessible=&status=1")
            assert mine == {
                "id": "device01",
                "info": {
                    "device_name": "office-pc",
                    "os": "Windows / Windows 11 Pro",
                    "username": "carol",
                },
                "status": 1,
                "user": mine["user"],
                "user_name": "carol",
                "device_group_name": "",
                "note": "",
                "is_online": True,  # from hbbs, live
                "last_online": mine["last_online"],
            }
            assert len(mine["user"]) == 36 and mine["last_online"].endswith("Z")
            everything = await admin.pages("GET", "/api/peers")
            assert [d["id"] for d in everything] == ["device01", "device02"]
            assert everything[1]["user_name"] == "" and everything[1]["info"]["os"] == ""
            assert await dave.pages("GET", "/api/peers") == []
            del other

            # Device groups: labels; a user sees the groups of their own devices.
            await jobs.write(api.ctx.db, lambda c: devices.create_group(c, "Accounting"))
            await jobs.write(api.ctx.db, lambda c: devices.create_group(c, "Lab"))
            await jobs.write(api.ctx.db, lambda c: devices.assign_group(c, "device01", "Lab"))
            assert await device.pages("GET", "/api/device-group/accessible") == [{"name": "Lab"}]
            assert await admin.pages("GET", "/api/device-group/accessible") == [
                {"name": "Accounting"},
                {"name": "Lab"},
            ]
            assert await dave.pages("GET", "/api/device-group/accessible") == []
            (mine,) = await device.pages("GET", "/api/peers")
            assert mine["device_group_name"] == "Lab"

        # hbbs is gone: the list still answers, online state unknown.
        async with running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api:
            device.url = admin.url = api.url
            listed = await admin.pages("GET", "/api/peers")
            assert [d["is_online"] for d in listed] == [True, True]  # hbbs still up here
    async with running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api:
        admin.url = api.url
        listed = await admin.pages("GET", "/api/peers")
        assert [(d["id"], d["is_online"]) for d in listed] == [
            ("device01", None),
            ("device02", None),
        ]
        assert listed[0]["last_online"] is not None  # the last API call, kept in the db
    with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
        # sysinfo never went into peer.info (hbbs rewrites it on registration).
        infos = [info for (info,) in conn.execute("select info from peer")]
    assert all(set(__import__("json").loads(i)) == {"ip"} for i in infos)


async def test_online_state_follows_hbbs_restarts(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        port = hbbs.opts.port
        async with running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api:
            await api.add_user("admin", admin=True)
            admin = api.client()
            await admin.login("admin")
            device = await registered(hbbs.udp, api, "device01")
            assert [d["is_online"] for d in await admin.pages("GET", "/api/peers")] == [True]
    # hbbs restarts on the same ports; the device has not registered again yet.
    async with (
        running_hbbs(tmp_path, port=port) as hbbs,
        running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api,
    ):
        admin.url = api.url
        assert [d["is_online"] for d in await admin.pages("GET", "/api/peers")] == [False]
        udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await udp.register("device01", uuid=device.uuid)  # the client's next heartbeat
        udp.close()
        assert [d["is_online"] for d in await admin.pages("GET", "/api/peers")] == [True]


async def test_heartbeats_are_written_in_batches(tmp_path: Path) -> None:
    async with (
        running_hbbs(tmp_path) as hbbs,
        running_api(tmp_path, hbbs_port=hbbs.opts.nat_port) as api,
    ):
        fleet = [await registered(hbbs.udp, api, f"fleet{i:03d}") for i in range(20)]
        before = _transactions(api)
        await asyncio.gather(*(d.device_call("/api/heartbeat") for d in fleet))
        assert len(api.ctx.heartbeats.pending) == 20
        assert _transactions(api) == before  # nothing written per heartbeat
        await flush_heartbeats(api.ctx)
        assert _transactions(api) == before + 1
        with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
            (n,) = conn.execute(
                "select count(*) from api_device where last_seen is not null"
            ).fetchone()
        assert n == 20


def _transactions(api: RunningApi) -> int:
    writer = api.ctx.db._writer
    assert writer is not None
    return writer.transactions
