"""The API server in-process on loopback (real uvicorn, real HTTP, real SQLite file)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import pytest

from tests.api.support import RunningApi, running_api


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    try:
        import uvloop
    except ImportError:
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def api(tmp_path: object) -> AsyncIterator[RunningApi]:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    async with running_api(tmp_path) as running:
        yield running
