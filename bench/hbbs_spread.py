"""Load generator for hbbs with one source IP per peer (or a few peers per IP), as real
clients have: a million peers from a million addresses of 127.0.0.0/8, without a million
sockets.

Each sender process has ``per_addr`` UDP sockets bound to the wildcard address (one per
peer slot of an IP, so that the peers behind one IP differ by port, as behind a NAT). A
datagram leaves with the peer's own source IP through ``IP_PKTINFO`` (``sendmsg``); the
answer comes back to the same socket, and ``IP_PKTINFO`` on receipt tells which of our
addresses it was sent to, hence which peer it answers. Everything is loopback.

A sender plays each of its peers as the RustDesk client does (docs/protocol.md §12):

* a peer whose key is not confirmed sends RegisterPk, otherwise RegisterPeer, once per
  15 s (the peers' phases are spread evenly over the period);
* a request without an answer is sent again after 3 s;
* ``request_pk`` in a RegisterPeerResponse makes it send RegisterPk at once; the
  RegisterPk answer OK confirms the key, any other answer leaves it for the next round;
* a peer is *online* from the first RegisterPeerResponse without ``request_pk`` (the
  server then has its address and time: a RegisterPk answered OK alone does not make a
  peer online when nothing changed, §6.4).

Commands from the parent (a pipe): ``register`` (first registration, a window of
outstanding RegisterPk, as fast as the server answers), ``confirm`` (every key is
registered already: a seeded database), ``run`` (the client model above until told to
stop), and during ``run``: ``reset`` (forget who is online), ``silence``
(some peers stop: to watch eviction), ``stats``, ``stop``.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import select
import socket
import struct
import time
from array import array
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from hbbs_procs import die_with_parent

from pyhbb.wire import rendezvous_pb2 as pb

IP_PKTINFO = 8  # Linux <netinet/in.h>; the socket module does not export it
PKTINFO = struct.Struct("=i4s4s")
SERIAL = 3
PERIOD = 15.0
RETRY = 3.0
REGISTER_RETRY = 5.0
TOO_FREQUENT_RETRY = 2.0
CLIENT_RCVBUF = 4 << 20

HB_OK = bytes.fromhex("3a00")
HB_REQUEST_PK = bytes.fromhex("3a021001")
PK_OK = bytes.fromhex("820100")


@dataclass(frozen=True)
class SpreadLayout:
    """Peer k (0 ≤ k < peers) sends from IP number k // per_addr, socket slot k % per_addr."""

    peers: int
    per_addr: int
    first_id: int = 1_000_000_000

    @property
    def addrs(self) -> int:
        return -(-self.peers // self.per_addr)

    def peer_id(self, k: int) -> str:
        return str(self.first_id + k)

    @staticmethod
    def addr_ip(a: int) -> str:
        """127.16.0.1, 127.16.0.2, ... skipping .0 and .255 in the last octet."""
        hi, lo = divmod(a, 254)
        return f"127.{16 + hi // 256}.{hi % 256}.{lo + 1}"

    @staticmethod
    def addr_number(raw: bytes) -> int:
        """Inverse of :meth:`addr_ip` for the 4 address bytes."""
        return ((raw[1] - 16) * 256 + raw[2]) * 254 + raw[3] - 1


def register_pk_key(k: int) -> bytes:
    """Peer k's public key (32 bytes, fixed per peer)."""
    return hashlib.blake2b(k.to_bytes(8, "little"), digest_size=32).digest()


def register_pk(layout: SpreadLayout, k: int) -> bytes:
    """Peer k's RegisterPk: the same uuid and key every time (a real client's are fixed)."""
    seed = register_pk_key(k)
    uuid = f"spread-{k:09d}-0000-4000-8000-00000000".encode()
    return pb.RendezvousMessage(
        register_pk=pb.RegisterPk(id=layout.peer_id(k), uuid=uuid, pk=seed)
    ).SerializeToString()


def register_peer(layout: SpreadLayout, k: int) -> bytes:
    return pb.RendezvousMessage(
        register_peer=pb.RegisterPeer(id=layout.peer_id(k), serial=SERIAL)
    ).SerializeToString()


class Sender:
    """One sender process: the IPs ``index, index + count, ...`` and all their peers."""

    def __init__(self, layout: SpreadLayout, index: int, count: int, server: tuple[str, int]):
        self.layout = layout
        self.server = server
        self.index, self.count = index, count
        per = layout.per_addr
        self.addrs = list(range(index, layout.addrs, count))
        self.socks: list[socket.socket] = []
        for _ in range(per):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            s.bind(("0.0.0.0", 0))
            s.setblocking(False)
            self.socks.append(s)
        self.slot_of_fd = {s.fileno(): j for j, s in enumerate(self.socks)}
        # local peer number m * per + j  <->  global peer (addrs[m]) * per + j
        self.peers = [
            a * per + j for a in self.addrs for j in range(per) if a * per + j < layout.peers
        ]
        n = len(self.peers)
        self.pkt = [
            [
                (
                    socket.IPPROTO_IP,
                    IP_PKTINFO,
                    PKTINFO.pack(0, socket.inet_aton(layout.addr_ip(a)), bytes(4)),
                )
            ]
            for a in self.addrs
        ]
        self.heartbeats = [register_peer(layout, k) for k in self.peers]
        self.confirmed = bytearray(n)
        self.waiting = bytearray(n)
        self.silenced = bytearray(n)
        self.seq = array("I", bytes(4 * n))
        self.online_at = array("d", bytes(8 * n))
        self.n_online = 0
        self._seq = 0
        self.counts: dict[str, int] = {}
        self.poller = select.epoll()
        for s in self.socks:
            self.poller.register(s.fileno(), select.EPOLLIN)
        # the periodic order: slot by slot over the IPs, so that consecutive sends come
        # from different IPs
        n_ips = len(self.addrs)
        self.order = [m * per + j for j in range(per) for m in range(n_ips) if m * per + j < n]

    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.socks]

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def _send(self, i: int, data: bytes) -> None:
        per = self.layout.per_addr
        try:
            self.socks[i % per].sendmsg([data], self.pkt[i // per], 0, self.server)
        except OSError:
            self._count("send_errors")

    def _local(self, fd: int, anc: list[tuple[int, int, bytes]]) -> int:
        a = SpreadLayout.addr_number(anc[0][2][8:12])
        return ((a - self.index) // self.count) * self.layout.per_addr + self.slot_of_fd[fd]

    def _request(
        self, i: int, now: float, outq: deque[tuple[float, int, int]], delay: float
    ) -> None:
        """Send peer i's current request and expect an answer within ``delay`` s."""
        if self.confirmed[i]:
            self._send(i, self.heartbeats[i])
            self._count("sent_heartbeats")
        else:
            self._send(i, register_pk(self.layout, self.peers[i]))
            self._count("sent_register_pk")
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self.seq[i] = self._seq
        self.waiting[i] = 1
        outq.append((now + delay, i, self._seq))

    def _drain(self) -> None:
        for s in self.socks:
            with contextlib.suppress(BlockingIOError):
                while True:
                    s.recv(64)

    # -- first registration -------------------------------------------------------------

    def register(self, window: int, deadline: float) -> dict[str, float]:
        """RegisterPk for every unconfirmed peer, at most ``window`` unanswered at once."""
        self._drain()
        started = time.monotonic()
        todo = deque(i for i in range(len(self.peers)) if not self.confirmed[i])
        outq: deque[tuple[float, int, int]] = deque()
        later: deque[tuple[float, int]] = deque()
        ok = too_frequent = other = 0
        active = 0
        socks = self.socks
        while (todo or active or later) and time.monotonic() < deadline:
            now = time.monotonic()
            while later and later[0][0] <= now:
                todo.appendleft(later.popleft()[1])
            while todo and active < window:
                i = todo.popleft()
                self._request(i, now, outq, REGISTER_RETRY)
                active += 1
            while outq and outq[0][0] <= now:
                _, i, seq = outq.popleft()
                if self.waiting[i] and self.seq[i] == seq:
                    self._count("resent")
                    self._request(i, now, outq, REGISTER_RETRY)
            for fd, _ in self.poller.poll(0.01):
                s = socks[self.slot_of_fd[fd]]
                while True:
                    try:
                        data, anc, _, _ = s.recvmsg(64, 64)
                    except BlockingIOError:
                        break
                    if not anc:
                        continue
                    i = self._local(fd, anc)
                    if not self.waiting[i] or self.confirmed[i]:
                        continue
                    self.waiting[i] = 0
                    active -= 1
                    if data == PK_OK:
                        self.confirmed[i] = 1
                        ok += 1
                    elif data.startswith(b"\x82\x01"):
                        msg = pb.RendezvousMessage()
                        msg.ParseFromString(data)
                        if msg.register_pk_response.result == pb.RegisterPkResponse.TOO_FREQUENT:
                            too_frequent += 1
                            later.append((now + TOO_FREQUENT_RETRY, i))
                        else:
                            other += 1
                    else:
                        other += 1
        return {
            "ok": ok,
            "too_frequent": too_frequent,
            "other": other,
            "unfinished": len(self.peers) - sum(self.confirmed),
            "elapsed": time.monotonic() - started,
        }

    # -- the client model ---------------------------------------------------------------

    def run(self, conn: Connection, start_at: float) -> None:
        """Heartbeat as clients do until ``stop`` comes through ``conn`` (see the module)."""
        self._drain()
        n = len(self.peers)
        rate = n / PERIOD
        outq: deque[tuple[float, int, int]] = deque()
        order, confirmed, waiting, silenced = (
            self.order,
            self.confirmed,
            self.waiting,
            self.silenced,
        )
        online_at = self.online_at
        socks = self.socks
        ctrl = conn.fileno()
        self.poller.register(ctrl, select.EPOLLIN)
        pos = 0
        sent = 0
        max_burst = max(16, int(rate * 0.002))
        while time.monotonic() < start_at:
            time.sleep(0.0005)
        start = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                due = int((now - start) * rate) - sent
                if due > 0:
                    due = min(due, max_burst)
                    for _ in range(due):
                        i = order[pos]
                        pos += 1
                        if pos == n:
                            pos = 0
                        if not silenced[i] and not waiting[i]:
                            self._request(i, now, outq, RETRY)
                    sent += due
                while outq and outq[0][0] <= now:
                    _, i, seq = outq.popleft()
                    if waiting[i] and self.seq[i] == seq and not silenced[i]:
                        self._count("retries")
                        self._request(i, now, outq, RETRY)
                for fd, _ in self.poller.poll(0 if due > 0 else min(0.001, 1 / rate)):
                    if fd == ctrl:
                        if not self._command(conn):
                            return
                        continue
                    s = socks[self.slot_of_fd[fd]]
                    while True:
                        try:
                            data, anc, _, _ = s.recvmsg(64, 64)
                        except BlockingIOError:
                            break
                        if not anc:
                            continue
                        i = self._local(fd, anc)
                        if not waiting[i]:
                            self._count("late_answers")
                            continue
                        waiting[i] = 0
                        if data == HB_OK:
                            self._count("hb_ok")
                            if not online_at[i]:
                                online_at[i] = now
                                self.n_online += 1
                        elif data == HB_REQUEST_PK:
                            self._count("hb_request_pk")
                            confirmed[i] = 0
                            self._request(i, now, outq, RETRY)  # RegisterPk at once
                        elif data == PK_OK:
                            self._count("pk_ok")
                            confirmed[i] = 1
                        else:
                            self._count("other_answers")
        finally:
            self.poller.unregister(ctrl)

    def _command(self, conn: Connection) -> bool:
        cmd, *args = conn.recv()
        if cmd == "reset":
            self.online_at[:] = array("d", bytes(8 * len(self.peers)))  # in place: run() holds it
            self.n_online = 0
            self.counts = {}
            conn.send(("reset", time.monotonic()))
        elif cmd == "silence":
            modulo, residue = args
            for i, k in enumerate(self.peers):
                if k % modulo == residue:
                    self.silenced[i] = 1
            conn.send(("silenced", sum(self.silenced)))
        elif cmd == "stats":
            conn.send(self.stats(with_times=bool(args and args[0])))
        elif cmd == "stop":
            conn.send(self.stats(with_times=False))
            return False
        return True

    def stats(self, with_times: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "online": self.n_online,
            "peers": len(self.peers) - sum(self.silenced),
            "counts": dict(self.counts),
        }
        if with_times:
            out["online_at"] = self.online_at.tobytes()
        return out

    def close(self) -> None:
        self.poller.close()
        for s in self.socks:
            s.close()


def sender_main(
    conn: Connection, layout: SpreadLayout, index: int, count: int, server: tuple[str, int]
) -> None:
    die_with_parent()
    sender = Sender(layout, index, count, server)
    conn.send(("ready", len(sender.peers)))
    try:
        while True:
            cmd, *args = conn.recv()
            if cmd == "register":
                conn.send(sender.register(*args))
            elif cmd == "run":
                sender.run(conn, *args)
            elif cmd == "confirm":  # registered already (a seeded database)
                sender.confirmed[:] = b"\x01" * len(sender.peers)
                conn.send(("confirmed", len(sender.peers)))
            elif cmd == "server":
                sender.server = args[0]
                conn.send(("server", args[0]))
            elif cmd == "quit":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        sender.close()
        conn.close()


class SpreadPool:
    """The sender processes; ``call`` fans a command out and gathers the replies."""

    def __init__(self, layout: SpreadLayout, count: int, server: tuple[str, int]) -> None:
        ctx = mp.get_context("fork")
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=sender_main,
                args=(child, layout, index, count, server),
                name=f"hbbs-spread-{index}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        self.sizes = [conn.recv()[1] for conn in self.conns]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def send(self, *cmd: object) -> None:
        for conn in self.conns:
            conn.send(cmd)

    def gather(self) -> list[Any]:
        return [conn.recv() for conn in self.conns]

    def call(self, *cmd: object) -> list[Any]:
        self.send(*cmd)
        return self.gather()

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
                conn.send(("quit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive() and proc.pid is not None:
                proc.kill()
                proc.join(5)
        for conn in self.conns:
            conn.close()
