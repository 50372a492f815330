"""Serving the API: uvicorn with uvloop and httptools on our own listening socket.

The socket is made as hbbs makes its own (dual stack without a bind address, a clear
error when the port is taken), then handed to uvicorn. Proxy headers are not left to
uvicorn: the API believes them only from ``--trusted-proxies`` (context.client_ip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from types import FrameType

import uvicorn

from pyhbb.api.app import build_app
from pyhbb.api.options import ApiOptions
from pyhbb.api.passwords import Passwords
from pyhbb.net.sockets import tcp_listener
from pyhbb.observability.endpoint import metrics_socket

log = logging.getLogger("pyhbb.api")

KEEP_ALIVE = 5  # seconds an idle client connection stays open (the client opens new ones)


class ApiServer(uvicorn.Server):
    """uvicorn's server, minus two habits: after a graceful stop on SIGTERM it raises the
    signal again (the process would die of it instead of exiting 0 like hbbs and hbbr),
    and it takes over the signals of an embedding program (``signals=False``: tests)."""

    def __init__(self, config: uvicorn.Config, signals: bool = True) -> None:
        super().__init__(config)
        self._signals = signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._signals:
            yield
            return
        with super().capture_signals():
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # stopped on purpose: nothing to re-raise


def uvicorn_config(
    options: ApiOptions,
    passwords: Passwords | None = None,
    metrics_socket: socket.socket | None = None,
) -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:  # pragma: no cover
        http = "h11"
    return uvicorn.Config(
        build_app(options, passwords=passwords, metrics_socket=metrics_socket),
        loop=loop,
        http=http,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE,
    )


def run(options: ApiOptions) -> int:
    sock = tcp_listener(options.bind, options.port)
    try:
        metrics = metrics_socket(options.metrics) if options.metrics is not None else None
    except OSError:
        sock.close()
        raise
    where = sock.getsockname()
    log.info("API server listening on TCP %s port %d", where[0], where[1])
    server = ApiServer(uvicorn_config(options, metrics_socket=metrics))
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(server.serve(sockets=[sock]))
    return 0 if server.started else 1
