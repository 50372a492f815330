"""hbbs's /metrics after real traffic over UDP, TCP and WebSocket on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyhbb.wire import rendezvous_pb2 as pb
from tests.observability.free import free_port
from tests.observability.scrape import check_conventions, health, scrape
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient

B_ID = "metrics-b-1"
C_ID = "metrics-c-2"


def metrics_at(hbbs: RunningHbbs) -> tuple[str, int]:
    assert hbbs.opts.metrics is not None
    return hbbs.opts.metrics


async def test_counters_move_by_what_clients_did(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, metrics=("127.0.0.1", free_port())) as hbbs:
        where = metrics_at(hbbs)
        before = await scrape(where)
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        assert await b.register_peer(B_ID) is True  # unknown id
        assert await b.register_pk(B_ID, b"uuid-b", b"\x42" * 32) == pb.RegisterPkResponse.OK
        assert await b.register_pk(B_ID, b"uuid-b", b"\x42" * 32) == pb.RegisterPkResponse.OK
        assert await b.register_pk("abc", b"uuid-b", b"\x42" * 32) == (
            pb.RegisterPkResponse.UUID_MISMATCH
        )
        assert await b.register_peer(B_ID) is False
        assert await b.register_peer(B_ID) is False
        b.send_raw(b"\xff\xff not protobuf")

        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        await a.secure(hbbs.public_key)
        a.send(Msg(punch_hole_request=pb.PunchHoleRequest(id=B_ID, licence_key=hbbs.public_key)))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        answer = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        answer.send(Msg(punch_hole_sent=pb.PunchHoleSent(socket_addr=punch.socket_addr, id=B_ID)))
        assert (await a.recv()).WhichOneof("union") == "punch_hole_response"
        a2 = await TcpClient.connect(hbbs.tcp, "127.0.0.4")
        a2.send(Msg(punch_hole_request=pb.PunchHoleRequest(id="nobody-here", licence_key="x")))
        a2.send(Msg(punch_hole_request=pb.PunchHoleRequest(id="nobody-here")))
        ws = await WsClient.connect(hbbs.ws, "/ws/id")
        await ws.send(
            Msg(punch_hole_request=pb.PunchHoleRequest(id=B_ID, licence_key=hbbs.public_key))
        )
        await b.recv_kind("punch_hole")
        await ws.send(Msg(request_relay=pb.RequestRelay(id=B_ID, uuid="u-1")))
        await b.recv_kind("request_relay")
        for client in (a, answer, a2):
            client.close()
        await ws.close()
        b.close()

        after = await scrape(where)
        check_conventions(after, {B_ID, C_ID, "nobody-here", "uuid-b", "u-1"})

        def moved(name: str, **labels: str) -> float:
            return after.delta(before, name, **labels)

        assert moved("pyhbb_hbbs_heartbeats_total", transport="udp", result="unknown_id") == 1
        assert moved("pyhbb_hbbs_heartbeats_total", transport="udp", result="ok") == 2
        assert moved("pyhbb_hbbs_register_pk_total", transport="udp", result="ok") == 2
        assert moved("pyhbb_hbbs_register_pk_total", transport="udp", result="uuid_mismatch") == 1
        assert moved("pyhbb_hbbs_registrations_stored_total", kind="new") == 1
        assert moved("pyhbb_hbbs_registrations_stored_total", kind="update") == 0
        assert moved("pyhbb_hbbs_punch_requests_total", transport="tcp", result="forwarded") == 1
        assert moved("pyhbb_hbbs_punch_requests_total", transport="ws", result="forwarded") == 1
        assert moved("pyhbb_hbbs_punch_requests_total", transport="tcp", result="key_mismatch") == 2
        assert moved("pyhbb_hbbs_relay_requests_total", transport="ws", result="forwarded") == 1
        assert moved("pyhbb_hbbs_answers_total", kind="punch_answer", result="forwarded") == 1
        assert moved("pyhbb_hbbs_errors_total", kind="malformed_datagram") == 1
        assert moved("pyhbb_hbbs_udp_datagrams_total") >= 7
        assert moved("pyhbb_hbbs_connections_total", transport="tcp") == 3
        assert moved("pyhbb_hbbs_connections_total", transport="ws") == 1
        assert moved("pyhbb_hbbs_secure_handshakes_total", result="secure") == 1
        assert moved("pyhbb_hbbs_secure_handshakes_total", result="plaintext") == 2
        assert after.get("pyhbb_hbbs_peers_online") == 1
        assert after.get("pyhbb_hbbs_table_entries", table="peers") == 1
        # the database did the registration's write and read
        assert moved("pyhbb_database_operation_seconds_count", operation="write") >= 1
        assert moved("pyhbb_database_operation_seconds_count", operation="read") >= 1
        lag = after.get("pyhbb_event_loop_lag_seconds_count")
        for _ in range(30):  # the timer ticks every 25 ms: seen within 3 s at worst
            if lag > 0:
                break
            await asyncio.sleep(0.1)
            lag = (await scrape(where)).get("pyhbb_event_loop_lag_seconds_count")
        assert lag > 0
        assert after.get("pyhbb_info", service="hbbs", version="0.1.0") == 1
        assert after.get("process_resident_memory_bytes") > 0


async def test_health_says_what_works(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, metrics=("127.0.0.1", free_port()), test_hbbs="") as hbbs:
        for _ in range(50):  # until the first relay probe (a refused connection) is done
            status, body = await health(metrics_at(hbbs))
            if body["checks"]["relay"]["detail"] != "not checked yet":
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        checks = body["checks"]
        assert set(checks) == {"loop", "udp", "tcp", "database", "relay"}
        assert all(checks[name]["ok"] for name in ("loop", "udp", "tcp", "database")), checks
        port = hbbs.opts.port
        assert f"TCP {port - 1}" in checks["tcp"]["detail"]
        # no hbbr on P+1: the relay check fails, but hbbs itself is fine (not critical)
        assert checks["relay"] == {
            "ok": False,
            "critical": False,
            "detail": checks["relay"]["detail"],
        }
        assert body["status"] == "degraded"
