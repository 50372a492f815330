"""``pyhbb check HOST``: test a server from the outside the way RustDesk clients use it.

Each port a client needs is tried with the client's own first message, so an admin sees at
once which port is blocked by a firewall, whether the key clients are configured with
matches the server's, and whether newer clients get their secure channel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from pyhbb.net.hostport import format_addr, parse_host_port
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import FrameDecoder, encode_frame

TIMEOUT = 4.0
NOT_PAIRED = "the relay closed both connections without pairing them"
KEY_ADVICE = "hbbr enforces a key (-k): give the clients' key with --key"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check, with advice when it failed."""

    name: str
    ok: bool
    detail: str
    advice: str = ""


def _msg(**fields: object) -> bytes:
    return pb.RendezvousMessage(**fields).SerializeToString()  # type: ignore[arg-type]


def _parse(data: bytes) -> pb.RendezvousMessage:
    msg = pb.RendezvousMessage()
    msg.ParseFromString(data)
    return msg


async def _read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder) -> bytes:
    while True:
        frames = decoder.feed(await reader.read(65536) or b"")
        if frames:
            return frames[0]
        if reader.at_eof():
            raise ConnectionError("the server closed the connection")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Doctor:
    """Runs the checks against ``host`` (ID server port ``port``, relay ``relay``)."""

    def __init__(
        self,
        host: str,
        port: int,
        relay: tuple[str, int],
        key: str,
        health_urls: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.relay = relay
        self.key = key
        self.health_urls = health_urls

    async def udp(self) -> Finding:
        name = f"UDP {self.port}: registration"
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, remote_addr=(self.host, self.port)
        )
        try:
            probe = _msg(register_peer=pb.RegisterPeer(id="pyhbb-check", serial=3))
            for _ in range(3):  # UDP may lose a datagram: retry like the client does
                transport.sendto(probe)
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(asyncio.shield(proto.answer), TIMEOUT / 3)
                    if _parse(data).WhichOneof("union") == "register_peer_response":
                        return Finding(name, True, "answered RegisterPeer")
            return Finding(
                name,
                False,
                "no answer",
                f"allow UDP {self.port} in the firewall: without it desktop clients "
                "never come online",
            )
        except OSError as e:
            return Finding(name, False, str(e), f"allow UDP {self.port} in the firewall")
        finally:
            transport.close()

    async def tcp(self) -> Finding:
        name = f"TCP {self.port}: connections and secure channel"
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            return Finding(name, False, str(e), f"allow TCP {self.port} in the firewall")
        decoder = FrameDecoder(1 << 20)
        try:
            try:
                first = _parse(await asyncio.wait_for(_read_frame(reader, decoder), TIMEOUT))
            except TimeoutError:
                return Finding(
                    name,
                    False,
                    "no secure channel offered",
                    "logged-in, proxy and no-UDP clients wait for it ('Failed to secure tcp'): "
                    "run pyhbb's hbbs with a key (-k -) and SECURE_TCP=Y",
                )
            if first.WhichOneof("union") != "key_exchange" or len(first.key_exchange.keys) != 1:
                return Finding(
                    name, False, "unexpected first message", "is this a RustDesk server?"
                )
            if not self.key:
                return Finding(name, True, "secure channel offered (give --key to verify it)")
            try:
                VerifyKey(base64.b64decode(self.key)).verify(first.key_exchange.keys[0])
            except (BadSignatureError, ValueError):
                return Finding(
                    name,
                    False,
                    "the server's key is not the one given",
                    "clients must be configured with the content of the server's "
                    "id_ed25519.pub (its 'Key' field)",
                )
            return Finding(name, True, "secure channel offered, signed by the given key")
        except (OSError, ConnectionError) as e:
            return Finding(name, False, str(e), "the server closed the connection: check its log")
        finally:
            writer.close()

    async def nat_test(self) -> Finding:
        port = self.port - 1
        name = f"TCP {port}: NAT test and online status"
        try:
            reader, writer = await asyncio.open_connection(self.host, port)
        except OSError as e:
            return Finding(name, False, str(e), f"allow TCP {port} in the firewall")
        try:
            writer.write(encode_frame(_msg(test_nat_request=pb.TestNatRequest(serial=3))))
            reply = _parse(await asyncio.wait_for(_read_frame(reader, FrameDecoder(4096)), TIMEOUT))
            if reply.WhichOneof("union") != "test_nat_response":
                return Finding(name, False, "unexpected answer", "is this a RustDesk server?")
            return Finding(name, True, f"NAT test answered (port {reply.test_nat_response.port})")
        except (OSError, ConnectionError, TimeoutError) as e:
            return Finding(name, False, str(e) or "no answer", f"allow TCP {port} in the firewall")
        finally:
            writer.close()

    async def websocket(self) -> Finding:
        port = self.port + 2
        name = f"WebSocket {port}: web client and WebSocket mode"
        try:
            async with ws_connect(
                f"ws://{format_addr((self.host, port))}/ws/id",
                open_timeout=TIMEOUT,
                ping_interval=None,
            ) as ws:
                await ws.send(_msg(test_nat_request=pb.TestNatRequest(serial=3)))
                data = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except Exception as e:  # OSError, TimeoutError and websockets' own errors alike
            return Finding(
                name,
                False,
                str(e) or type(e).__name__,
                f"allow TCP {port}, or proxy /ws/id to it (see README)",
            )
        ok = isinstance(data, bytes) and _parse(data).WhichOneof("union") == "test_nat_response"
        return Finding(name, ok, "answered" if ok else "unexpected answer")

    async def relay_tcp(self) -> Finding:
        host, port = self.relay
        name = f"TCP {port}: relay"
        uuid = os.urandom(8).hex()
        hello = encode_frame(_msg(request_relay=pb.RequestRelay(uuid=uuid, licence_key=self.key)))
        writers: list[asyncio.StreamWriter] = []
        try:
            readers = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection(host, port)
                readers.append(reader)
                writers.append(writer)
                writer.write(hello)
            writers[0].write(b"pyhbb-check")
            got = await asyncio.wait_for(readers[1].readexactly(11), TIMEOUT)
        except asyncio.IncompleteReadError:
            return Finding(name, False, NOT_PAIRED, KEY_ADVICE)
        except (OSError, TimeoutError) as e:
            return Finding(name, False, str(e) or "no answer", f"allow TCP {port} in the firewall")
        finally:
            for w in writers:
                w.close()
        return Finding(name, got == b"pyhbb-check", "two clients paired and exchanged bytes")

    async def relay_websocket(self) -> Finding:
        host, port = self.relay[0], self.relay[1] + 2
        name = f"WebSocket {port}: relay for web and WebSocket clients"
        uuid = os.urandom(8).hex()
        hello = _msg(request_relay=pb.RequestRelay(uuid=uuid, licence_key=self.key))
        url = f"ws://{format_addr((host, port))}/ws/relay"
        try:
            async with (
                ws_connect(url, open_timeout=TIMEOUT, ping_interval=None) as a,
                ws_connect(url, open_timeout=TIMEOUT, ping_interval=None) as b,
            ):
                await a.send(hello)
                await b.send(hello)
                await a.send(b"pyhbb-check")
                got = await asyncio.wait_for(b.recv(), TIMEOUT)
        except ConnectionClosed:
            return Finding(name, False, NOT_PAIRED, KEY_ADVICE)
        except Exception as e:  # OSError, TimeoutError and websockets' own errors alike
            return Finding(
                name, False, str(e) or type(e).__name__, f"allow TCP {port}, or proxy /ws/relay"
            )
        return Finding(name, got == b"pyhbb-check", "two clients paired and exchanged messages")

    async def health(self, url: str) -> Finding:
        """A service's /healthz (its --metrics endpoint): which of its checks fail."""
        name = f"health {url}"
        try:
            status, body = await asyncio.to_thread(_fetch, url)
            report = json.loads(body)
            checks = report["checks"]
            verdict = report["status"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return Finding(
                name,
                False,
                str(e) or type(e).__name__,
                "is the service running with --metrics at this address? (pyhbb run: "
                "127.0.0.1:9116 for hbbs, :9117 for hbbr, :9114 for the API server, on the "
                "server itself)",
            )
        failed = [f"{n}: {c.get('detail', '')}" for n, c in checks.items() if not c.get("ok")]
        detail = f"{report.get('service', '?')} {verdict}" + (
            f" ({'; '.join(failed)})" if failed else ""
        )
        ok = status == 200 and verdict == "ok"
        advice = "the service's log says more" if not ok else ""
        return Finding(name, ok, detail, advice)

    def checks(self) -> list[Callable[[], Awaitable[Finding]]]:
        found: list[Callable[[], Awaitable[Finding]]] = [
            self.udp,
            self.tcp,
            self.nat_test,
            self.websocket,
            self.relay_tcp,
            self.relay_websocket,
        ]
        found += [functools.partial(self.health, url) for url in self.health_urls]
        return found

    async def run(self) -> list[Finding]:
        return list(await asyncio.gather(*(check() for check in self.checks())))


def health_url(value: str) -> str:
    """``HOST:PORT`` (a --metrics address) or an http(s) URL → the /healthz URL."""
    if value.startswith(("http://", "https://")):
        return value
    host, port = parse_host_port(value, 0)
    if port == 0:
        raise ValueError(f"{value!r} has no port")
    return f"http://{format_addr((host, port))}/healthz"


def _fetch(url: str) -> tuple[int, bytes]:
    # no proxy from the environment: the endpoint is usually on loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as answer:
            return int(answer.status), bytes(answer.read(1 << 20))
    except urllib.error.HTTPError as e:  # 503: the body still says why
        return e.code, e.read(1 << 20)


def report(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'}  {f.name}: {f.detail}")
        if not f.ok and f.advice:
            lines.append(f"      -> {f.advice}")
    return "\n".join(lines) + "\n"


def main(server: str, key: str, relay: str | None, health: list[str] | None = None) -> int:
    try:
        host, port = parse_host_port(server, 21116)
        relay_addr = parse_host_port(relay, 21117) if relay else (host, port + 1)
    except ValueError as e:
        sys.stderr.write(f"pyhbb check: {e}; give HOST or HOST:PORT ([IPv6]:PORT)\n")
        return 2
    try:
        urls = tuple(health_url(value) for value in health or ())
    except ValueError as e:
        sys.stderr.write(f"pyhbb check: --health {e}: give HOST:PORT or an http:// URL\n")
        return 2
    findings = asyncio.run(Doctor(host, port, relay_addr, key.strip(), urls).run())
    sys.stdout.write(report(findings))
    return 0 if all(f.ok for f in findings) else 1
