"""The ``hbbr`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from pyhbb.config.hbbr import HbbrOptions, parse_options
from pyhbb.config.sources import ConfigError
from pyhbb.net.sockets import BindError
from pyhbb.observability.logs import setup_logging
from pyhbb.relay.app import resolve_licence_key, serve
from pyhbb.wire.keys import KeyError_


async def _run(opts: HbbrOptions, licence_key: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(opts, stop, licence_key)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 = configuration error)."""
    try:
        opts = parse_options(argv, os.environ, Path.cwd())
    except ConfigError as e:
        print(f"hbbr: {e}", file=sys.stderr)
        return 2
    setup_logging(opts.rust_log)
    try:
        licence_key = resolve_licence_key(opts)
    except KeyError_ as e:
        print(f"hbbr: {e}", file=sys.stderr)
        return 2
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(_run(opts, licence_key))
        else:
            uvloop.run(_run(opts, licence_key))
    except BindError as e:
        print(f"hbbr: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
