"""hbbs options: flags, variables, sources and precedence (docs/protocol.md §10.1, §10.2)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from pyhbb.config.hbbs import ALL_OPTIONS, HbbsOptions, parse_hbbs_options
from pyhbb.config.sources import ConfigError


def parse(tmp_path: Path, argv: list[str] | None = None, env: dict[str, str] | None = None):
    return parse_hbbs_options(argv or [], env or {}, tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults --------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    o = parse(tmp_path)
    assert (o.port, o.nat_port, o.ws_port) == (21116, 21115, 21118)
    assert o.key == "-"
    assert o.relay_servers == []
    assert o.bind is None
    assert o.rmem == 0
    assert o.serial == 0
    assert o.rendezvous_servers == []
    assert o.software_url == ""
    assert o.mask is None
    assert o.local_ip == ""
    assert o.always_use_relay is False
    assert o.db_url == "./db_v2.sqlite3"
    assert o.db_readers == 1
    assert o.test_hbbs == ""
    assert o.workdir == tmp_path
    # pyhbb's own options
    assert o.trusted_proxies == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert (o.secure_tcp, o.console, o.udp_punch, o.id_change) == (True, True, False, True)
    assert o.max_frame == 1024 * 1024
    assert (o.max_connections_per_ip, o.max_connections) == (1000, 100_000)
    assert (o.register_burst_per_ip, o.register_ids_per_ip) == (30, 300)
    assert o.max_peers == 2_000_000
    assert o.api_server == "http://127.0.0.1:21114"
    assert o.max_sessions_per_ip == 1000


def test_defaults_match_the_dataclass(tmp_path: Path) -> None:
    parsed = parse(tmp_path)
    default = HbbsOptions(workdir=tmp_path)
    assert parsed == default


# -- every flag (short and long) -------------------------------------------------------------


FLAGS = [
    (["-p", "30000"], "port", 30000),
    (["--port", "30001"], "port", 30001),
    (["-k", "_"], "key", "_"),
    (["--key", ""], "key", ""),
    (["-r", "a.example,b.example:21117"], "relay_servers", ["a.example", "b.example:21117"]),
    (["--relay-servers", " a , ,b "], "relay_servers", ["a", "b"]),
    (["-b", "127.0.0.1"], "bind", "127.0.0.1"),
    (["--bind", "::1"], "bind", "::1"),
    (["--bind", ""], "bind", None),
    (["-M", "1048576"], "rmem", 1048576),
    (["--rmem", "0"], "rmem", 0),
    (["-s", "5"], "serial", 5),
    (["--serial", "7"], "serial", 7),
    (["-R", "rs1.example,rs2.example"], "rendezvous_servers", ["rs1.example", "rs2.example"]),
    (["--rendezvous-servers", "rs.example"], "rendezvous_servers", ["rs.example"]),
    (["-u", "https://x/rustdesk-1.2.exe"], "software_url", "https://x/rustdesk-1.2.exe"),
    (["--software-url", "u"], "software_url", "u"),
    (["--mask", "192.168.0.0/16"], "mask", "192.168.0.0/16"),
    (["--trusted-proxies", "10.0.0.0/8"], "trusted_proxies", [ipaddress.ip_network("10.0.0.0/8")]),
    (["--secure-tcp", "N"], "secure_tcp", False),
    (["--console", "no"], "console", False),
    (["--max-frame-size", "65536"], "max_frame", 65536),
    (["--max-connections-per-ip", "5"], "max_connections_per_ip", 5),
    (["--max-connections", "50"], "max_connections", 50),
    (["--register-burst-per-ip", "100"], "register_burst_per_ip", 100),
    (["--register-ids-per-ip", "1000"], "register_ids_per_ip", 1000),
    (["--max-peers-in-memory", "5000"], "max_peers", 5000),
    (["--api-server", "https://api.example"], "api_server", "https://api.example"),
    (["--api-server", "none"], "api_server", ""),
    (["--udp-punch", "Y"], "udp_punch", True),
    (["--id-change", "N"], "id_change", False),
    (["--max-sessions-per-ip", "3"], "max_sessions_per_ip", 3),
]


@pytest.mark.parametrize(("argv", "attr", "value"), FLAGS)
def test_each_flag(tmp_path: Path, argv: list[str], attr: str, value: object) -> None:
    assert getattr(parse(tmp_path, argv), attr) == value


def test_config_flag_short_and_long(tmp_path: Path) -> None:
    cfg = write(tmp_path / "hbbs.conf", "PORT=31000\n")
    assert parse(tmp_path, ["-c", str(cfg)]).port == 31000
    assert parse(tmp_path, ["--config", str(cfg)]).port == 31000


# -- every variable --------------------------------------------------------------------------

VARIABLES = [
    ("PORT", "30000", "port", 30000),
    ("KEY", "", "key", ""),
    ("RELAY-SERVERS", "r1,r2", "relay_servers", ["r1", "r2"]),
    ("BIND", "0.0.0.0", "bind", "0.0.0.0"),
    ("RMEM", "4096", "rmem", 4096),
    ("SERIAL", "4", "serial", 4),
    ("RENDEZVOUS-SERVERS", "a,b", "rendezvous_servers", ["a", "b"]),
    ("SOFTWARE-URL", "https://x/y-1.0.exe", "software_url", "https://x/y-1.0.exe"),
    ("MASK", "10.0.0.0/8", "mask", "10.0.0.0/8"),
    ("LOCAL-IP", "10.0.0.1", "local_ip", "10.0.0.1"),
    ("LOCAL_IP", " 10.0.0.2 ", "local_ip", "10.0.0.2"),
    ("ALWAYS_USE_RELAY", "Y", "always_use_relay", True),
    ("ALWAYS_USE_RELAY", "y", "always_use_relay", True),
    ("ALWAYS_USE_RELAY", "N", "always_use_relay", False),
    ("ALWAYS_USE_RELAY", "yes", "always_use_relay", False),  # only Y, any case
    ("DB_URL", "/var/lib/hbbs/db.sqlite3", "db_url", "/var/lib/hbbs/db.sqlite3"),
    ("DB_URL", "", "db_url", "./db_v2.sqlite3"),
    ("MAX_DATABASE_CONNECTIONS", "4", "db_readers", 4),
    ("TEST_HBBS", "no", "test_hbbs", "no"),
    ("TEST_HBBS", "127.0.0.1:21116", "test_hbbs", "127.0.0.1:21116"),
    ("TRUSTED_PROXIES", "192.0.2.1", "trusted_proxies", [ipaddress.ip_network("192.0.2.1/32")]),
    ("SECURE_TCP", "n", "secure_tcp", False),
    ("CONSOLE", "N", "console", False),
    ("MAX_FRAME_SIZE", "2048", "max_frame", 2048),
    ("MAX_CONNECTIONS_PER_IP", "9", "max_connections_per_ip", 9),
    ("MAX_CONNECTIONS", "99", "max_connections", 99),
    ("REGISTER_BURST_PER_IP", "1", "register_burst_per_ip", 1),
    ("REGISTER_IDS_PER_IP", "2", "register_ids_per_ip", 2),
    ("MAX_PEERS_IN_MEMORY", "1000", "max_peers", 1000),
    ("API_SERVER", "http://10.0.0.1:21114", "api_server", "http://10.0.0.1:21114"),
    ("UDP_PUNCH", "true", "udp_punch", True),
    ("ID_CHANGE", "0", "id_change", False),
    ("MAX_SESSIONS_PER_IP", "2", "max_sessions_per_ip", 2),
    ("NEW_PEERS_PER_SECOND", "7", "new_peers_per_second", 7),
    ("NODE_NAME", "site-2", "node_name", "site-2"),
    ("METRICS", "127.0.0.1:9116", "metrics", ("127.0.0.1", 9116)),
]


@pytest.mark.parametrize(("name", "text", "attr", "value"), VARIABLES)
def test_each_variable_from_the_environment(
    tmp_path: Path, name: str, text: str, attr: str, value: object
) -> None:
    assert getattr(parse(tmp_path, env={name: text}), attr) == value


@pytest.mark.parametrize(("name", "text", "attr", "value"), VARIABLES)
def test_each_variable_from_dotenv(
    tmp_path: Path, name: str, text: str, attr: str, value: object
) -> None:
    write(tmp_path / ".env", f"{name}={text}\n")
    assert getattr(parse(tmp_path), attr) == value


def test_rust_log_comes_from_the_inherited_environment_only(tmp_path: Path) -> None:
    # Upstream sets up logging before it reads .env or -c (§10.1).
    assert parse(tmp_path, env={"rust_log": "hbbs=debug"}).rust_log == "hbbs=debug"
    write(tmp_path / ".env", "RUST_LOG=trace\n")
    cfg = write(tmp_path / "extra.conf", "RUST_LOG=trace\n")
    assert parse(tmp_path, ["-c", str(cfg)], {"RUST_LOG": "warn"}).rust_log == "warn"
    assert parse(tmp_path, ["-c", str(cfg)]).rust_log == ""


def test_every_option_is_covered_by_these_tests() -> None:
    # RUST_LOG has its own test above: it is read from the environment only. CLUSTER
    # needs -r as well: tests/cluster/test_options.py covers it from every source.
    names = {re.sub("-", "_", v[0]) for v in VARIABLES} | {"RUST_LOG", "CLUSTER"}
    assert {opt.name for opt in ALL_OPTIONS} <= names


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["RELAY-SERVERS", "RELAY_SERVERS", "relay-servers", "relay_servers", "Relay_Servers"]
)
def test_names_are_case_insensitive_and_dash_underscore_agnostic(tmp_path: Path, name: str) -> None:
    assert parse(tmp_path, env={name: "r.example"}).relay_servers == ["r.example"]
    write(tmp_path / ".env", f"{name}=d.example\n")
    assert parse(tmp_path).relay_servers == ["d.example"]


@pytest.mark.parametrize(
    ("env", "winner"),
    [
        ({"RELAY_SERVERS": "u", "RELAY-SERVERS": "d"}, "d"),
        ({"relay-servers": "dl", "RELAY_SERVERS": "U"}, "U"),
        ({"relay_servers": "ul", "relay-servers": "dl"}, "dl"),
        ({"relay_servers": "ul", "Relay_Servers": "mixed"}, "ul"),
        ({"rELAY-servers": "y", "Relay_Servers": "x"}, "x"),  # alphabetical: "R" < "r"
    ],
)
def test_spelling_order_within_one_source(tmp_path: Path, env: dict[str, str], winner: str) -> None:
    assert parse(tmp_path, env=env).relay_servers == [winner]


# -- precedence: flag > -c file > .env > environment -------------------------------------------


def test_precedence(tmp_path: Path) -> None:
    env = {"PORT": "1000", "KEY": "env-key", "SERIAL": "1", "RMEM": "11"}
    write(tmp_path / ".env", "port=2000\nkey=dotenv-key\nSERIAL=2\n")
    cfg = write(tmp_path / "extra.conf", "Port=3000\nKEY=config-key\n")
    o = parse(tmp_path, ["-c", str(cfg), "-p", "4000"], env)
    assert (o.port, o.key, o.serial, o.rmem) == (4000, "config-key", 2, 11)
    o = parse(tmp_path, ["-c", str(cfg)], env)
    assert o.port == 3000
    o = parse(tmp_path, [], env)
    assert (o.port, o.key) == (2000, "dotenv-key")
    (tmp_path / ".env").unlink()
    assert parse(tmp_path, [], env).port == 1000
    assert parse(tmp_path, [], {}).port == 21116


def test_flag_beats_differently_spelled_variables(tmp_path: Path) -> None:
    env = {"relay_servers": "env"}
    write(tmp_path / ".env", "Relay-Servers=dotenv\n")
    assert parse(tmp_path, ["-r", "flag"], env).relay_servers == ["flag"]
    assert parse(tmp_path, [], env).relay_servers == ["dotenv"]


def test_empty_flag_overrides_a_variable(tmp_path: Path) -> None:
    o = parse(tmp_path, ["-k", "", "-r", ""], {"KEY": "abc", "RELAY_SERVERS": "r1"})
    assert (o.key, o.relay_servers) == ("", [])


def test_dotenv_format(tmp_path: Path) -> None:
    write(
        tmp_path / ".env",
        "# comment\n; another\n\nKEY = \"quoted value\"\nRELAY_SERVERS='a,b'\nBIND=\n",
    )
    o = parse(tmp_path)
    assert (o.key, o.relay_servers, o.bind) == ("quoted value", ["a", "b"], None)


def test_dotenv_is_read_from_the_working_directory_only(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other / ".env", "PORT=2222\n")
    assert parse(tmp_path).port == 21116
    assert parse(other).port == 2222


# -- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["-p", "abc"], {}, ["PORT", "abc"]),
        ([], {"PORT": "2"}, ["PORT", "3"]),
        (["-p", "0"], {}, ["PORT"]),
        (["-p", "65534"], {}, ["PORT", "65533"]),  # P+2 must be a port
        ([], {"PORT": "21116x"}, ["PORT", "21116x"]),
        (["-M", "-1"], {}, ["RMEM"]),
        (["-s", "four"], {}, ["SERIAL", "four"]),
        (["--mask", "192.168.0.0/33"], {}, ["mask", "192.168.0.0/33"]),
        ([], {"MASK": "2001:db8::/32"}, ["mask", "IPv4"]),
        ([], {"MASK": "lan"}, ["mask", "lan"]),
        ([], {"MAX_DATABASE_CONNECTIONS": "0"}, ["MAX_DATABASE_CONNECTIONS"]),
        ([], {"MAX_DATABASE_CONNECTIONS": "many"}, ["MAX_DATABASE_CONNECTIONS", "many"]),
        ([], {"TRUSTED_PROXIES": "127.0.0.1,proxy.local"}, ["TRUSTED_PROXIES", "proxy.local"]),
        ([], {"API_SERVER": "ftp://x"}, ["API_SERVER", "http"]),
        ([], {"MAX_FRAME_SIZE": "10"}, ["MAX_FRAME_SIZE"]),
        ([], {"MAX_PEERS_IN_MEMORY": "10"}, ["MAX_PEERS_IN_MEMORY"]),
        ([], {"MAX_CONNECTIONS": "0"}, ["MAX_CONNECTIONS"]),
        ([], {"REGISTER_BURST_PER_IP": "0"}, ["REGISTER_BURST_PER_IP"]),
    ],
)
def test_bad_values_raise_config_error_naming_the_option(
    tmp_path: Path, argv: list[str], env: dict[str, str], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, argv, env)
    message = str(info.value)
    for word in words:
        # Either spelling of a name is fine: '-' and '_' are interchangeable (§10.1).
        assert word.replace("-", "_") in message.replace("-", "_"), (word, message)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=r"nope\.conf"):
        parse(tmp_path, ["-c", str(missing)])


def test_malformed_dotenv_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path / ".env", "PORT=1\nthis line has no equals sign\n")
    with pytest.raises(ConfigError, match=r"\.env"):
        parse(tmp_path)


def test_unknown_flag_exits_with_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(tmp_path, ["--no-such-flag"])
    assert info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


# -- --help ----------------------------------------------------------------------------------


@pytest.fixture
def help_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        parse(tmp_path, ["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


SPEC_FLAGS = [
    "-c",
    "--config",
    "-b",
    "--bind",
    "-p",
    "--port",
    "-k",
    "--key",
    "-r",
    "--relay-servers",
    "-M",
    "--rmem",
    "-s",
    "--serial",
    "-R",
    "--rendezvous-servers",
    "-u",
    "--software-url",
    "--mask",
]
SPEC_VARIABLES = [
    "BIND",
    "PORT",
    "KEY",
    "RELAY-SERVERS",
    "RMEM",
    "SERIAL",
    "RENDEZVOUS-SERVERS",
    "SOFTWARE-URL",
    "MASK",
    "LOCAL-IP",
    "ALWAYS_USE_RELAY",
    "DB_URL",
    "MAX_DATABASE_CONNECTIONS",
    "TEST_HBBS",
]


def test_help_mentions_every_official_flag(help_text: str) -> None:
    tokens = set(re.findall(r"(?<![\w-])--?[\w-]+", help_text))
    missing = [flag for flag in SPEC_FLAGS if flag not in tokens]
    assert not missing, missing


def test_help_mentions_every_official_variable(help_text: str) -> None:
    words = {w.replace("-", "_") for w in re.findall(r"[A-Z][A-Z_-]+[A-Z]", help_text)}
    missing = [v for v in SPEC_VARIABLES if v.replace("-", "_") not in words]
    assert not missing, missing
    assert "RUST_LOG" in words


def test_help_mentions_every_pyhbb_option_with_flag_and_variable(help_text: str) -> None:
    flat = " ".join(help_text.split())
    for opt in ALL_OPTIONS:
        assert opt.name in flat, opt.name
        for flag in opt.flags:
            assert flag in flat, flag


def test_help_explains_precedence_and_ports(help_text: str) -> None:
    flat = " ".join(help_text.split())
    assert "flag > -c file > .env > environment" in flat
    assert "P-1" in flat and "P+2" in flat


@pytest.mark.parametrize(
    ("name", "attr", "default"),
    [
        ("PORT", "port", 21116),
        ("MAX_DATABASE_CONNECTIONS", "db_readers", 1),
        ("MAX_CONNECTIONS", "max_connections", 100_000),
        ("MAX_PEERS_IN_MEMORY", "max_peers", 2_000_000),
        ("RMEM", "rmem", 0),
    ],
)
def test_empty_numeric_value_means_the_default(
    tmp_path: Path, name: str, attr: str, default: int
) -> None:
    # Like DB_URL= and BIND=, an empty number (a blank line in a .env template) means
    # "not set" instead of 0 (which used to fail with "PORT=0 is out of range").
    assert getattr(parse(tmp_path, env={name: ""}), attr) == default
    write(tmp_path / ".env", f"{name}=\n")
    assert getattr(parse(tmp_path), attr) == default
