"""UDP load generator processes for the hbbs benchmark.

Peers are numbered 0..N-1 and spread over source addresses 127.16.0.1 and up, at most
``per_addr`` ids per address. Each sender process owns a share of the addresses, one UDP
socket per address (bound to it and connected to the server), and every datagram it will
send is encoded once up front: a RegisterPeer is a constant per id.

A sender is driven from the parent through a pipe with three commands:

* ``register(chunk, chunks)``: RegisterPk once per peer of that chunk, one request in
  flight per socket (as one client per address would), resent after a timeout;
* ``rate(per_second, duration, start_at)``: open-loop RegisterPeer heartbeats at a fixed
  rate, cycling over the peers; replies are counted, never waited for;
* ``stop``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import select
import socket
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from hbbs_procs import die_with_parent

from pyhbb.wire import rendezvous_pb2 as pb

PEER_OK = pb.RendezvousMessage(
    register_peer_response=pb.RegisterPeerResponse(request_pk=False)
).SerializeToString()
PK_OK = pb.RendezvousMessage(register_pk_response=pb.RegisterPkResponse()).SerializeToString()
TOO_FREQUENT = pb.RegisterPkResponse.TOO_FREQUENT

SERIAL = 3  # real clients report max(stored serial, 3)
REGISTER_TIMEOUT = 5.0
TOO_FREQUENT_RETRY = 2.0
CLIENT_RCVBUF = 1 << 20


@dataclass(frozen=True)
class Layout:
    """Which ids exist and which source address each one registers from."""

    peers: int
    per_addr: int
    first_id: int = 1_000_000_000
    first_addr: int = 0

    @property
    def addrs(self) -> int:
        return -(-self.peers // self.per_addr)

    def addr_numbers(self) -> range:
        return range(self.first_addr, self.first_addr + self.addrs)

    def peer_id(self, i: int) -> str:
        return str(self.first_id + i)

    @staticmethod
    def addr_ip(a: int) -> str:
        """127.16.0.1, 127.16.0.2, ... skipping .0 and .255 in the last octet."""
        hi, lo = divmod(a, 254)
        return f"127.{16 + hi // 256}.{hi % 256}.{lo + 1}"

    def addr_peers(self, a: int) -> range:
        k = a - self.first_addr
        return range(k * self.per_addr, min((k + 1) * self.per_addr, self.peers))


def register_pk(peer_id: str, i: int) -> bytes:
    uuid = f"bench-{i:08d}-0000-4000-8000-000000000000".encode()
    pk = i.to_bytes(8, "little") + os.urandom(24)
    return pb.RendezvousMessage(
        register_pk=pb.RegisterPk(id=peer_id, uuid=uuid, pk=pk)
    ).SerializeToString()


def register_peer(peer_id: str) -> bytes:
    return pb.RendezvousMessage(
        register_peer=pb.RegisterPeer(id=peer_id, serial=SERIAL)
    ).SerializeToString()


class Sender:
    """One sender process's sockets and pre-encoded datagrams."""

    def __init__(self, layout: Layout, index: int, count: int, server: tuple[str, int]) -> None:
        self.layout = layout
        self.socks: list[socket.socket] = []
        self.peers: list[list[int]] = []
        for a in layout.addr_numbers()[index::count]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
            s.bind((layout.addr_ip(a), 0))
            s.connect(server)
            s.setblocking(False)
            self.socks.append(s)
            self.peers.append(list(layout.addr_peers(a)))
        self.by_fd = {s.fileno(): k for k, s in enumerate(self.socks)}
        self.poller = select.epoll()
        for s in self.socks:
            self.poller.register(s.fileno(), select.EPOLLIN)
        # heartbeats interleaved over the sockets so that consecutive sends spread out
        self.heartbeats: list[tuple[Any, bytes]] = []
        longest = max((len(p) for p in self.peers), default=0)
        for j in range(longest):
            for k, peers in enumerate(self.peers):
                if j < len(peers):
                    pid = layout.peer_id(peers[j])
                    self.heartbeats.append((self.socks[k].send, register_peer(pid)))
        self.pos = 0

    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.socks]

    def _drain(self) -> None:
        for s in self.socks:
            try:
                while True:
                    s.recv(64)
            except BlockingIOError:
                pass

    # -- registration ---------------------------------------------------------------------

    def register(self, chunk: int, chunks: int, deadline: float) -> dict[str, float]:
        """RegisterPk every peer of ``chunk``: one outstanding request per socket; gives up
        at monotonic time ``deadline``."""
        self._drain()
        started = time.monotonic()
        cpu0 = time.process_time()
        todo: list[deque[int]] = []
        for peers in self.peers:
            n = len(peers)
            lo, hi = n * chunk // chunks, n * (chunk + 1) // chunks
            todo.append(deque(peers[lo:hi]))
        current: list[bytes | None] = [None] * len(self.socks)
        sent_at = [0.0] * len(self.socks)
        retry_at: list[float] = [0.0] * len(self.socks)
        ok = resent = too_frequent = refused = 0
        active = 0

        def send_next(k: int, now: float) -> None:
            nonlocal active
            q = todo[k]
            if not q:
                current[k] = None
                active -= 1
                return
            i = q.popleft()
            data = register_pk(self.layout.peer_id(i), i)
            current[k] = data
            sent_at[k] = now
            self.socks[k].send(data)

        now = time.monotonic()
        for k in range(len(self.socks)):
            active += 1
            send_next(k, now)
        last_check = now
        while active > 0:
            events = self.poller.poll(0.05)
            now = time.monotonic()
            if now > deadline:
                break
            for fd, _ in events:
                k = self.by_fd[fd]
                try:
                    reply = self.socks[k].recv(64)
                except BlockingIOError:
                    continue
                if current[k] is None:
                    continue
                if reply == PK_OK:
                    ok += 1
                    send_next(k, now)
                    continue
                msg = pb.RendezvousMessage()
                msg.ParseFromString(reply)
                if msg.WhichOneof("union") != "register_pk_response":
                    continue
                if msg.register_pk_response.result == TOO_FREQUENT:
                    too_frequent += 1
                    retry_at[k] = now + TOO_FREQUENT_RETRY
                    sent_at[k] = now + TOO_FREQUENT_RETRY  # no timeout before the retry
                else:
                    refused += 1
                    send_next(k, now)
            if now - last_check > 0.2:
                last_check = now
                for k, data in enumerate(current):
                    if data is None:
                        continue
                    if (retry_at[k] and now >= retry_at[k]) or now - sent_at[k] > REGISTER_TIMEOUT:
                        retry_at[k] = 0.0
                        sent_at[k] = now
                        resent += 1
                        self.socks[k].send(data)
        return {
            "ok": ok,
            "resent": resent,
            "too_frequent": too_frequent,
            "refused": refused,
            "unfinished": sum(len(q) for q in todo) + sum(c is not None for c in current),
            "elapsed": time.monotonic() - started,
            "cpu": time.process_time() - cpu0,
        }

    # -- heartbeats -----------------------------------------------------------------------

    def rate(self, per_second: float, duration: float, start_at: float) -> dict[str, float]:
        """Open-loop RegisterPeer at ``per_second`` for ``duration`` s from ``start_at``."""
        self._drain()
        items = self.heartbeats
        n_items = len(items)
        socks = self.socks
        recv_of = {s.fileno(): s.recv for s in socks}
        poll = self.poller.poll
        pos = self.pos
        sent = got_ok = got_other = errors = 0
        max_burst = max(16, int(per_second * 0.002))
        tick = min(0.001, 16 / per_second)
        while time.monotonic() < start_at:
            time.sleep(0.0005)
        cpu0 = time.process_time()
        start = time.monotonic()
        end = start + duration
        now = start
        while now < end:
            due = int((now - start) * per_second) - sent
            if due > 0:
                if due > max_burst:
                    due = max_burst
                for _ in range(due):
                    send, data = items[pos]
                    try:
                        send(data)
                    except OSError:
                        errors += 1
                    pos += 1
                    if pos == n_items:
                        pos = 0
                sent += due
                events = poll(0)
            else:
                events = poll(tick)
            for fd, _ in events:
                try:
                    reply = recv_of[fd](64)
                except BlockingIOError:
                    continue
                if reply == PEER_OK:
                    got_ok += 1
                else:
                    got_other += 1
            now = time.monotonic()
        send_time = now - start
        cpu = time.process_time() - cpu0
        # replies still in flight: wait a little, sending nothing
        grace_end = now + 0.3
        while now < grace_end and got_ok + got_other < sent - errors:
            for fd, _ in poll(0.01):
                try:
                    reply = recv_of[fd](64)
                except BlockingIOError:
                    continue
                if reply == PEER_OK:
                    got_ok += 1
                else:
                    got_other += 1
            now = time.monotonic()
        self.pos = pos
        return {
            "sent": sent,
            "ok": got_ok,
            "other": got_other,
            "errors": errors,
            "send_time": send_time,
            "cpu": cpu,
        }

    def close(self) -> None:
        self.poller.close()
        for s in self.socks:
            s.close()


