"""Process and kernel bookkeeping for the hbbs benchmark: ports, children, /proc readings.

Everything here is Linux-specific (``/proc``) and loopback-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """Have the kernel SIGTERM the calling process when its parent dies (Linux prctl), so
    that no child of the benchmark outlives it, even after a ``kill -9``."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET6, kind)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port_block(tries: int = 200) -> int:
    """A base port P with P-1 .. P+2 free for TCP and UDP (hbbs uses P-1, P, P+2)."""
    for _ in range(tries):
        base = random.randrange(20_000, 30_000)
        if all(_port_free(base + off) for off in (-1, 0, 1, 2)):
            return base
    raise RuntimeError("no free block of ports found")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every thread of ``pid`` so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    user, system = cpu_split(pid)
    return user + system


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on every UDP socket bound to local ``port``."""
    return udp_drops_of({port})


def udp_drops_of(ports: Collection[int]) -> int:
    """Datagrams the kernel dropped on every UDP socket bound to one of local ``ports``."""
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) in ports:
                    total += int(cols[-1])
    return total


def udp_rcvbuf_errors() -> int:
    """System-wide UDP receive-buffer errors (/proc/net/snmp), client and server alike."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    heads = [ln for ln in lines if ln.startswith("Udp:")]
    names, values = heads[0].split()[1:], heads[1].split()[1:]
    return int(dict(zip(names, values, strict=True)).get("RcvbufErrors", "0"))


@dataclass
class Child:
    """A child process this benchmark started; stopped by its PID only."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_child(
    name: str,
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start ``argv`` in ``cwd`` with stdout and stderr going to ``cwd/<name>.log``."""
    log_path = cwd / f"{name}.log"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    return Child(name, proc, log_path)


def wait_udp_answer(port: int, probe: bytes, child: Child, timeout: float = 30.0) -> None:
    """Wait until a UDP server on loopback ``port`` answers ``probe``."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
            s.sendto(probe, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                s.recvfrom(256)
                return
    raise RuntimeError(f"{child.name} did not answer on UDP {port}:\n{child.log_tail()}")


def wait_tcp_listening(port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} is not listening on TCP {port}:\n{child.log_tail()}")
