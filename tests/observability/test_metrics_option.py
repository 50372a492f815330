"""``--metrics HOST:PORT`` (METRICS, API_METRICS): bad values stop the service with exit
status 2 and one line naming the option; a taken port stops it with status 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pyhbb.api.cli import main as api_main
from pyhbb.api.options import parse_api_options
from pyhbb.config.hbbr import parse_options as parse_hbbr_options
from pyhbb.config.hbbs import parse_hbbs_options
from pyhbb.config.sources import ConfigError
from pyhbb.relay.cli import main as hbbr_main
from pyhbb.rendezvous.cli import main as hbbs_main
from tests.support.ports import free_base_port

BAD = ["127.0.0.1", "nonsense:abc", "127.0.0.1:0", "[::1", "a b:9116", "127.0.0.1:70000"]


@pytest.mark.parametrize("value", BAD)
def test_hbbs_refuses_a_bad_address(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert hbbs_main(["--metrics", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbbs: METRICS=") and "HOST:PORT" in err, err
    assert not (tmp_path / "db_v2.sqlite3").exists()  # refused before anything started


def test_the_variable_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METRICS", "localhost")
    assert hbbs_main([]) == 2
    assert "METRICS=localhost has no port" in capsys.readouterr().err
    monkeypatch.setenv("API_METRICS", "9114")
    assert api_main([]) == 2
    assert "API_METRICS=9114 has no port" in capsys.readouterr().err


@pytest.mark.parametrize("value", BAD)
def test_hbbr_refuses_a_bad_address(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert hbbr_main(["--metrics", value]) == 2
    assert capsys.readouterr().err.startswith("hbbr: METRICS=")


def test_hbbr_takes_the_next_port_from_the_shared_variable(tmp_path: Path) -> None:
    # like PORT: the variable names hbbs's address (one .env for both), the flag is hbbr's
    shared = {"METRICS": "127.0.0.1:9116"}
    assert parse_hbbr_options([], shared, tmp_path).metrics == ("127.0.0.1", 9117)
    given = ["--metrics", "127.0.0.1:9300"]
    assert parse_hbbr_options(given, shared, tmp_path).metrics == ("127.0.0.1", 9300)
    assert parse_hbbr_options([], {"METRICS": "off"}, tmp_path).metrics is None
    (tmp_path / ".env").write_text("METRICS=[::1]:9200\n")
    assert parse_hbbr_options([], {}, tmp_path).metrics == ("::1", 9201)
    (tmp_path / ".env").unlink()  # .env would win over the environment
    with pytest.raises(ConfigError, match="leaves no port for the relay"):
        parse_hbbr_options([], {"METRICS": "127.0.0.1:65535"}, tmp_path)


@pytest.mark.parametrize("value", BAD)
def test_the_api_refuses_a_bad_address(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert api_main(["--metrics", value]) == 2
    assert capsys.readouterr().err.startswith("pyhbb api: API_METRICS=")


def test_values(tmp_path: Path) -> None:
    def hbbs(*argv: str) -> tuple[str, int] | None:
        return parse_hbbs_options(list(argv), {}, tmp_path).metrics

    assert hbbs() is None
    assert hbbs("--metrics", "off") is None
    assert hbbs("--metrics", "") is None
    assert hbbs("--metrics", "127.0.0.1:9116") == ("127.0.0.1", 9116)
    assert hbbs("--metrics", "[::1]:9116") == ("::1", 9116)
    assert parse_hbbs_options([], {"METRICS": "0.0.0.0:9100"}, tmp_path).metrics == (
        "0.0.0.0",
        9100,
    )
    api = parse_api_options(["--metrics", "127.0.0.1:9114"], {"METRICS": "x"}, tmp_path)
    assert api.metrics == ("127.0.0.1", 9114)  # hbbs's METRICS is not the API's


def test_a_taken_port_stops_hbbs_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["-p", str(free_base_port()), "--metrics", f"127.0.0.1:{port}"]
        assert hbbs_main(argv) == 1
    err = capsys.readouterr().err
    assert f"metrics endpoint: cannot listen on TCP 127.0.0.1 port {port}" in err, err
    assert "--metrics" in err


def test_a_taken_port_stops_the_api_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api_port = free_base_port(offsets=(0,))
        argv = ["-p", str(api_port), "-b", "127.0.0.1", "--metrics", f"127.0.0.1:{port}"]
        assert api_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"pyhbb api: metrics endpoint: cannot listen on TCP 127.0.0.1 port {port}"
    )
    with socket.socket() as again:  # the API's own port was let go
        again.bind(("127.0.0.1", api_port))
