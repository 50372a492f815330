"""Fixtures that run hbbr in-process on free loopback ports, on both event loops."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.net.fd_limit import raise_fd_limit
from pyhbb.relay.server import RelayServer
from tests.support.ports import free_base_port

# Bandwidth far above what loopback tests move, unless a test asks for a cap.
FAST = {"total_bandwidth": 1e6, "single_bandwidth": 1e6, "limit_speed": 1e6}

StartRelay = Callable[..., Awaitable[RelayServer]]

# Files another engineer owns, left on the default loop alone.
_DEFAULT_LOOP_ONLY = ("test_cli.py", "test_config.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The relay hands sockets from transports to the splice pump and bridges with
    transport flow control, which both event loops implement their own way: every
    asynchronous relay test runs on the default loop and on uvloop (production's)."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.path.name not in _DEFAULT_LOOP_ONLY:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[StartRelay]:
    """``await start_relay(key="", **option_overrides)`` -> a started RelayServer."""
    raise_fd_limit()
    servers: list[RelayServer] = []

    async def start(licence_key: str = "", **overrides: Any) -> RelayServer:
        values: dict[str, Any] = {**FAST, "workdir": tmp_path}
        values.update(overrides)
        for _ in range(5):
            opts = dataclasses.replace(HbbrOptions(), port=free_base_port((0, 2)), **values)
            server = RelayServer(opts, licence_key)
            try:
                await server.start()
            except OSError:
                continue  # lost a race for the port: pick another
            servers.append(server)
            return server
        raise RuntimeError("could not bind hbbr")

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(), 20)
