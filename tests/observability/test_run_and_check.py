"""``pyhbb run`` serves monitoring by default (loopback, documented addresses, derived
from hbbs's), and ``pyhbb check --health`` reads it. Real processes on loopback."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pyhbb import cli as pyhbb_cli
from tests.observability.scrape import fetch, scrape_sync
from tests.support.ports import free_base_port
from tests.support.processes import VENV_BIN, start, stop, wait_tcp


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("METRICS", "API_METRICS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_run_derives_every_metrics_address_from_hbbs(workdir: Path) -> None:
    # the defaults: hbbs 127.0.0.1:9116, the API 127.0.0.1:9114
    assert pyhbb_cli._metrics_args(["-p", "30000"]) == (
        ["--metrics", "127.0.0.1:9116"],
        ("127.0.0.1", 9116),
    )
    api, _ = pyhbb_cli._api_args(["-p", "30000"], [])
    assert api[api.index("--metrics") + 1] == "127.0.0.1:9114"
    hbbr = pyhbb_cli._hbbr_args(["-p", "30000"], [])
    assert hbbr[hbbr.index("--metrics") + 1] == "127.0.0.1:9117"
    assert pyhbb_cli._hbbr_args([], ["--metrics", "off"])[-2:] == ["--metrics", "off"]
    # hbbs's address moves the others; off turns them all off
    given = ["--metrics", "[::1]:40000"]
    assert pyhbb_cli._metrics_args(given) == ([], ("::1", 40000))
    api, _ = pyhbb_cli._api_args(given, [])
    assert api[api.index("--metrics") + 1] == "[::1]:39998"
    hbbr = pyhbb_cli._hbbr_args(given, [])
    assert hbbr[hbbr.index("--metrics") + 1] == "[::1]:40001"
    api, _ = pyhbb_cli._api_args(["--metrics", "off"], [])
    assert api[api.index("--metrics") + 1] == "off"
    hbbr = pyhbb_cli._hbbr_args(["--metrics", "off"], [])
    assert hbbr[hbbr.index("--metrics") + 1] == "off"
    # the admin's own choice for the API stands, by flag or by its variable
    api, _ = pyhbb_cli._api_args([], ["--metrics", "127.0.0.1:5000"])
    assert api.count("--metrics") == 1 and api[-1] == "127.0.0.1:5000"
    (workdir / ".env").write_text("API_METRICS=127.0.0.1:5001\nMETRICS=127.0.0.1:6000\n")
    api, _ = pyhbb_cli._api_args([], [])
    assert "--metrics" not in api
    assert pyhbb_cli._metrics_args([]) == ([], ("127.0.0.1", 6000))


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "pyhbb"), "check", *args], capture_output=True, text=True, timeout=60
    )


def test_run_serves_health_and_metrics_and_check_reads_them(tmp_path: Path) -> None:
    port = free_base_port(offsets=(-2, -1, 0, 1, 2, 3))
    metrics = free_base_port(offsets=(-2, 0, 1))
    proc = start(
        "pyhbb", ["run", "--", "-p", str(port), "--metrics", f"127.0.0.1:{metrics}"], tmp_path
    )
    try:
        for p in (port - 2, port - 1, port, port + 1, port + 2, metrics - 2, metrics, metrics + 1):
            wait_tcp(p)
        hbbs = ("127.0.0.1", metrics)
        hbbr = ("127.0.0.1", metrics + 1)
        api = ("127.0.0.1", metrics - 2)
        assert scrape_sync(hbbs).get("pyhbb_info", service="hbbs", version="0.1.0") == 1
        assert scrape_sync(hbbr).get("pyhbb_info", service="hbbr", version="0.1.0") == 1
        assert scrape_sync(api).get("pyhbb_info", service="api", version="0.1.0") == 1
        # Each service probes its neighbour (hbbs its relay on P+1, the API hbbs), maybe
        # before the neighbour listened: a failed probe is repeated within 2 s.
        for where in (hbbs, api):
            deadline = time.monotonic() + 10
            while True:
                status, body = fetch(where, "/healthz")
                report = json.loads(body)
                assert status == 200, report  # "degraded" at worst: never 503
                if report["status"] == "ok":
                    break
                assert time.monotonic() < deadline, report
                time.sleep(0.2)
        key = (tmp_path / "id_ed25519.pub").read_text()
        good = check(
            f"127.0.0.1:{port}",
            "--key",
            key,
            "--health",
            f"127.0.0.1:{metrics}",
            "--health",
            f"127.0.0.1:{metrics + 1}",
            "--metrics",
            f"http://127.0.0.1:{metrics - 2}/healthz",
        )
        assert good.returncode == 0, good.stdout + good.stderr
        assert f"ok    health http://127.0.0.1:{metrics}/healthz: hbbs ok" in good.stdout
        assert f"ok    health http://127.0.0.1:{metrics - 2}/healthz: api ok" in good.stdout
        assert f"ok    health http://127.0.0.1:{metrics + 1}/healthz: hbbr ok" in good.stdout
        nothing = free_base_port(offsets=(0,))
        bad = check(f"127.0.0.1:{port}", "--key", key, "--health", f"127.0.0.1:{nothing}")
        assert bad.returncode == 1
        assert f"FAIL  health http://127.0.0.1:{nothing}/healthz" in bad.stdout
        assert "is the service running with --metrics" in bad.stdout
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert f"hbbs metrics at http://127.0.0.1:{metrics}/metrics" in out
    assert f"api metrics at http://127.0.0.1:{metrics - 2}/metrics" in out
    assert f"hbbr metrics at http://127.0.0.1:{metrics + 1}/metrics" in out


def test_check_refuses_a_health_address_without_port() -> None:
    done = check("127.0.0.1", "--health", "localhost")
    assert done.returncode == 2
    assert "--health 'localhost' has no port" in done.stderr
