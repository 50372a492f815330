"""Punch round trips for the hbbs benchmark, as RustDesk clients A and B perform them.

B (the controlled side) is registered over UDP from its own 127.2.0.k address and keeps
sending RegisterPeer every few seconds, so it stays online. A (the controlling side)
opens a TCP connection to P from a 127.3.x.y address and sends a PunchHoleRequest with
the server's public key as ``licence_key``. The server tells B by UDP (PunchHole; or
FetchLocalAddr if it thought A and B were on one LAN); B answers on a new TCP connection
with PunchHoleSent (or LocalAddr); the server forwards a PunchHoleResponse to A. The
round trip measured is A's send of the request to A's receipt of the response; TCP
connection set-up is measured apart.

Runs in its own process with its own uvloop event loop, driven through a pipe.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from hbbs_procs import die_with_parent

from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import encode_frame

VERSION = "1.4.2"
KEEPALIVE = 5.0
PUNCH_TIMEOUT = 5.0
FIRST_TARGET_ID = 1_900_000_000


def _msg(data: bytes) -> pb.RendezvousMessage | None:
    msg = pb.RendezvousMessage()
    try:
        msg.ParseFromString(data)
    except Exception:
        return None
    return msg


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    first = await reader.readexactly(1)
    head_len = (first[0] & 3) + 1
    head = first + (await reader.readexactly(head_len - 1) if head_len > 1 else b"")
    return await reader.readexactly(int.from_bytes(head, "little") >> 2)


@dataclass
class Target:
    """A simulated B: an id, an address, a UDP socket the server reaches it on."""

    driver: PunchDriver
    peer_id: str
    ip: str
    transport: asyncio.DatagramTransport | None = None
    waiter: asyncio.Future[pb.RendezvousMessage] | None = None


class TargetProtocol(asyncio.DatagramProtocol):
    def __init__(self, target: Target) -> None:
        self.target = target

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        msg = _msg(data)
        if msg is None:
            return
        kind = msg.WhichOneof("union")
        t = self.target
        if kind in ("punch_hole", "fetch_local_addr"):
            t.driver.spawn(t.driver.answer(t, msg))
        elif t.waiter is not None and not t.waiter.done():
            t.waiter.set_result(msg)


@dataclass
class PunchDriver:
    port: int
    licence_key: str
    n_targets: int
    host: str = "127.0.0.1"
    targets: list[Target] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    b_answers: Counter[str] = field(default_factory=Counter)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _udp_request(self, t: Target, msg: pb.RendezvousMessage) -> pb.RendezvousMessage:
        assert t.transport is not None
        for _ in range(5):
            t.waiter = asyncio.get_running_loop().create_future()
            t.transport.sendto(msg.SerializeToString())
            try:
                return await asyncio.wait_for(t.waiter, 2.0)
            except TimeoutError:
                continue
        raise RuntimeError(f"no answer to {msg.WhichOneof('union')} for {t.peer_id}")

    async def setup(self) -> None:
        loop = asyncio.get_running_loop()
        for k in range(self.n_targets):
            t = Target(self, str(FIRST_TARGET_ID + k), f"127.2.0.{k + 1}")
            transport, _ = await loop.create_datagram_endpoint(
                lambda t=t: TargetProtocol(t),  # type: ignore[misc]
                local_addr=(t.ip, 0),
                remote_addr=(self.host, self.port),
            )
            t.transport = transport
            self.targets.append(t)
            reg = pb.RendezvousMessage(
                register_pk=pb.RegisterPk(
                    id=t.peer_id, uuid=f"punch-target-{k}".encode(), pk=os.urandom(32)
                )
            )
            reply = await self._udp_request(t, reg)
            if reply.register_pk_response.result != pb.RegisterPkResponse.OK:
                raise RuntimeError(f"RegisterPk of {t.peer_id}: {reply}")
            await self._heartbeat(t)
        self.spawn(self._keepalive())

    async def _heartbeat(self, t: Target) -> None:
        msg = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=t.peer_id, serial=3))
        reply = await self._udp_request(t, msg)
        if reply.register_peer_response.request_pk:
            raise RuntimeError(f"{t.peer_id} is asked for its key again")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE)
            for t in self.targets:
                assert t.transport is not None
                msg = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=t.peer_id, serial=3))
                t.transport.sendto(msg.SerializeToString())

    async def answer(self, t: Target, msg: pb.RendezvousMessage) -> None:
        """B's side: a new TCP connection carrying PunchHoleSent (or LocalAddr)."""
        kind = msg.WhichOneof("union")
        self.b_answers[kind or "?"] += 1
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, local_addr=(t.ip, 0)
            )
        except OSError:
            self.b_answers["connect_error"] += 1
            return
        try:
            if kind == "punch_hole":
                ph = msg.punch_hole
                out = pb.RendezvousMessage(
                    punch_hole_sent=pb.PunchHoleSent(
                        socket_addr=ph.socket_addr,
                        id=t.peer_id,
                        relay_server=ph.relay_server,
                        nat_type=pb.ASYMMETRIC,
                        version=VERSION,
                    )
                )
            else:
                fl = msg.fetch_local_addr
                local = writer.get_extra_info("sockname")
                out = pb.RendezvousMessage(
                    local_addr=pb.LocalAddr(
                        socket_addr=fl.socket_addr,
                        local_addr=addr_mangle.encode((local[0], local[1])),
                        relay_server=fl.relay_server,
                        id=t.peer_id,
                        version=VERSION,
                    )
                )
            writer.write(encode_frame(out.SerializeToString()))
            # The server closes after this message; reading to EOF also consumes its
            # KeyExchange greeting, so our close sends FIN, not RST.
            async with asyncio.timeout(PUNCH_TIMEOUT):
                while await reader.read(4096):
                    pass
        except (OSError, TimeoutError):
            self.b_answers["answer_error"] += 1
        finally:
            writer.close()

    async def punch(
        self, j: int, rtts: list[float], connects: list[float], out: Counter[str]
    ) -> None:
        """A's side: one PunchHoleRequest on a new TCP connection, timed."""
        target = self.targets[j % len(self.targets)]
        a_ip = f"127.3.{(j // 250) % 250}.{j % 250 + 1}"
        request = pb.RendezvousMessage(
            punch_hole_request=pb.PunchHoleRequest(
                id=target.peer_id,
                nat_type=pb.ASYMMETRIC,
                licence_key=self.licence_key,
                version=VERSION,
            )
        )
        frame = encode_frame(request.SerializeToString())
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, local_addr=(a_ip, 0)), PUNCH_TIMEOUT
            )
        except (OSError, TimeoutError):
            out["connect_error"] += 1
            return
        t_send = time.perf_counter()
        connects.append(t_send - t0)
        try:
            writer.write(frame)
            async with asyncio.timeout(PUNCH_TIMEOUT):
                while True:
                    msg = _msg(await read_frame(reader))
                    if msg is None:
                        out["undecodable"] += 1
                        return
                    kind = msg.WhichOneof("union")
                    if kind == "key_exchange":
                        continue  # the server's secure-channel greeting; A skips it
                    if kind != "punch_hole_response":
                        out[f"unexpected_{kind}"] += 1
                        return
                    rtt = time.perf_counter() - t_send
                    resp = msg.punch_hole_response
                    if resp.socket_addr:
                        rtts.append(rtt)
                        out["ok"] += 1
                    else:
                        name = pb.PunchHoleResponse.Failure.Name(resp.failure)
                        out[f"failure_{name}"] += 1
                    return
        except TimeoutError:
            out["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError):
            out["closed"] += 1
        finally:
            writer.close()

    async def run(self, rate: float, duration: float) -> dict[str, Any]:
        """Start ``rate`` punches per second for ``duration`` s; wait for the last ones."""
        rtts: list[float] = []
        connects: list[float] = []
        out: Counter[str] = Counter()
        self.b_answers.clear()
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Task[None]] = []
        start = loop.time()
        count = int(rate * duration)
        for j in range(count):
            delay = start + j / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(loop.create_task(self.punch(j, rtts, connects, out)))
        await asyncio.gather(*pending)
        return {
            "started": count,
            "elapsed": loop.time() - start,
            "rtts": rtts,
            "connects": connects,
            "outcomes": dict(out),
            "b_answers": dict(self.b_answers),
        }


async def _serve(conn: Connection, port: int, licence_key: str, n_targets: int) -> None:
    driver = PunchDriver(port, licence_key, n_targets)
    loop = asyncio.get_running_loop()
    try:
        await driver.setup()
    except Exception as e:
        conn.send(("error", repr(e)))
        return
    conn.send(("ready", [t.peer_id for t in driver.targets]))
    while True:
        cmd, *args = await loop.run_in_executor(None, conn.recv)
        if cmd == "run":
            conn.send(await driver.run(*args))
        else:
            break


def punch_main(conn: Connection, port: int, licence_key: str, n_targets: int) -> None:
    die_with_parent()
    try:
        uvloop.run(_serve(conn, port, licence_key, n_targets))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        conn.close()
