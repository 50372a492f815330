"""The ``hbbs`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from pyhbb.config.hbbs import HbbsOptions, parse_hbbs_options
from pyhbb.config.sources import ConfigError
from pyhbb.net.sockets import BindError
from pyhbb.observability.logs import setup_logging
from pyhbb.rendezvous.app import serve
from pyhbb.store.base import StoreError
from pyhbb.wire.keys import KeyError_


async def _run(opts: HbbsOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await serve(opts, stop)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 = configuration error, 1 = runtime failure)."""
    try:
        opts = parse_hbbs_options(argv, os.environ, Path.cwd())
    except ConfigError as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 2
    setup_logging(opts.rust_log)
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(_run(opts))
        return uvloop.run(_run(opts))
    except KeyError_ as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 2
    except (BindError, StoreError) as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
