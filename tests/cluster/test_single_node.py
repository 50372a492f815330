"""The single server is what it was: no engine, and nats is never imported."""

from __future__ import annotations

import subprocess
import sys


def test_running_a_single_server_never_imports_nats(tmp_path: object) -> None:
    code = (
        "import sys, asyncio\n"
        "from pyhbb.rendezvous import app, cli\n"
        "from pyhbb.rendezvous.adapters import executor\n"
        "from pyhbb.config.hbbs import parse_hbbs_options\n"
        "parse_hbbs_options([], {}, None)\n"
        "bad = sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.'))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
