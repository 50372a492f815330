"""Run hbbr inside an existing event loop: for the CLI, ``pyhbb run`` and tests."""

from __future__ import annotations

import asyncio
import logging
import time

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.relay.server import RelayServer
from pyhbb.wire.keys import SECRET_FILE, resolve_hbbr_key

log = logging.getLogger("pyhbb.relay")

KEY_FILE_WAIT = 0.3  # §5.1: give a co-started hbbs the chance to create the key first


def resolve_licence_key(opts: HbbrOptions) -> str:
    """The licence key hbbr enforces (§5.2); blocking (may sleep 300 ms, write files).

    Raises :class:`pyhbb.wire.keys.KeyError_` for an unusable key file.
    """
    if opts.key in ("-", "_") and not (opts.workdir / SECRET_FILE).exists():
        time.sleep(KEY_FILE_WAIT)
    return resolve_hbbr_key(opts.key, opts.workdir)


def describe(opts: HbbrOptions, licence_key: str) -> str:
    where = opts.bind or "all addresses"
    key = f"key {licence_key}" if licence_key else "no key (anyone may relay; consider -k -)"
    return (
        f"hbbr listening on TCP port {opts.port} and WebSocket port {opts.ws_port} ({where}); {key}"
    )


async def serve(opts: HbbrOptions, stop: asyncio.Event, licence_key: str | None = None) -> None:
    """Serve until ``stop`` is set. ``licence_key=None`` resolves ``opts.key`` first.

    Raises :class:`pyhbb.net.sockets.BindError` if a port cannot be bound.
    """
    if licence_key is None:
        licence_key = await asyncio.to_thread(resolve_licence_key, opts)
    server = RelayServer(opts, licence_key)
    await server.start()
    log.info("%s", describe(opts, licence_key))
    try:
        await stop.wait()
    finally:
        await server.close()
        log.info("hbbr stopped")
