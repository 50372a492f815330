"""hbbs, hbbr and the API server (with the console) in-process on loopback, together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.net.fd_limit import raise_fd_limit
from pyhbb.relay.server import RelayServer
from tests.api.support import RunningApi, running_api
from tests.relay.conftest import FAST
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.ports import free_base_port


@dataclasses.dataclass
class Stack:
    hbbs: RunningHbbs
    relay: RelayServer
    api: RunningApi


@contextlib.asynccontextmanager
async def running_relay(workdir: Path) -> AsyncIterator[RelayServer]:
    raise_fd_limit()
    for _ in range(5):
        opts = dataclasses.replace(
            HbbrOptions(), port=free_base_port((0, 2)), workdir=workdir, **FAST
        )
        server = RelayServer(opts, "")
        try:
            await server.start()
        except OSError:
            continue
        try:
            yield server
        finally:
            await asyncio.wait_for(server.close(), 20)
        return
    raise RuntimeError("could not bind hbbr")


@contextlib.asynccontextmanager
async def running_stack(workdir: Path, **api_overrides: Any) -> AsyncIterator[Stack]:
    async with running_hbbs(workdir) as hbbs, running_relay(workdir) as relay:
        overrides: dict[str, Any] = {
            "hbbs_port": hbbs.opts.nat_port,
            "hbbr_port": relay.opts.port,
        }
        overrides.update(api_overrides)
        async with running_api(workdir, **overrides) as api:
            yield Stack(hbbs, relay, api)
