"""Raw pass-through between two TCP sockets with ``os.splice`` (§2.3, §8.3).

Each direction moves bytes socket -> pipe -> socket inside the kernel, so relayed data is
never copied into Python objects (measured on this machine: about the CPU cost of a C
splice relay, half that of an asyncio copying relay). The pump is driven by the event
loop's ``add_reader``/``add_writer`` callbacks, which works with uvloop and the default
loop alike.

Per direction, at any moment the pump is in one of three states:

* **reading** (reader registered on the source): the pipe is empty and no pause is due;
* **writing** (writer registered on the destination): bytes are waiting in user space
  (``pending``: what was read before the switch to raw mode) or in the pipe; the source
  is not read meanwhile, which is the back-pressure;
* **paused**: the bandwidth limiter asked for a pause; a timer resumes reading.

Bytes read before the switch are sent first and the source is not read until they are
gone, so nothing is lost or reordered. End of stream on one side closes both sockets
once the bytes already taken from that side are delivered; any error closes both at once.
Every socket and pipe is closed on every path, exactly once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_splice = os.splice  # the hot path calls it twice per chunk: positional, looked up once
# Bigger pipes mean fewer system calls and loop wake-ups per GiB. Pages are only used
# while data is in flight, so an idle session costs nothing extra. An unprivileged process
# is held to fs.pipe-user-pages-soft (64 MiB of pipe capacity by default): past it the
# kernel refuses the enlargement (handled below) and hands out small pipes, which still
# relay correctly at a RustDesk session's rates, only with more system calls per GiB.
PIPE_SIZE = 1024 * 1024
# After a read that filled the chunk and was fully delivered, read again at once (up to
# this many times) rather than waiting for the next loop iteration: on a busy session
# that saves an epoll round trip per chunk, and the cap keeps other sessions served.
MAX_ROUNDS = 4


class Budget(Protocol):
    """The bandwidth limiter as the pump sees it (see :class:`SessionBudget`)."""

    chunk: int

    def consume(self, nbytes: int, now: float) -> float: ...


def make_pipe(size: int = PIPE_SIZE) -> tuple[int, int, int]:
    """A non-blocking pipe, enlarged to ``size`` when allowed; returns (r, w, capacity)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        capacity = fcntl.fcntl(w, _F_SETPIPE_SZ, size)
    except OSError:
        # EPERM beyond /proc/sys/fs/pipe-max-size or the per-user pipe quota: the
        # default pipe (64 KiB) still works, just with more system calls.
        capacity = 65536
    return r, w, capacity


class _Half:
    """One direction of the pump: ``src`` -> pipe -> ``dst``."""

    __slots__ = (
        "capacity",
        "dst",
        "eof",
        "in_pipe",
        "moved",
        "name",
        "pending",
        "pr",
        "pw",
        "reading",
        "resume",
        "src",
        "writing",
    )

    def __init__(self, name: str, src: int, dst: int, pending: bytes) -> None:
        self.name = name
        self.src = src
        self.dst = dst
        self.pending = memoryview(pending) if pending else None
        self.pr = -1
        self.pw = -1
        self.capacity = 0
        self.in_pipe = 0
        self.moved = 0
        self.eof = False
        self.reading = False
        self.writing = False
        self.resume: asyncio.TimerHandle | None = None


