"""Disabling a device in the web console, end to end: a real hbbs and the API server on
loopback share one SQLite file; B registers over UDP, A asks for it over TCP and
WebSocket (docs/deviations.md §3.8)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pyhbb.wire import rendezvous_pb2 as pb
from tests.api.support import running_api
from tests.cluster.harness import NATS_SERVER, start_nats
from tests.console.support import Browser
from tests.console.test_console import signed_in
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.ports import free_base_port
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient

B_ID = "device01"
B_UUID = b"b-machine-uuid"
B_PK = b"\x42" * 32


def punch_request(hbbs: RunningHbbs, peer_id: str = B_ID) -> Msg:
    return Msg(
        punch_hole_request=pb.PunchHoleRequest(
            id=peer_id, licence_key=hbbs.public_key, nat_type=pb.ASYMMETRIC, version="1.4.2"
        )
    )


async def punch_answer(hbbs: RunningHbbs) -> Msg | None:
    """A's PunchHoleRequest for B over TCP: hbbs's answer, or None when hbbs passed the
    request on to B (A's connection then waits for B's answer)."""
    a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
    try:
        a.send(punch_request(hbbs))
        try:
            return await a.recv_nonkeyexchange(timeout=1.0)
        except TimeoutError:
            return None
    finally:
        a.close()


async def is_offline_answer(msg: Msg | None) -> bool:
    return (
        msg is not None
        and msg.WhichOneof("union") == "punch_hole_response"
        and msg.punch_hole_response.failure == pb.PunchHoleResponse.OFFLINE
    )


async def set_disabled(admin: Browser, disabled: bool) -> str:
    """Press the device page's button; the page shown afterwards (with the flash)."""
    await admin.get(f"/device?id={B_ID}")
    resp = await admin.post("/device/disable", {"id": B_ID, "disabled": "1" if disabled else "0"})
    assert resp.status_code == 303, resp.text
    return (await admin.get(resp.headers["location"])).text


async def online_in_console(admin: Browser) -> bool:
    online = (await admin.get(f"/devices/online.json?id={B_ID}")).json()["online"]
    return bool(online.get(B_ID))


async def test_disable_enable_and_restart(tmp_path: Path) -> None:
    port = free_base_port()
    async with running_api(tmp_path, hbbs_port=port - 1) as api:
        admin = await signed_in(api, "admin", admin=True)
        b = await UdpPeer.open(("127.0.0.1", port), "127.0.0.2")
        async with running_hbbs(tmp_path, port=port) as hbbs:
            assert hbbs.opts.nat_port == port - 1
            await b.register(B_ID, uuid=B_UUID, pk=B_PK)

            # Enabled: A's request reaches B.
            assert await punch_answer(hbbs) is None
            assert (await b.recv_kind("punch_hole")).HasField("punch_hole")
            assert await online_in_console(admin)

            page = await set_disabled(admin, True)
            assert "Device disabled. hbbs now answers for it as for an offline device." in page
            assert '<span class="badge">disabled</span>' in page
            assert 'role="alert"' not in page  # hbbs enforces it: no warning on the page
            await disabled_everywhere(hbbs, b, admin)

            # B keeps registering (its heartbeats and key are accepted as before).
            assert await b.register_peer(B_ID) is False
            assert await b.register_pk(B_ID, B_UUID, B_PK) == pb.RegisterPkResponse.OK
            assert await is_offline_answer(await punch_answer(hbbs))

            page = await set_disabled(admin, False)
            assert "Device enabled again. It can be reached again." in page
            assert await punch_answer(hbbs) is None
            assert (await b.recv_kind("punch_hole")).HasField("punch_hole")
            assert await online_in_console(admin)

            await set_disabled(admin, True)

        # hbbs is down: the database says disabled, and the admin is told when it counts.
        page = await set_disabled(admin, False)
        assert "hbbs could not be told, so this takes effect when hbbs restarts" in page
        assert "console did not answer, so a change reaches hbbs only when it restarts" in page
        page = await set_disabled(admin, True)
        assert "hbbs could not be told, so this takes effect when hbbs restarts" in page

        # Restarted, hbbs reads the disabled IDs from the database before serving anyone.
        async with running_hbbs(tmp_path, port=port) as hbbs:
            assert await b.register_peer(B_ID) is False  # its record read back
            await disabled_everywhere(hbbs, b, admin)
            # hbbs's loopback console lists what it enforces
            assert await hbbs_console(hbbs, "disabled-peers") == f"1\n{B_ID}\n"
            await set_disabled(admin, False)
            assert await punch_answer(hbbs) is None
            assert (await b.recv_kind("punch_hole")).HasField("punch_hole")
        b.close()


async def disabled_everywhere(hbbs: RunningHbbs, b: UdpPeer, admin: Browser) -> None:
    """Punch (TCP, WebSocket) and relay requests are answered OFFLINE, B hears nothing,
    and the online query (asked by the console, on P-1) says offline."""
    assert await is_offline_answer(await punch_answer(hbbs))
    w = await WsClient.connect(hbbs.ws, local="127.0.0.4")
    await w.send(punch_request(hbbs))
    assert await is_offline_answer(await w.recv())
    await w.close()
    a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
    a.send(Msg(request_relay=pb.RequestRelay(id=B_ID, uuid="relay-uuid")))
    assert await is_offline_answer(await a.recv_nonkeyexchange())
    a.close()
    assert await b.nothing(0.5)
    assert not await online_in_console(admin)


async def hbbs_console(hbbs: RunningHbbs, line: str) -> str:
    reader, writer = await asyncio.open_connection(*hbbs.nat)
    writer.write(line.encode() + b"\n")
    answer = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    return answer.decode()


async def test_in_cluster_mode_the_console_does_not_pretend(tmp_path: Path) -> None:
    if not NATS_SERVER.exists():
        pytest.fail(f"{NATS_SERVER} is missing: install the cluster extra (scripts/bootstrap.sh)")
    (tmp_path / "nats").mkdir()
    nats, nats_ports = start_nats(tmp_path / "nats")
    try:
        port = free_base_port()
        node = {
            "cluster": [f"nats://127.0.0.1:{p}" for p in nats_ports],
            "node_name": "n1",
            "relay_servers": ["127.0.0.1:21117"],
        }
        async with (
            running_hbbs(tmp_path, port=port, **node) as hbbs,
            running_api(tmp_path, hbbs_port=port - 1) as api,
        ):
            admin = await signed_in(api, "admin", admin=True)
            b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
            await b.register(B_ID, uuid=B_UUID, pk=B_PK)
            # The node keeps peers in the NATS directory; the console lists the API's
            # SQLite table, which a cluster deployment fills by other means.
            with sqlite3.connect(tmp_path / "db_v2.sqlite3") as db:
                db.execute(
                    "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, '{}')",
                    (b"g" * 16, B_ID, B_UUID, B_PK),
                )
            page = (await admin.get(f"/device?id={B_ID}")).text
            assert "Not enforced: hbbs runs in cluster mode" in page
            page = await set_disabled(admin, True)
            assert (
                "Device disabled. hbbs runs in cluster mode, where disabling is not enforced: "
                "the device can still be reached."
            ) in page
            # As said: B is still reached.
            assert await punch_answer(hbbs) is None
            assert (await b.recv_kind("punch_hole")).HasField("punch_hole")
            b.close()
    finally:
        for proc in nats:
            proc.stop()
