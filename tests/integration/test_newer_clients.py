"""Issue 4 over real sockets: secure TCP, TCP/WebSocket registration, heartbeats, ID change,
the HTTP tunnel and UDP punching, with a client doing the real client's handshake."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.integration.test_hbbs_flows import B_ID, B_PK, punch_request, verify_pk
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient

OK = pb.RegisterPkResponse.OK


def register_pk(peer_id: str = B_ID, uuid: bytes = b"uuid-b", pk: bytes = B_PK) -> Msg:
    return Msg(register_pk=pb.RegisterPk(id=peer_id, uuid=uuid, pk=pk))


async def tcp_mode_peer(hbbs: RunningHbbs, local: str = "127.0.0.2") -> TcpClient:
    """A client in TCP mode (proxy / no UDP): secure channel, then RegisterPk."""
    b = await TcpClient.connect(hbbs.tcp, local)
    await b.secure(hbbs.public_key)
    b.send(register_pk())
    resp = (await b.recv()).register_pk_response
    assert resp.result == OK and resp.keep_alive == 60
    return b


async def test_plaintext_client_ignoring_key_exchange(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        assert (await c.recv()).WhichOneof("union") == "key_exchange"  # offered, not answered
        c.send(Msg(test_nat_request=pb.TestNatRequest()))
        assert (await c.recv()).test_nat_response.port == c.local[1]


async def test_bad_handshakes_close(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        for keys in ([b"\x01" * 32], [b"\x01" * 32, b"\x02" * 48], [b"x", b"y", b"z"]):
            c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            await c.recv()
            c.send(Msg(key_exchange=pb.KeyExchange(keys=keys)))
            assert await c.closed()
        # Encrypted frames that do not authenticate end the connection.
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        await c.secure(hbbs.public_key)
        c.send_raw(b"\x50" + b"\x00" * 20)
        assert await c.closed()


async def test_no_key_exchange_on_websocket_or_nat_port(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        nat = await TcpClient.connect(hbbs.nat, "127.0.0.3")
        nat.send(Msg(test_nat_request=pb.TestNatRequest()))
        assert (await nat.recv()).WhichOneof("union") == "test_nat_response"
        ws = await WsClient.connect(hbbs.ws)
        await ws.send(Msg(test_nat_request=pb.TestNatRequest()))
        assert (await ws.recv()).WhichOneof("union") == "test_nat_response"


async def test_tcp_registration_receives_punch_over_its_session(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await tcp_mode_peer(hbbs)
        q = await TcpClient.connect(hbbs.nat, "127.0.0.9")
        q.send(Msg(online_request=pb.OnlineRequest(peers=[B_ID])))
        assert (await q.recv()).online_response.states == b"\x80"
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        await a.secure(hbbs.public_key)
        a.send(punch_request(hbbs))
        punch = (await b.recv()).punch_hole  # encrypted, on B's registration session
        assert addr_mangle.decode(punch.socket_addr) == a.local
        # B answers on a new connection, as with UDP registration.
        b2 = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        b2.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=punch.socket_addr, id=B_ID, version="1.4.2"
                )
            )
        )
        resp = (await a.recv()).punch_hole_response
        assert addr_mangle.decode(resp.socket_addr) == b2.local
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
        # A relay request reaches B over the session too.
        r = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        r.send(Msg(request_relay=pb.RequestRelay(id=B_ID, uuid="relay-uuid")))
        assert (await b.recv()).request_relay.uuid == "relay-uuid"
        # When the session ends the peer is offline at once.
        b.close()
        await asyncio.sleep(0.2)
        a2 = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a2.send(punch_request(hbbs))
        assert (await a2.recv_nonkeyexchange()).punch_hole_response.failure == (
            pb.PunchHoleResponse.OFFLINE
        )


async def test_websocket_registration(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await WsClient.connect(hbbs.ws, local="127.0.0.2")
        await b.send(register_pk())
        resp = (await b.recv()).register_pk_response
        assert resp.result == OK and resp.keep_alive == 60
        a = await WsClient.connect(hbbs.ws, local="127.0.0.3")
        await a.send(punch_request(hbbs))
        punch = (await b.recv()).punch_hole
        assert addr_mangle.decode(punch.socket_addr)[0] == "127.0.0.3"


async def test_heartbeats_keep_sessions_and_silence_drops_them(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        hbbs.server.core.state.settings.heartbeat = 0.2  # drop after 2.5 x = 0.5 s silence
        b = await tcp_mode_peer(hbbs)
        for _ in range(5):  # echo every heartbeat: the session lives on
            assert await b.recv_payload(timeout=2) == b""
            b.send_payload(b"")
        assert hbbs.server.core.state.sessions
        # Stop echoing: the server drops the session within ~0.5 s.
        try:
            while True:
                assert await b.recv_payload(timeout=3) == b""
        except EOFError:
            pass
        await asyncio.sleep(0.1)
        assert not hbbs.server.core.state.sessions


async def test_peer_moves_between_udp_and_tcp(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await udp.register(B_ID, uuid=b"uuid-b", pk=B_PK)
        b = await tcp_mode_peer(hbbs)  # now in TCP mode: punches go over the session
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs))
        assert (await b.recv()).WhichOneof("union") == "punch_hole"
        assert await udp.nothing(0.3)
        assert not await udp.register_peer(B_ID)  # back to UDP: punches go by UDP
        a.send(punch_request(hbbs))
        assert (await udp.recv_kind("punch_hole")).punch_hole.socket_addr


async def change_id(hbbs: RunningHbbs, old: str, new: str, uuid: bytes) -> int:
    c = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
    c.send(Msg(register_pk=pb.RegisterPk(id=new, old_id=old, uuid=uuid)))
    result = (await c.recv_nonkeyexchange(timeout=5)).register_pk_response.result
    assert await c.closed()
    return result


async def test_id_change_and_each_refusal(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        udp = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await udp.register(B_ID, uuid=b"uuid-b", pk=B_PK)
        other = await UdpPeer.open(hbbs.udp, "127.0.0.4")
        await other.register("taken_id1", uuid=b"uuid-o")
        R = pb.RegisterPkResponse
        assert await change_id(hbbs, B_ID, "1bad-start", b"uuid-b") == R.INVALID_ID_FORMAT
        assert await change_id(hbbs, B_ID, "short", b"uuid-b") == R.INVALID_ID_FORMAT
        assert await change_id(hbbs, B_ID, "taken_id1", b"uuid-b") == R.ID_EXISTS
        assert await change_id(hbbs, B_ID, "my-new-id", b"uuid-x") == R.UUID_MISMATCH
        assert await change_id(hbbs, "no_such_id", "my-new-id", b"uuid-b") == R.UUID_MISMATCH
        assert await change_id(hbbs, B_ID, "my-new-id", b"uuid-b") == R.OK
        assert await change_id(hbbs, "my-new-id", "again-new", b"uuid-b") == R.TOO_FREQUENT
        # The row kept its guid and key under the new id; the client re-registers.
        assert await udp.register_peer("my-new-id") is False
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs, peer_id="my-new-id"))
        assert (await udp.recv_kind("punch_hole")).punch_hole.socket_addr
    with sqlite3.connect(tmp_path / "db_v2.sqlite3") as conn:
        ids = {row[0] for row in conn.execute("select id from peer")}
    assert ids == {"my-new-id", "taken_id1"}


async def test_id_change_not_supported_when_disabled(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, id_change=False) as hbbs:
        result = await change_id(hbbs, B_ID, "my-new-id", b"uuid-b")
        assert result == pb.RegisterPkResponse.NOT_SUPPORT


class _Api(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps(
            {"path": self.path, "got": body.decode(), "xff": self.headers.get("X-Forwarded-For")}
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def api_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def http_request(path: str = "/api/login?x=1") -> Msg:
    return Msg(
        http_proxy_request=pb.HttpProxyRequest(
            method="post",
            path=path,
            headers=[pb.HeaderEntry(name="Content-Type", value="application/json")],
            body=b'{"user":"u"}',
        )
    )


async def test_http_tunnel(tmp_path: Path) -> None:
    with api_server() as url:
        async with running_hbbs(tmp_path, api_server=url) as hbbs:
            c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            await c.secure(hbbs.public_key)
            c.send(http_request())
            resp = (await c.recv(timeout=10)).http_proxy_response
            assert not resp.error and resp.status == 201
            got = json.loads(resp.body)
            assert got == {"path": "/api/login?x=1", "got": '{"user":"u"}', "xff": "127.0.0.3"}
            assert ("content-type", "application/json") in {
                (h.name.lower(), h.value) for h in resp.headers
            }
            # Not on a plaintext connection: credentials would cross the network in clear.
            p = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            p.send(http_request())
            assert "encrypted" in (await p.recv_nonkeyexchange()).http_proxy_response.error
            # A path that would leave the API server is refused.
            c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            await c.secure(hbbs.public_key)
            c.send(http_request("//evil.example/x"))
            assert (await c.recv()).http_proxy_response.error


async def test_http_tunnel_without_api_server(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, api_server="http://127.0.0.1:1") as hbbs:
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        await c.secure(hbbs.public_key)
        c.send(http_request())
        error = (await c.recv(timeout=10)).http_proxy_response.error
        assert "not reachable" in error and "127.0.0.1:1" in error


async def test_udp_punching(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, udp_punch=True) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs, udp_port=40001))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        assert punch.udp_port == 40001
        sent = Msg(
            punch_hole_sent=pb.PunchHoleSent(
                socket_addr=punch.socket_addr, id=B_ID, version="1.4.2"
            )
        )
        # A stranger on another IP cannot use the pending request.
        stranger = await UdpPeer.open(hbbs.udp, "127.0.0.66")
        stranger.send(sent)
        # B sends three copies from a fresh UDP socket on its own IP.
        fresh = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        for _ in range(3):
            fresh.send(sent)
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert resp.is_udp and addr_mangle.decode(resp.socket_addr) == fresh.addr
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
        assert await stranger.nothing() and await fresh.nothing()


async def test_udp_punch_sent_ignored_when_disabled(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs, udp_port=40001))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        assert punch.udp_port == 0  # not forwarded by default, like the official server
        b.send(Msg(punch_hole_sent=pb.PunchHoleSent(socket_addr=punch.socket_addr, id=B_ID)))
        assert await b.nothing()


async def test_config_update_reaches_sessions(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, serial=5, rendezvous_servers=["rs1.example"]) as hbbs:
        b = await tcp_mode_peer(hbbs)
        cu = (await b.recv()).configure_update  # after the RegisterPkResponse
        assert (cu.serial, list(cu.rendezvous_servers)) == (5, ["rs1.example"])
        # A new configuration from loopback (the admin) is pushed to the session at once.
        admin = await UdpPeer.open(hbbs.udp, "127.0.0.1")
        admin.send(
            Msg(configure_update=pb.ConfigUpdate(serial=6, rendezvous_servers=["localhost"]))
        )
        while True:
            msg = await b.recv(timeout=5)
            if msg.WhichOneof("union") == "configure_update":
                break
        assert (msg.configure_update.serial, list(msg.configure_update.rendezvous_servers)) == (
            6,
            ["localhost"],
        )


async def test_bind_address_is_honoured(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, bind="127.0.0.1") as hbbs:
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        c.send(Msg(test_nat_request=pb.TestNatRequest()))
        assert (await c.recv_nonkeyexchange()).test_nat_response.port == c.local[1]
        try:
            await TcpClient.connect(("::1", hbbs.opts.port))
        except OSError:
            pass
        else:
            raise AssertionError("an IPv6 connection reached a server bound to 127.0.0.1")


async def test_http_tunnel_timeout_and_size_limit(tmp_path: Path, monkeypatch: Any) -> None:
    from pyhbb.rendezvous.adapters import http_proxy

    monkeypatch.setattr(http_proxy, "TIMEOUT", 0.5)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts, never answers
        writer.close()

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        body = b"x" * 3_000_000
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    for handler, expected in ((silent, "did not answer within"), (huge, "larger than")):
        api = await asyncio.start_server(handler, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{api.sockets[0].getsockname()[1]}"
        workdir = tmp_path / handler.__name__
        workdir.mkdir()
        try:
            async with running_hbbs(workdir, api_server=url) as hbbs:
                c = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
                await c.secure(hbbs.public_key)
                c.send(http_request())
                assert expected in (await c.recv(timeout=10)).http_proxy_response.error
        finally:
            api.close()
