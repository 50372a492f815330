"""`pyhbb check`: the admin's port-by-port test against real servers on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, start, stop, wait_tcp


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "pyhbb"), "check", *args], capture_output=True, text=True, timeout=60
    )


def test_check_passes_against_pyhbb_run_and_explains_failures(tmp_path: Path) -> None:
    port = free_base_port(offsets=(-2, -1, 0, 1, 2, 3))  # the API server on P-2 too
    proc = start("pyhbb", ["run", "--", "-p", str(port), "--metrics", "off"], tmp_path)
    try:
        for p in (port - 1, port, port + 1, port + 2, port + 3):
            wait_tcp(p)
        key = (tmp_path / "id_ed25519.pub").read_text()
        good = check(f"127.0.0.1:{port}", "--key", key)
        assert good.returncode == 0, good.stdout + good.stderr
        assert good.stdout.count("ok  ") == 6 and "FAIL" not in good.stdout
        assert "signed by the given key" in good.stdout

        other_key = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        bad = check(f"127.0.0.1:{port}", "--key", other_key)
        assert bad.returncode == 1
        assert "not the one given" in bad.stdout  # the secure channel's signature
        assert "FAIL  TCP " + str(port + 1) in bad.stdout  # hbbr enforces the key
        assert bad.stdout.count("without pairing them") == 2
        assert "give the clients' key with --key" in bad.stdout
    finally:
        code, out = stop(proc)
    assert code == 0, out
    # Nothing listens any more: every check fails with firewall advice.
    gone = check(f"127.0.0.1:{port}")
    assert gone.returncode == 1 and gone.stdout.count("FAIL") == 6
    assert f"allow UDP {port}" in gone.stdout