class SplicePump:
    """Relay between two connected, non-blocking TCP sockets until either side ends.

    The pump owns both sockets from :meth:`start` on. ``on_close(reason)`` is called once,
    after everything is closed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock_a: socket.socket,
        sock_b: socket.socket,
        budget: Budget,
        on_close: Callable[[str], None],
        pending_a_to_b: bytes = b"",
        pending_b_to_a: bytes = b"",
        pipe_size: int = PIPE_SIZE,
    ) -> None:
        self._loop = loop
        self._socks = (sock_a, sock_b)
        self._budget = budget
        # Bound once: the hot path calls both for every chunk.
        self._consume = budget.consume
        self._time = loop.time
        self._on_close = on_close
        self._pipe_size = pipe_size
        fa, fb = sock_a.fileno(), sock_b.fileno()
        self._ab = _Half("a->b", fa, fb, pending_a_to_b)
        self._ba = _Half("b->a", fb, fa, pending_b_to_a)
        self._resumes = 0
        self.closed = False
        self.close_reason = ""
        self.start_error: OSError | None = None
        """Why the pipes could not be made (descriptors ran out?), if they could not."""

    @property
    def bytes_a_to_b(self) -> int:
        return self._ab.moved

    @property
    def bytes_b_to_a(self) -> int:
        return self._ba.moved

    @property
    def activity(self) -> int:
        """Grows whenever anything moves (or a paused side resumes): the idle check's input."""
        return self._ab.moved + self._ba.moved + self._resumes

    def start(self) -> None:
        try:
            for h in (self._ab, self._ba):
                h.pr, h.pw, h.capacity = make_pipe(self._pipe_size)
        except OSError as e:
            self.start_error = e
            self.close(f"cannot create a pipe: {e.strerror}")
            return
        now = self._loop.time()
        for h in (self._ab, self._ba):
            if h.pending is not None:
                # Bytes read before the switch count against the limits like any others:
                # the source is read again only once the budget allows.
                delay = self._budget.consume(len(h.pending), now)
                if delay > 0:
                    h.resume = self._loop.call_later(delay, self._on_resume, h)
        for h in (self._ab, self._ba):
            self._update(h)
            if self.closed:
                return

    # -- registration ------------------------------------------------------------------

    def _update(self, h: _Half) -> None:
        """Register exactly the callbacks this half's state calls for."""
        if self.closed:
            return
        want_write = h.pending is not None or h.in_pipe > 0
        want_read = not want_write and not h.eof and h.resume is None
        if want_write != h.writing:
            if want_write:
                self._loop.add_writer(h.dst, self._on_writable, h)
            else:
                self._loop.remove_writer(h.dst)
            h.writing = want_write
        if want_read != h.reading:
            if want_read:
                self._loop.add_reader(h.src, self._on_readable, h)
            else:
                self._loop.remove_reader(h.src)
            h.reading = want_read
        if h.eof and not want_write:
            self.close(f"{h.name}: end of stream")

    # -- data movement -----------------------------------------------------------------

    def _flush(self, h: _Half) -> bool:
        """Move what this half holds to ``dst``; False if the session was closed."""
        if h.pending is not None:
            try:
                sent = os.write(h.dst, h.pending)
            except BlockingIOError:
                return True
            except OSError as e:
                self.close(f"{h.name}: write error: {e.strerror}")
                return False
            h.moved += sent
            h.pending = h.pending[sent:] if sent < len(h.pending) else None
            if h.pending is not None:
                return True
        while h.in_pipe:
            try:
                n = os.splice(h.pr, h.dst, h.in_pipe, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return True
            except OSError as e:
                self.close(f"{h.name}: write error: {e.strerror}")
                return False
            h.in_pipe -= n
            h.moved += n
        return True

    def _on_readable(self, h: _Half) -> None:
        # The hot path: one call per chunk of every session, so it is written for the
        # common case (one chunk in, the same chunk out, no pause due) with nothing but
        # the two splices, one limiter charge and a few int comparisons. A chunk is moved
        # through the pipe at once; the registrations change only when it could not all
        # be written, the source ended or the limiter asks for a pause.
        src, pw, pr, dst = h.src, h.pw, h.pr, h.dst
        chunk = self._budget.chunk
        want = chunk if chunk < h.capacity else h.capacity
        consume = self._consume
        delay = 0.0
        rounds = MAX_ROUNDS
        while rounds:
            rounds -= 1
            try:
                n = _splice(src, pw, want, None, None, SPLICE_FLAGS)
            except BlockingIOError:
                break
            except OSError as e:
                self.close(f"{h.name}: read error: {e.strerror}")
                return
            if not n:
                h.eof = True
                break
            delay = consume(n, self._time())
            try:
                out = _splice(pr, dst, n, None, None, SPLICE_FLAGS)
            except BlockingIOError:
                out = 0
            except OSError as e:
                self.close(f"{h.name}: write error: {e.strerror}")
                return
            h.moved += out
            if out < n:
                h.in_pipe = n - out  # the destination is full: wait for it to drain
                break
            if delay or n < want:
                break
        if delay > 0:
            h.resume = self._loop.call_later(delay, self._on_resume, h)
        elif not h.in_pipe and not h.eof:
            return  # still reading, nothing waiting: the registrations stand
        self._update(h)

    def _on_writable(self, h: _Half) -> None:
        if self._flush(h):
            self._update(h)

    def _on_resume(self, h: _Half) -> None:
        h.resume = None
        self._resumes += 1
        if not self.closed:
            self._update(h)

    # -- teardown ----------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Stop relaying and release every descriptor; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for h in (self._ab, self._ba):
            if h.reading:
                self._loop.remove_reader(h.src)
                h.reading = False
            if h.writing:
                self._loop.remove_writer(h.dst)
                h.writing = False
            if h.resume is not None:
                h.resume.cancel()
                h.resume = None
            for fd in (h.pr, h.pw):
                if fd >= 0:
                    os.close(fd)
            h.pr = h.pw = -1
            h.pending = None
        for sock in self._socks:
            sock.close()
        try:
            self._on_close(reason)
        except Exception:  # a bug in the owner must not leave the loop in a bad state
            log.exception("relay close callback failed")
