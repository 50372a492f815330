"""Restart in place, the I/O side: SIGUSR2, the sockets kept across ``exec``, the snapshot
file (its format: rendezvous/handover.py).

nginx, HAProxy and Envoy upgrade this way: the running process hands its listening
sockets to the new code, so the kernel keeps queueing datagrams and connections during
the gap and no client sees an outage. hbbs execs itself (same PID, so it works under
``pyhbb run``, systemd and as a container's PID 1); every descriptor except the four
listeners is closed by the exec (Python opens them close-on-exec), so TCP and WebSocket
clients reconnect as after any restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhbb.rendezvous.handover import (
    ENV_VAR,
    SOCKET_ROLES,
    HandoverEnvError,
    decode_fds,
    encode_fds,
)

log = logging.getLogger("pyhbb.rendezvous")

SNAPSHOT_SUFFIX = ".handover"
DRAIN_TIMEOUT = 5.0
"""Seconds the database writes in flight may take before the exec goes ahead anyway: a
write not finished by then was never acknowledged, and its client sends it again."""


@dataclass
class Inherited:
    """What the previous process left: its listeners' descriptors, by role
    (:data:`SOCKET_ROLES`), and the wall-clock time it stopped reading."""

    fds: dict[str, int]
    paused_at: float


def take_inherited(environ: dict[str, str] | os._Environ[str]) -> Inherited | None:
    """The hand-over variable, removed from ``environ`` so that no child inherits it; a
    malformed one is reported and ignored (hbbs then binds as usual)."""
    value = environ.pop(ENV_VAR, None)
    if value is None:
        return None
    try:
        fds, paused_at = decode_fds(value)
    except HandoverEnvError as e:
        log.warning("restart in place: ignoring %s=%r (%s); binding as usual", ENV_VAR, value, e)
        return None
    return Inherited(fds, paused_at)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection while a snapshot's million-item lists are built: each young
    collection would walk them whole (decoding 1M records took 7.6 s with it, 3.9 s
    without). Nothing of what is built forms a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def snapshot_path(db_path: str) -> Path:
    """Beside the database: same directory, same permissions story."""
    return Path(db_path + SNAPSHOT_SUFFIX)


def write_snapshot(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, replacing any older file at once. No
    fsync: the reader is the same machine a second later, not a reboot away."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_snapshot(path: Path, max_bytes: int) -> bytes:
    """The snapshot's bytes, then the file is deleted (used once, good or bad). Raises
    OSError, or ValueError when the file is larger than any valid one."""
    try:
        # non-blocking: a FIFO put in its place must not hang the start
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            if info.st_size > max_bytes:
                raise ValueError(f"{info.st_size} bytes, more than a full table's {max_bytes}")
            return f.read(max_bytes + 1)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


class SocketSender(asyncio.DatagramTransport):
    """Sends from a plain non-blocking UDP socket: the answers of the database work that
    finishes after reading stopped (uvloop's UDP transport cannot pause reading, so it
    is closed and the kernel queues what arrives meanwhile)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def sendto(self, data: Any, addr: Any = None) -> None:
        with contextlib.suppress(OSError):  # a full buffer: the client asks again
            self._sock.sendto(data, addr)

    def is_closing(self) -> bool:
        return False


