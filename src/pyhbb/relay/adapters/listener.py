"""Accepting connections on a listening socket from the event loop's reader callback.

Accepting here (rather than with ``loop.create_server``) lets hbbr refuse a connection
(blocklist, handshake bounds) before a transport is built for it, and handle a full
descriptor table itself: it pauses accepting for a moment and says which limit to
raise, where uvloop would silently reset the connections and the default loop would
log a traceback each time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from pyhbb.net.sockets import set_nodelay
from pyhbb.observability.throttle import worth_logging
from pyhbb.wire.addr_mangle import Addr, normalize

log = logging.getLogger("pyhbb.relay")

ACCEPT_BATCH = 64
ACCEPT_PAUSE = 0.5  # after EMFILE & co., so a full fd table does not spin the loop
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)


class Listener:
    """Accepts on ``sock`` and hands each new non-blocking socket to ``on_accept``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_accept: Callable[[socket.socket, Addr], None],
        name: str,
        out_of_fds: Callable[[str], None] | None = None,
    ) -> None:
        """``out_of_fds(detail)``: says (throttled) that descriptors ran out."""
        self._loop = loop
        self._sock = sock
        self._on_accept = on_accept
        self.name = name
        self._out_of_fds = out_of_fds
        self.failures = 0
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def accepting(self) -> bool:
        """Open and not paused for want of descriptors (for the health check)."""
        return not self._closed and self._resume is None

    def start(self) -> None:
        self._resume = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    self.failures += 1
                    if self._out_of_fds is not None and e.errno in _OUT_OF_FDS:
                        self._out_of_fds(f"cannot accept {self.name} connections")
                    elif worth_logging(self.failures):
                        log.warning(
                            "cannot accept %s connections: %s; pausing %g s (raise the "
                            "open-files limit: LimitNOFILE= in the systemd unit, or ulimit "
                            "-n; %d times so far)",
                            self.name,
                            e.strerror,
                            ACCEPT_PAUSE,
                            self.failures,
                        )
                    self._loop.remove_reader(self._sock.fileno())
                    self._resume = self._loop.call_later(ACCEPT_PAUSE, self.start)
                return  # ECONNABORTED and the like: the client is gone
            sock.setblocking(False)
            set_nodelay(sock)
            self._on_accept(sock, normalize(peer))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
