"""--cluster and --node-name: declared like every hbbs option (flag, -c file, .env,
environment), with errors that say what to do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pyhbb.cluster.messages import NODE_NAME
from pyhbb.cluster.options import default_node_name
from pyhbb.config.hbbs import HbbsOptions, parse_hbbs_options
from pyhbb.config.sources import ConfigError

URLS = "nats://127.0.0.1:4222, nats://10.0.0.2:4223,tls://n3.example:4224"
PARSED = ["nats://127.0.0.1:4222", "nats://10.0.0.2:4223", "tls://n3.example:4224"]


def parse(
    tmp: Path, argv: list[str] | None = None, env: dict[str, str] | None = None
) -> HbbsOptions:
    return parse_hbbs_options(argv or [], env or {}, tmp)


def test_single_server_by_default(tmp_path: Path) -> None:
    opts = parse(tmp_path)
    assert opts.cluster == [] and opts.node_name == ""


def test_the_default_node_name_is_the_host_name_made_a_subject_token() -> None:
    name = default_node_name()
    assert name == socket.gethostname().split(".")[0][:64] or not name.isalnum()
    assert NODE_NAME.fullmatch(name)


def test_flags(tmp_path: Path) -> None:
    opts = parse(tmp_path, ["--cluster", URLS, "--node-name", "n1", "-r", "127.0.0.21"])
    assert opts.cluster == PARSED and opts.node_name == "n1"


@pytest.mark.parametrize("source", ["env", "dotenv", "config"])
def test_every_source(tmp_path: Path, source: str) -> None:
    values = {"CLUSTER": URLS, "NODE_NAME": "site_3", "RELAY_SERVERS": "r3.example"}
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    argv: list[str] = []
    env: dict[str, str] = {}
    if source == "env":
        env = values
    elif source == "dotenv":
        (tmp_path / ".env").write_text(text)
    else:
        (tmp_path / "hbbs.conf").write_text(text)
        argv = ["-c", "hbbs.conf"]
    opts = parse(tmp_path, argv, env)
    assert opts.cluster == PARSED and opts.node_name == "site_3"


def test_a_port_defaults_to_4222_and_the_scheme_to_nats(tmp_path: Path) -> None:
    opts = parse(tmp_path, ["--cluster", "10.0.0.1,[::1]:5000", "-r", "r"])
    assert opts.cluster == ["nats://10.0.0.1:4222", "nats://[::1]:5000"]


def test_cluster_needs_a_relay_per_node(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CLUSTER=.*needs -r/RELAY_SERVERS"):
        parse(tmp_path, ["--cluster", URLS])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster", "http://x:1", "-r", "r"], "CLUSTER=.*not a nats:// URL"),
        (["--cluster", "nats://x:99999", "-r", "r"], "CLUSTER=.*not a port number"),
        (["--node-name", "a.b"], r"NODE_NAME='?a\.b'? is not a node name.*letters"),
        (["--node-name", "x" * 65], "NODE_NAME=.*is not a node name"),
    ],
)
def test_bad_values_say_what_is_expected(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(tmp_path, argv)
