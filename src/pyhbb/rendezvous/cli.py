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
from pyhbb.rendezvous.adapters.restart import Inherited, RestartInPlace, take_inherited
from pyhbb.rendezvous.app import check_options, serve
from pyhbb.store.base import StoreError
from pyhbb.wire.keys import KeyError_


async def _run(opts: HbbsOptions, restart: RestartInPlace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # SIGUSR2 = restart in place, nginx's signal for a binary upgrade
    loop.add_signal_handler(signal.SIGUSR2, restart.on_signal)
    status = await serve(opts, stop, restart=restart)
    if stop.is_set():  # SIGTERM during a hand-over: stop, do not start again
        restart.accepted = False
    return status


def _restart_in_place(argv: list[str] | None, inherited: Inherited | None) -> RestartInPlace:
    def check_config() -> None:
        check_options(parse_hbbs_options(argv, os.environ, Path.cwd()))

    return RestartInPlace(check_config, inherited)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 = configuration error, 1 = runtime failure)."""
    # SIGUSR2 (restart in place) would end the process until the loop handles it
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        opts = parse_hbbs_options(argv, os.environ, Path.cwd())
    except ConfigError as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 2
    setup_logging(opts.rust_log)
    restart = _restart_in_place(argv, take_inherited(os.environ))
    try:
        try:
            import uvloop
        except ImportError:
            status = asyncio.run(_run(opts, restart))
        else:
            status = uvloop.run(_run(opts, restart))
        return restart.exec() if restart.accepted else status
    except KeyError_ as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 2
    except (BindError, StoreError) as e:
        print(f"hbbs: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
