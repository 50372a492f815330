"""The single server is what it was: no engine, and nats is never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_base_port

RUN_A_SINGLE_SERVER = """
import asyncio, sys
from pathlib import Path
from pyhbb.config.hbbs import parse_hbbs_options
from pyhbb.rendezvous.app import serve

opts = parse_hbbs_options(
    ["-b", "127.0.0.1", "-p", sys.argv[1], "--api-server", "none"],
    {"TEST_HBBS": "no"},
    Path(sys.argv[2]),
)
started = []

async def main() -> int:
    stop = asyncio.Event()
    def on_started(server: object) -> None:
        started.append(server)
        stop.set()
    return await serve(opts, stop, on_started)

status = asyncio.run(main())
assert started and status == 0, status
print(sorted(m for m in sys.modules if m == "nats" or m.startswith("nats.")))
"""


def test_running_a_single_server_never_imports_nats(tmp_path: Path) -> None:
    port = free_base_port((-1, 0, 2))
    out = subprocess.run(
        [sys.executable, "-c", RUN_A_SINGLE_SERVER, str(port), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "db_v2.sqlite3").exists()  # it really ran, on its SQLite database
