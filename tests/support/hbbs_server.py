"""Run a real hbbs in-process on free loopback ports, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from pyhbb.config.hbbs import HbbsOptions
from pyhbb.rendezvous.app import HbbsServer, serve
from tests.support.ports import free_base_port


@dataclasses.dataclass
class RunningHbbs:
    server: HbbsServer
    opts: HbbsOptions

    @property
    def udp(self) -> tuple[str, int]:
        return ("127.0.0.1", self.opts.port)

    tcp = udp

    @property
    def nat(self) -> tuple[str, int]:
        return ("127.0.0.1", self.opts.nat_port)

    @property
    def ws(self) -> tuple[str, int]:
        return ("127.0.0.1", self.opts.ws_port)

    @property
    def public_key(self) -> str:
        return self.server.key.public_b64


@contextlib.asynccontextmanager
async def running_hbbs(workdir: Path, **overrides: object) -> AsyncIterator[RunningHbbs]:
    """Start hbbs in ``workdir`` (keys and database there) and stop it cleanly after."""
    fields: dict[str, object] = {"port": free_base_port(), "workdir": workdir, "test_hbbs": "no"}
    fields.update(overrides)
    opts = HbbsOptions(**fields)  # type: ignore[arg-type]
    stop = asyncio.Event()
    started: asyncio.Future[HbbsServer] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(serve(opts, stop, started.set_result))
    done, _ = await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    try:
        yield RunningHbbs(started.result(), opts)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