def sender_main(
    conn: Connection, layout: Layout, index: int, count: int, server: tuple[str, int]
) -> None:
    die_with_parent()
    sender = Sender(layout, index, count, server)
    conn.send(("ready", sender.ports()))
    try:
        while True:
            cmd, *args = conn.recv()
            if cmd == "register":
                conn.send(sender.register(*args))
            elif cmd == "rate":
                conn.send(sender.rate(*args))
            elif cmd == "stop":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        sender.close()
        conn.close()


class SenderPool:
    """The sender processes; every call fans a command out and gathers the replies."""

    def __init__(self, layout: Layout, count: int, server: tuple[str, int]) -> None:
        ctx = mp.get_context("fork")
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        self.ports: list[int] = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=sender_main,
                args=(child, layout, index, count, server),
                name=f"hbbs-sender-{index}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        for conn in self.conns:
            tag, ports = conn.recv()
            assert tag == "ready"
            self.ports.extend(ports)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def call(self, *cmd: object) -> list[dict[str, float]]:
        for conn in self.conns:
            conn.send(cmd)
        return [conn.recv() for conn in self.conns]

    def send(self, *cmd: object) -> None:
        for conn in self.conns:
            conn.send(cmd)

    def gather(self) -> list[dict[str, float]]:
        return [conn.recv() for conn in self.conns]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive() and proc.pid is not None:
                proc.kill()
                proc.join(5)
        for conn in self.conns:
            conn.close()
