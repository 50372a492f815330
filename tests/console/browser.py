"""Headless Chromium for the console's browser tests, and the servers in a thread.

Selenium's calls block, so hbbs, hbbr and the API run on their own event loop in a
background thread while the test drives the browser from the main thread.

Without a browser (Debian: ``apt-get install chromium chromium-driver``, which
scripts/test.sh does when it runs as root) the tests are skipped with a message; in CI
(the ``CI`` variable set) a missing browser fails them instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.console.stack import Stack, running_stack

T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1800",
)  # fmt: skip


def find_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    why = (
        "no headless Chromium here (install Debian's chromium and chromium-driver: "
        "scripts/test.sh does so when run as root)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI, but {why}")
    pytest.skip(why)


@contextmanager
def chrome() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="pyhbb-chrome-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class ThreadedStack:
    """``running_stack`` on an event loop of its own thread."""

    def __init__(self, workdir: Path, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.stack: Stack | None = None
        self._thread = threading.Thread(target=self._run, args=(workdir, overrides), daemon=True)

    def _run(self, workdir: Path, overrides: dict[str, Any]) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main(workdir, overrides))

    async def _main(self, workdir: Path, overrides: dict[str, Any]) -> None:
        self._stop = asyncio.Event()
        try:
            async with running_stack(workdir, **overrides) as stack:
                self.stack = stack
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._ready.set()

    def __enter__(self) -> Stack:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self.stack is None:
            raise RuntimeError("the servers did not start") from self._error
        return self.stack

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
