"""The C load generator (``hbbs_spread_gen.c``) behind the interface of
:class:`hbbs_spread.SpreadPool`, and a database seeded with the peers it plays.

Two Python sender processes could not play a million clients on this 2-core machine (their
receive queues overflowed during a restart: bench/RESULTS.md); the C program plays the same
client model (hbbs_spread.py's docstring) with sendmmsg/recvmmsg in one process. Python
hands it the messages as templates: peer 0's RegisterPeer and RegisterPk and the offsets of
the parts that differ between peers (id digits, uuid digits, key), which the C program
overwrites for peer k; the keys come in a file, 32 bytes per peer.

:func:`seed_database` writes the same peers into ``db_v2.sqlite3`` (the official ``peer``
table, created by pyhbb's store) as if each had registered from its own address, so that
layouts whose registration would take half an hour under the RegisterPk budgets (250 peers
per IP) start heartbeating at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbbs_procs import die_with_parent
from hbbs_spread import PERIOD, SpreadLayout, register_peer, register_pk, register_pk_key

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "hbbs_spread_gen.c"
K_DIGITS = 9  # register_pk's uuid holds k as 9 digits
KEY_BYTES = 32


@dataclass(frozen=True)
class Template:
    """A message of peer 0 and where peer k's id digits, k digits and key go (-1: absent)."""

    data: bytes
    id_off: int
    k_off: int
    pk_off: int

    def offsets(self) -> str:
        return f"{self.id_off},{self.k_off},{self.pk_off}"

    def splice(self, layout: SpreadLayout, k: int, key: bytes) -> bytes:
        """Peer k's message, as the C program builds it."""
        out = bytearray(self.data)
        if self.id_off >= 0:
            pid = layout.peer_id(k).encode()
            out[self.id_off : self.id_off + len(pid)] = pid
        if self.k_off >= 0:
            out[self.k_off : self.k_off + K_DIGITS] = f"{k:0{K_DIGITS}d}".encode()
        if self.pk_off >= 0:
            out[self.pk_off : self.pk_off + KEY_BYTES] = key
        return bytes(out)


def templates(layout: SpreadLayout) -> tuple[Template, Template]:
    """The RegisterPeer and RegisterPk templates for ``layout``: every peer's id must have
    the digits of peer 0's (the C program writes a fixed width)."""
    last = layout.peers - 1
    if len(layout.peer_id(last)) != len(layout.peer_id(0)) or last >= 10**K_DIGITS:
        raise ValueError("ids of this layout differ in length: lower peers or first_id")
    pid = layout.peer_id(0).encode()
    hb = register_peer(layout, 0)
    pk = register_pk(layout, 0)
    key = register_pk_key(0)
    uuid_digits = b"spread-" + b"0" * K_DIGITS
    return (
        Template(hb, hb.index(pid), -1, -1),
        Template(pk, pk.index(pid), pk.index(uuid_digits) + len(b"spread-"), pk.index(key)),
    )


def build_generator(out_dir: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("gcc is needed for --generator c (apt-get install gcc)")
    exe = out_dir / "hbbs_spread_gen"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(SOURCE)], check=True)
    return exe


class CSpreadPool:
    """One C generator process playing every peer of ``layout``; the commands and replies
    of :class:`hbbs_spread.SpreadPool` (``call`` answers a list of one reply).

    ``confirmed``: the peers are registered already (seeded, or registered by the Python
    pool), so each starts with RegisterPeer rather than RegisterPk.
    """

    def __init__(
        self,
        layout: SpreadLayout,
        server: tuple[str, int],
        confirmed: bool,
        exe: Path,
        period: float = PERIOD,
    ) -> None:
        self.layout = layout
        self.tmp = Path(tempfile.mkdtemp(prefix="hbbs_spread_gen_"))
        keys = self.tmp / "keys"
        with open(keys, "wb") as f:
            for k in range(layout.peers):
                f.write(register_pk_key(k))
        hb, pk = templates(layout)
        argv = [
            str(exe),
            server[0],
            str(server[1]),
            str(layout.peers),
            str(layout.per_addr),
            str(layout.first_id),
            str(len(layout.peer_id(0))),
            str(K_DIGITS),
            hb.data.hex(),
            hb.offsets(),
            pk.data.hex(),
            pk.offsets(),
            str(keys),
            "1" if confirmed else "0",
            repr(period),
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        ready = self._line()
        if not ready.startswith("ready"):
            raise RuntimeError(f"the C generator did not start: {ready!r}")
        self.sizes = [int(ready.split()[1])]
        self.ports = [int(p) for p in ready.split()[2:]]
        """The generator's UDP ports (one per socket slot): for its kernel drop counts."""

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the C generator exited (status {self.proc.poll()})")
        return line.strip()

    def _write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def send(self, *cmd: object) -> None:
        name, *args = cmd
        self._pending = name
        if name == "run":
            self._write(f"run {float(args[0])!r}")
        elif name == "stats" and args and args[0]:
            self._write(f"times {self.tmp / 'times'}")
            self._write("stats")
        elif name == "silence":
            self._write(f"silence {int(args[0])} {int(args[1])}")  # type: ignore[call-overload]
        elif name in ("reset", "stats", "stop"):
            self._write(str(name))
        else:
            raise ValueError(f"the C generator has no command {name!r}")

    def gather(self) -> list[Any]:
        name = self._pending
        line = self._line()
        if name == "run":
            return [line]
        if name == "reset":
            return [("reset", float(line.split()[1]))]
        if name == "silence":
            return [("silenced", int(line.split()[1]))]
        if line == "times":
            stats = json.loads(self._line())
            times = array("d")
            times.frombytes((self.tmp / "times").read_bytes())
            stats["online_at"] = times.tobytes()
            return [stats]
        return [json.loads(line)]

    def call(self, *cmd: object) -> list[Any]:
        self.send(*cmd)
        return self.gather()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._write("stop")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def peer_guid(k: int) -> bytes:
    """A 16-byte guid per peer, spread over the key space as random uuids are."""
    return hashlib.blake2b(k.to_bytes(8, "little"), digest_size=16, person=b"guid").digest()


Row = tuple[bytes, str, bytes, bytes, str]


def seed_rows(layout: SpreadLayout, start: int, stop: int) -> list[Row]:
    """``(guid, id, uuid, pk, info)`` of peers ``start`` .. ``stop - 1``: what hbbs stores
    when each registered from its own address (``info`` as pyhbb's store writes it)."""
    from pyhbb.store.peers import info_json

    out = []
    for k in range(start, stop):
        uuid = f"spread-{k:09d}-0000-4000-8000-00000000".encode()
        ip = layout.addr_ip(k // layout.per_addr)
        out.append((peer_guid(k), layout.peer_id(k), uuid, register_pk_key(k), info_json(ip)))
    return out


def seed_database(path: Path, layout: SpreadLayout, chunk: int = 50_000) -> None:
    """Create ``path`` with pyhbb's schema and write every peer of ``layout`` into it."""
    from pyhbb.store.database import SqliteDatabase

    async def create() -> None:
        db = await SqliteDatabase.open(str(path))
        await db.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("pragma synchronous = off")  # one file, written once, closed cleanly
        conn.execute("begin")
        for start in range(0, layout.peers, chunk):
            conn.executemany(
                "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
                seed_rows(layout, start, min(layout.peers, start + chunk)),
            )
        conn.execute("commit")
    finally:
        conn.close()
