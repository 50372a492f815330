"""Issue 12 against the real hbbs command: a bounded spoofed flood, the listen backlog,
running out of descriptors, the WebSocket library's lines, unreadable key files."""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, start, stop, wait_tcp

B_ID = "1234567890"


def msg(**fields: object) -> bytes:
    return pb.RendezvousMessage(**fields).SerializeToString()  # type: ignore[arg-type]


def forged_sender() -> tuple[socket.socket, bool]:
    """A raw socket that forges source addresses (root), else a plain UDP socket."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW), True
    except PermissionError:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM), False


def send_forged(raw: socket.socket, spoof: bool, i: int, port: int, payload: bytes) -> None:
    src = bytes((127, 1 + (i >> 16) % 254, (i >> 8) & 255, i & 255))
    if not spoof:  # without root: distinct 127/8 sources need a socket each
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((socket.inet_ntoa(src), 0))
            s.sendto(payload, ("127.0.0.1", port))
        return
    udp = struct.pack("!HHHH", 1024 + i % 60000, port, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, socket.inet_aton("127.0.0.1")
    )
    raw.sendto(ip + udp, ("127.0.0.1", 0))


def udp_request(port: int, payload: bytes, local: str, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((local, 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(256)
        except TimeoutError:
            return None


@pytest.mark.slow
def test_spoofed_flood_keeps_hbbs_up_and_answering(tmp_path: Path) -> None:
    port = free_base_port()
    proc = start("hbbs", ["-p", str(port)], tmp_path, {"TEST_HBBS": "", "RUST_LOG": "info"})
    try:
        wait_tcp(port)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b.bind(("127.0.0.2", 0))
        b.settimeout(1.0)
        b.sendto(
            msg(register_pk=pb.RegisterPk(id=B_ID, uuid=b"b", pk=b"\x02" * 32)), ("127.0.0.1", port)
        )
        assert b.recv(64) == msg(register_pk_response=pb.RegisterPkResponse())
        raw, spoof = forged_sender()
        one_id = msg(register_pk=pb.RegisterPk(id=B_ID, uuid=b"forged", pk=b"\x03" * 32))
        beat = msg(register_peer=pb.RegisterPeer(id=B_ID, serial=3))
        answered = lost = 0
        i = 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:  # ~3,000 forged datagrams/s, each from a new source
            for _ in range(150 if spoof else 20):
                payload = (
                    one_id
                    if i % 2
                    else msg(
                        register_pk=pb.RegisterPk(id=f"f{i:09d}", uuid=b"forged", pk=b"\x03" * 32)
                    )
                )
                send_forged(raw, spoof, i, port, payload)
                i += 1
            b.sendto(beat, ("127.0.0.1", port))
            try:
                answered += b.recv(64) == msg(register_peer_response=pb.RegisterPeerResponse())
            except TimeoutError:
                lost += 1
            time.sleep(0.05)
        raw.close()
        assert answered >= 0.9 * (answered + lost), (answered, lost)
        # a genuine new device gets in, and the server is still there
        reply = udp_request(
            port,
            msg(register_pk=pb.RegisterPk(id="genuine01", uuid=b"g", pk=b"\x04" * 32)),
            "127.0.0.3",
            3.0,
        )
        assert reply == msg(register_pk_response=pb.RegisterPkResponse())
        time.sleep(1.5)  # the self-test runs every second
        assert proc.poll() is None
        b.close()
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert len(out.splitlines()) < 60, out[-3000:]  # throttled: not one line per datagram


def test_listeners_have_the_intended_backlog(tmp_path: Path) -> None:
    # With hbbs stopped, the kernel completes handshakes only while the accept queue has
    # room: asyncio's default re-listen would leave room for 101.
    port = free_base_port()
    proc = start("hbbs", ["-p", str(port)], tmp_path)
    clients: list[socket.socket] = []
    try:
        wait_tcp(port + 2)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGSTOP)
        for listener in (port + 2, port - 1):
            opened = []
            for _ in range(300):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", listener))
                opened.append(c)
            time.sleep(1.0)
            established = sum(
                c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and _connected(c)
                for c in opened
            )
            clients += opened
            assert established > 200, (listener, established)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        for c in clients:
            c.close()
        stop(proc)


def _connected(c: socket.socket) -> bool:
    try:
        c.getpeername()
        return True
    except OSError:
        return False


def test_running_out_of_descriptors_is_said_once_in_a_while(tmp_path: Path) -> None:
    port = free_base_port()

    def low_limit() -> None:  # soft = hard = 96: nothing to raise
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    env = {**os.environ, "TEST_HBBS": "no"}
    proc = subprocess.Popen(
        [str(VENV_BIN / "hbbs"), "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=low_limit,
    )
    clients = []
    try:
        wait_tcp(port + 2)
        for _ in range(200):
            c = socket.socket()
            c.settimeout(2)
            try:
                c.connect(("127.0.0.1", port + 2))
            except OSError:
                c.close()
                continue
            clients.append(c)
        time.sleep(3.0)  # the housekeeping check runs every second
    finally:
        for c in clients:
            c.close()
        _code, out = stop(proc)
    lines = [ln for ln in out.splitlines() if "out of file descriptors" in ln]
    assert lines, out[-3000:]
    assert len(lines) <= 4  # the 1st, 2nd, 4th ... time
    assert "open-files limit 96" in lines[0] and "LimitNOFILE" in lines[0]
    assert "leaves room for about" in out  # said at start-up too


def test_websocket_connections_do_not_log_a_line_each(tmp_path: Path) -> None:
    port = free_base_port()
    proc = start("hbbs", ["-p", str(port)], tmp_path, {"RUST_LOG": "info"})
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        wait_tcp(port + 2)
        accepted = 0
        for i in range(3000):
            with socket.create_connection(("127.0.0.1", port + 2), timeout=5) as c:
                c.sendall(request if i % 3 else b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                accepted += c.recv(100).startswith(b"HTTP/1.1 101")
        assert accepted == 2000
    finally:
        code, out = stop(proc)
    assert code == 0
    assert len(out.splitlines()) < 30, out[-3000:]


@pytest.mark.parametrize("command", ["hbbs", "hbbr"])
def test_key_file_that_cannot_be_read_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    port = free_base_port()
    args = ["-p", str(port)] + (["-k", "-"] if command == "hbbr" else [])
    for case in ("directory", "loop"):
        key = tmp_path / "id_ed25519"
        if case == "directory":
            key.mkdir()
        else:
            key.rmdir()
            key.symlink_to(key)  # ELOOP: a file nobody can read
        r = subprocess.run(
            [VENV_BIN / command, *args], capture_output=True, text=True, cwd=tmp_path, timeout=30
        )
        assert r.returncode == 2, (case, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "cannot read the key file" in r.stderr and "id_ed25519" in r.stderr