class RestartInPlace:
    """SIGUSR2: check the configuration again, then have the server hand over and exec.

    ``check_config`` parses the options as at start and raises what the start would
    (a bad edit then leaves the running server as it is)."""

    def __init__(self, check_config: Callable[[], object], inherited: Inherited | None) -> None:
        self._check_config = check_config
        self.inherited = inherited
        """What the previous process left (None: an ordinary start)."""
        self._begin: Callable[[], None] | None = None
        self._sockets: Mapping[str, socket.socket] = {}
        self._cluster = False
        self.accepted = False
        """A hand-over is under way: the server stops and :meth:`exec` follows."""
        self.kept: dict[str, int] = {}
        """Duplicates of the listeners' descriptors, by role, inheritable by the exec."""
        self._sender: socket.socket | None = None
        self.paused_at = 0.0

    def attach(
        self, begin: Callable[[], None], sockets: Mapping[str, socket.socket], cluster: bool
    ) -> None:
        """The running server's way to begin a hand-over (once it serves), and its
        listeners by role (:data:`SOCKET_ROLES`)."""
        self._begin = begin
        self._sockets = sockets
        self._cluster = cluster

    def on_signal(self) -> None:
        if self.accepted:
            log.warning("SIGUSR2 ignored: a restart in place is already under way")
            return
        if self._begin is None:
            log.warning("SIGUSR2 ignored: hbbs is still starting; send it again once it serves")
            return
        if self._cluster:
            log.warning(
                "SIGUSR2 ignored: restart in place is not supported in cluster mode (the "
                "nodes share the peers: restart one node at a time); still running"
            )
            return
        try:
            self._check_config()
        except Exception as e:  # ConfigError, a key problem: whatever the start would refuse
            log.error("restart in place refused: %s; still running with the old configuration", e)
            return
        try:
            self._keep(self._sockets)
        except OSError as e:  # out of descriptors: stopping now would be an outage
            log.error(
                "restart in place refused: cannot keep the listening sockets (%s); still running",
                e,
            )
            return
        log.info("SIGUSR2: restarting in place (sockets and peer table handed over)")
        self.accepted = True
        self._begin()

    def _keep(self, sockets: Mapping[str, socket.socket]) -> None:
        """Duplicate the listeners' descriptors so that they outlive the event loop and
        the exec, and one more of the UDP socket to send the last answers; before the
        server stops, so that a failure leaves it serving."""
        kept: dict[str, int] = {}
        try:
            for role in SOCKET_ROLES:
                kept[role] = os.dup(sockets[role].fileno())
                os.set_inheritable(kept[role], True)
            sender = socket.socket(fileno=os.dup(kept["udp"]))
        except OSError:
            for fd in kept.values():
                os.close(fd)
            raise
        sender.setblocking(False)
        self.kept, self._sender = kept, sender

    def reading_stopped(self) -> socket.socket:
        """Note when reading stopped (the gap starts); the socket to send the answers
        of the database work still in flight."""
        assert self._sender is not None, "only after a hand-over was accepted"
        self.paused_at = time.time()
        return self._sender

    def exec(self) -> int:
        """Replace this process with hbbs started the same way, the kept sockets named
        in :data:`~pyhbb.rendezvous.handover.ENV_VAR`. Returns (status 1) only on failure."""
        env = dict(os.environ)
        env[ENV_VAR] = encode_fds(self.kept, self.paused_at)
        program, argv = own_command()
        # ignored, not fatal (the default), until the new process's loop handles it: an
        # ignored signal stays ignored across exec
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(program, argv, env)
        except OSError as e:
            log.error("restart in place failed: cannot run %s: %s; exiting", program, e)
        for fd in self.kept.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        return 1


def own_command() -> tuple[str, list[str]]:
    """How this process was started: the program to exec and its argv. A console script
    (``.venv/bin/hbbs``) is run again by its own path, so the process keeps its name for
    ``pidof`` and supervisors, when its ``#!`` line names this interpreter; anything
    else (``python -m ...``, a script run by ``python``) by the interpreter."""
    script = sys.argv[0]
    if sys.orig_argv[1:2] == [script] and os.access(script, os.X_OK):
        try:
            with open(script, "rb") as f:
                first = f.readline(4096)
        except OSError:
            first = b""
        interpreter = first[2:].strip().split(b" ")[0] if first.startswith(b"#!") else b""
        if interpreter and os.path.realpath(interpreter) == os.fsencode(
            os.path.realpath(sys.executable)
        ):
            return script, sys.orig_argv[1:]
    return sys.executable, [sys.executable, *sys.orig_argv[1:]]
