"""hbbr options: official names, defaults, PORT+1 rule, precedence (docs/protocol.md §10)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pyhbb.config.hbbr import parse_options
from pyhbb.config.sources import ConfigError
from pyhbb.net.forwarded import parse_networks


def test_defaults(tmp_path: Path) -> None:
    o = parse_options([], {}, tmp_path)
    assert (o.port, o.ws_port, o.bind, o.key) == (21117, 21119, None, "")
    assert (o.total_bandwidth, o.single_bandwidth, o.limit_speed) == (1024, 128, 32)
    assert (o.downgrade_threshold, o.downgrade_start_check) == (0.66, 1800)
    assert (o.pair_wait_timeout, o.first_message_timeout, o.idle_timeout) == (30, 30, 30)
    assert list(o.trusted_proxies) == parse_networks(["127.0.0.0/8", "::1/128"])


def test_port_env_plus_one_and_flag_as_is(tmp_path: Path) -> None:
    assert parse_options([], {"PORT": "21116"}, tmp_path).port == 21117
    assert parse_options([], {"port": "30000"}, tmp_path).port == 30001
    assert parse_options(["-p", "30000"], {"PORT": "1"}, tmp_path).port == 30000
    assert parse_options(["--port", "22000"], {}, tmp_path).port == 22000
    assert parse_options([], {"PORT": ""}, tmp_path).port == 21117  # blank: not set
    assert parse_options([], {"PORT": "65532"}, tmp_path).port == 65533
    # The official hbbr falls back to 21117 for these; pyhbb refuses them (exit status 2).
    for bad in ("0", "x", "-5"):
        with pytest.raises(ConfigError, match=rf"^PORT={bad} .*from the environment"):
            parse_options([], {"PORT": bad}, tmp_path)
    with pytest.raises(ConfigError, match=r"^PORT=65533 .*PORT\+1.*from 1 to 65532"):
        parse_options([], {"PORT": "65533"}, tmp_path)
    with pytest.raises(ConfigError, match="PORT=abc is not a whole number"):
        parse_options(["-p", "abc"], {}, tmp_path)
    with pytest.raises(ConfigError, match="65533"):
        parse_options(["-p", "65534"], {}, tmp_path)


def test_dotenv_then_flags(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KEY=fromfile\nBIND=127.0.0.1\nsingle-bandwidth=5\n")
    env = {"KEY": "fromenv", "SINGLE_BANDWIDTH": "7", "LIMIT_SPEED": "3"}
    o = parse_options([], env, tmp_path)
    assert (o.key, o.bind, o.single_bandwidth, o.limit_speed) == ("fromfile", "127.0.0.1", 5, 3)
    o = parse_options(["-k", "flag", "-b", "::1"], env, tmp_path)
    assert (o.key, o.bind) == ("flag", "::1")


def test_config_file_between_dotenv_and_flags(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LIMIT_SPEED=5\nKEY=dotenv\nMAX_WAITING=7\n")
    (tmp_path / "relay.conf").write_text("limit_speed=6\nPORT=30000\n")
    env = {"LIMIT_SPEED": "4", "KEY": "env", "MAX_WAITING": "3", "MAX_HANDSHAKES": "9"}
    o = parse_options(["-c", "relay.conf"], env, tmp_path)
    assert (o.limit_speed, o.key, o.port) == (6, "dotenv", 30001)  # PORT+1 from a file too
    assert (o.max_waiting, o.max_handshakes) == (7, 9)
    o = parse_options(["--config", "relay.conf", "-p", "40000", "-k", "flag"], env, tmp_path)
    assert (o.port, o.key, o.limit_speed) == (40000, "flag", 6)
    o = parse_options(["--max-waiting", "2", "--max-handshakes-per-ip", "1"], env, tmp_path)
    assert (o.max_waiting, o.max_handshakes_per_ip) == (2, 1)


def test_bandwidth_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "TOTAL_BANDWIDTH": "2048",
        "SINGLE_BANDWIDTH": "0.5",
        "LIMIT_SPEED": "8",
        "DOWNGRADE_THRESHOLD": "0.9",
        "DOWNGRADE_START_CHECK": "60",
    }
    o = parse_options([], env, tmp_path)
    assert (o.total_bandwidth, o.single_bandwidth, o.limit_speed) == (2048, 0.5, 8)
    assert (o.downgrade_threshold, o.downgrade_start_check) == (0.9, 60)
    # The official hbbr logs nothing and keeps the default for these; pyhbb refuses each
    # one with a line naming it (a deliberate deviation: no silent fallback).
    bad = [
        ("TOTAL_BANDWIDTH", "0", "a number above 0"),
        ("TOTAL_BANDWIDTH", "abc", "a number above 0"),
        ("SINGLE_BANDWIDTH", "-4", "a number above 0"),
        ("LIMIT_SPEED", "fast", "a number above 0"),
        ("DOWNGRADE_THRESHOLD", "nan", "a number above 0"),
        ("DOWNGRADE_THRESHOLD", "inf", "a number above 0"),
        ("DOWNGRADE_START_CHECK", "1.5", "a whole number"),
        ("MAX_WAITING", "0", "a whole number"),
        ("MAX_HANDSHAKES_PER_IP", "-1", "a whole number"),
    ]
    with caplog.at_level(logging.WARNING):
        for name, text, expected in bad:
            with pytest.raises(ConfigError) as info:
                parse_options([], {**env, name: text}, tmp_path)
            message = str(info.value)
            assert message.startswith(f"{name}={text} "), message
            assert f"expected {expected}" in message and "from the environment" in message
    assert caplog.records == []


def test_trusted_proxies(tmp_path: Path) -> None:
    o = parse_options(["--trusted-proxies", "10.0.0.0/8, 192.0.2.1"], {}, tmp_path)
    assert list(o.trusted_proxies) == parse_networks(["10.0.0.0/8", "192.0.2.1"])
    o = parse_options([], {"TRUSTED_PROXIES": ""}, tmp_path)
    assert o.trusted_proxies == ()
    with pytest.raises(ConfigError):
        parse_options([], {"TRUSTED_PROXIES": "not-an-ip"}, tmp_path)


def test_bounds(tmp_path: Path) -> None:
    o = parse_options([], {"MAX_WAITING": "5", "MAX_WAITING_PER_IP": "2"}, tmp_path)
    assert (o.max_waiting, o.max_waiting_per_ip) == (5, 2)


def test_help_explains_every_option() -> None:
    hbbr = Path(sys.executable).with_name("hbbr")
    out = subprocess.run(
        [str(hbbr), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for word in (
        "--port",
        "--key",
        "--bind",
        "--trusted-proxies",
        "--config",
        "--max-waiting",
        "PORT+1",
        "21117",
        "21119",
        "KEY",
        "BIND",
        "TOTAL_BANDWIDTH",
        "SINGLE_BANDWIDTH",
        "LIMIT_SPEED",
        "DOWNGRADE_THRESHOLD",
        "DOWNGRADE_START_CHECK",
        "TRUSTED_PROXIES",
        "MAX_WAITING",
        "MAX_WAITING_PER_IP",
        "MAX_HANDSHAKES",
        "blacklist.txt",
        "blocklist.txt",
        ".env",
        "RUST_LOG",
        "mebibits",
    ):
        assert word in out, word


def test_config_error_exits_2(tmp_path: Path) -> None:
    hbbr = Path(sys.executable).with_name("hbbr")
    proc = subprocess.run(
        [str(hbbr), "-p", "notaport"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("hbbr: ")


def test_key_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from nacl.signing import SigningKey

    from pyhbb.relay import app

    sleeps: list[float] = []
    monkeypatch.setattr(app.time, "sleep", sleeps.append)

    def resolve(value: str) -> str:
        return app.resolve_licence_key(parse_options(["-k", value], {}, tmp_path))

    assert resolve("") == ""
    assert resolve("plain-text-key") == "plain-text-key"
    assert sleeps == []
    # '-': waits 300 ms for a co-started hbbs when the key file is missing, then creates it.
    public = resolve("-")
    assert sleeps == [0.3]
    assert (tmp_path / "id_ed25519.pub").read_text() == public
    assert resolve("_") == public and sleeps == [0.3]  # file exists now: no wait
    key = SigningKey.generate()
    secret = base64.b64encode(bytes(key) + bytes(key.verify_key)).decode()
    assert resolve(secret) == base64.b64encode(bytes(key.verify_key)).decode()
