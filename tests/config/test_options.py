"""The generic option module on its own, with a small made-up command (§10.1 rules)."""

from __future__ import annotations

import ipaddress
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyhbb.config import options as options_module
from pyhbb.config.options import (
    OFFICIAL,
    BadValue,
    CommandSpec,
    Option,
    ValueParser,
    address,
    build_parser,
    comma_list,
    flag_values,
    host_port,
    http_url,
    ipv4_network,
    networks,
    parse_argument,
    parse_command,
    path,
    port_number,
    positive_number,
    split_host_port,
    text,
    whole_number,
    y_means_yes,
    yes_no,
)
from pyhbb.config.sources import ConfigError, Source

PORT = Option(
    "PORT", port_number(2, 60000), "4000", "the port", flags=("-p", "--port"), group=OFFICIAL
)
NAME = Option("SERVER_NAME", text(), "", "a name, 100% free text", flags=("--server-name",))
RATE = Option("RATE", positive_number(), "1.5", "a rate")
FAST = Option("FAST", yes_no(), "N", "go fast", flags=("--fast",), metavar="Y|N")
PEERS = Option("PEERS", comma_list(host_port(7)), "a,b:8", "peers", flags=("--peers",))
LOG = Option("RUST_LOG", text(), "", "logging", environment_only=True)
SPEC = CommandSpec(
    prog="demo",
    description="A demo command.",
    options=(PORT, NAME, RATE, FAST, PEERS, LOG),
    epilog="the demo epilog",
)


def parse(
    tmp_path: Path, argv: list[str] | None = None, env: dict[str, str] | None = None
) -> options_module.Values:
    return parse_command(SPEC, argv or [], env or {}, tmp_path)


def refused(
    tmp_path: Path, argv: list[str] | None = None, env: dict[str, str] | None = None
) -> str:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, argv, env)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- typed values and sources ----------------------------------------------------------------


def test_defaults_are_parsed_and_typed(tmp_path: Path) -> None:
    v = parse(tmp_path)
    assert (v[PORT], v[NAME], v[RATE], v[FAST], v[PEERS], v[LOG]) == (
        4000,
        "",
        1.5,
        False,
        ["a", "b:8"],
        "",
    )
    assert all(v.source(o) is Source.DEFAULT for o in SPEC.options)


def test_precedence_flag_then_config_file_then_dotenv_then_environment(tmp_path: Path) -> None:
    env = {"port": "1001", "SERVER-NAME": "env", "rate": "1", "FAST": "n"}
    (tmp_path / ".env").write_text("Port=1002\nserver_name=dotenv\nRATE=2\n")
    (tmp_path / "extra.conf").write_text("PORT = 1003\n")
    v = parse(tmp_path, ["-c", "extra.conf", "--port", "1004"], env)
    assert (v[PORT], v[NAME], v[RATE], v[FAST]) == (1004, "dotenv", 2.0, False)
    assert [v.source(o) for o in (PORT, NAME, RATE, FAST)] == [
        Source.FLAG,
        Source.DOTENV,
        Source.DOTENV,
        Source.ENVIRONMENT,
    ]
    v = parse(tmp_path, ["--config", "extra.conf"], env)
    assert (v[PORT], v.source(PORT)) == (1003, Source.CONFIG_FILE)
    assert parse(tmp_path, [], env)[PORT] == 1002
    (tmp_path / ".env").unlink()
    assert parse(tmp_path, [], env)[PORT] == 1001


def test_blank_means_default_for_numbers_and_switches_only(tmp_path: Path) -> None:
    v = parse(tmp_path, ["--port", " "], {"RATE": "", "FAST": "", "PEERS": "", "SERVER_NAME": ""})
    assert (v[PORT], v[RATE], v[FAST]) == (4000, 1.5, False)
    assert v.source(PORT) is Source.DEFAULT  # a blank value counts as "not set"
    assert (v[PEERS], v[NAME]) == ([], "")  # an empty list or text is a value


def test_environment_only_option_ignores_files(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RUST_LOG=trace\n")
    (tmp_path / "c.conf").write_text("RUST_LOG=trace\n")
    assert parse(tmp_path, ["-c", "c.conf"])[LOG] == ""
    assert parse(tmp_path, ["-c", "c.conf"], {"rust-log": "debug"})[LOG] == "debug"


# -- errors: one line naming the option, the value, the expectation and the place ------------


def test_error_from_a_flag(tmp_path: Path) -> None:
    assert refused(tmp_path, ["-p", "1"]) == (
        "PORT=1 is out of range: expected a port number from 2 to 60000 (given as -p/--port)"
    )


def test_error_from_the_environment_names_the_flag_too(tmp_path: Path) -> None:
    assert refused(tmp_path, env={"fast": "maybe"}) == (
        "FAST=maybe is neither yes nor no: expected Y or N (from the environment; flag --fast)"
    )


def test_error_from_dotenv_names_the_right_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# settings\n\nPORT=4001\nRATE=fast\n")
    assert refused(tmp_path) == (
        f"RATE=fast is not a number: expected a number above 0 (from {dotenv} line 4)"
    )


def test_error_from_the_config_file_names_it_as_given(tmp_path: Path) -> None:
    (tmp_path / "my.conf").write_text("[section headers are ignored]\nPEERS=x,y:0\n")
    message = refused(tmp_path, ["-c", "my.conf"])
    assert message.startswith("PEERS=x,y:0 has port 0, which is not a port number: expected ")
    assert message.endswith("(from my.conf line 2; flag --peers)")


def test_hostile_values_are_quoted_and_cut(tmp_path: Path) -> None:
    message = refused(tmp_path, env={"PORT": "1\n\x1b[2Jforged line"})
    assert message.startswith(r"PORT='1\n\x1b[2Jforged line' is not a whole number")
    message = refused(tmp_path, env={"RATE": "9" * 5000 + "x"})
    assert "… (5001 characters)" in message and len(message) < 400
    # undecodable bytes in the environment arrive as surrogates: still one printable line
    message = refused(tmp_path, env={"PORT": "\udcff"})
    assert message.startswith(r"PORT='\udcff' ") and message.isascii()


def test_rule_spanning_options_has_the_same_shape(tmp_path: Path) -> None:
    v = parse(tmp_path, env={"PORT": "5000"})
    assert str(v.refuse(PORT, "is taken", "a free port")) == (
        "PORT=5000 is taken: expected a free port (from the environment; flag -p/--port)"
    )
    assert (
        str(parse(tmp_path).refuse(PORT, "is odd", "x"))
        == "PORT=4000 is odd: expected x (the default)"
    )


def test_usage_errors_and_help_exit_through_argparse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(tmp_path, ["--nope"])
    assert info.value.code == 2 and "--nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        parse(tmp_path, ["--help"])
    assert info.value.code == 0


# -- --help ----------------------------------------------------------------------------------


def test_help_shows_each_option_with_its_variable_and_default() -> None:
    out = " ".join(build_parser(SPEC).format_help().split())
    assert "options of the official demo: -p VALUE, --port VALUE the port. Variable: PORT." in out
    assert "Default: 4000" in out
    assert "pyhbb options:" in out and "a name, 100% free text. Variable: SERVER_NAME." in out
    assert "Default: empty" in out
    assert "-c FILE, --config FILE" in out
    assert "Precedence: flag > -c file > .env > environment." in out
    assert "variables without a flag: RATE a rate (default: 1.5) RUST_LOG logging" in out
    assert out.endswith("the demo epilog")


def test_titles_rename_groups() -> None:
    spec = CommandSpec("other", "x", (PORT, FAST), titles={OFFICIAL: "as in hbbs"})
    out = build_parser(spec).format_help()
    assert "as in hbbs:" in out and "official" not in out and "pyhbb options:" in out


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ((PORT, PORT.but(flags=())), "declared twice"),
        ((PORT, NAME.but(flags=("-p",))), "reuses a flag"),
        ((NAME.but(flags=("-c",)),), "reuses a flag"),
        ((LOG.but(flags=("--log",)),), "environment-only"),
    ],
)
def test_spec_mistakes_fail_at_import(options: tuple[Option[Any], ...], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CommandSpec("bad", "x", options)


def test_a_default_that_does_not_parse_fails_at_import() -> None:
    with pytest.raises(ConfigError, match="the default"):
        CommandSpec("bad", "x", (PORT.but(default="1"),))


# -- helpers for launchers and non-option arguments ------------------------------------------


def test_flag_values_whatever_the_spelling() -> None:
    assert flag_values(SPEC, ["-p1", "--peers=x", "--fa", "Y", "-c", "f"]) == {
        "PORT": "1",
        "PEERS": "x",
        "FAST": "Y",
        "config": "f",
    }
    assert flag_values(SPEC, []) == {}


def test_parse_argument() -> None:
    assert parse_argument("HOST", host_port(5), "h:6") == "h:6"
    with pytest.raises(ConfigError) as info:
        parse_argument("HOST", host_port(5), "h:x")
    assert str(info.value) == (
        "HOST=h:x has port x, which is not a port number: expected host[:port] "
        "(port 5 when omitted) (on the command line)"
    )


def test_docstring_example_runs(tmp_path: Path) -> None:
    doc = options_module.__doc__ or ""
    block = doc.split("live in :mod:`pyhbb.config.shared`)::\n", 1)[1].split("\n``values", 1)[0]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(block), namespace)
    api = namespace["parse_api_options"](["--api-port", "8080"], {"BIND": "::1"}, tmp_path)
    assert (api.port, api.bind, api.db_url) == (8080, "::1", "./db_v2.sqlite3")
    with pytest.raises(ConfigError, match=r"^API_PORT=0 is out of range"):
        namespace["parse_api_options"]([], {"api_port": "0"}, tmp_path)
    out = build_parser(namespace["SPEC"]).format_help()
    assert "options shared with hbbs:" in out and "--api-port" in out


# -- value parsers ---------------------------------------------------------------------------

GOOD: list[tuple[ValueParser[Any], str, object]] = [
    (whole_number(-5, 5), " -5 ", -5),
    (whole_number(0, 10), "+7", 7),
    (port_number(), "65535", 65535),
    (positive_number(), "0.5", 0.5),
    (positive_number(), "1e3", 1000.0),
    (positive_number(), ".25", 0.25),
    (positive_number(10), "10", 10.0),
    (yes_no(), "y", True),
    (yes_no(), "Yes", True),
    (yes_no(), "on", True),
    (yes_no(), "1", True),
    (yes_no(), "n", False),
    (yes_no(), "FALSE", False),
    (yes_no(), "off", False),
    (y_means_yes(), "y", True),
    (y_means_yes(), "yes", False),  # the official rule: only Y is on
    (text(), " a b ", " a b "),
    (text(strip=True), " a b ", "a b"),
    (path(), "/var/lib/x.sqlite3", "/var/lib/x.sqlite3"),
    (address(), "", None),
    (address(), "::1", "::1"),
    (address(), "fe80::1%eth0", "fe80::1%eth0"),
    (address(), "0.0.0.0", "0.0.0.0"),
    (address(), "localhost", "localhost"),
    (address(), "relay_1.example.com.", "relay_1.example.com."),
    (host_port(21117), " relay.example:1 ", "relay.example:1"),
    (host_port(21117), "[2001:db8::1]:21117", "[2001:db8::1]:21117"),
    (host_port(21117), "2001:db8::1", "2001:db8::1"),
    (comma_list(), " a, ,b ,", ["a", "b"]),
    (comma_list(host_port(1)), "a:2,[::1]", ["a:2", "[::1]"]),
    (
        networks(),
        "10.0.0.0/8, 192.0.2.1",
        [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.0.2.1")],
    ),
    (networks(), "", []),
    (ipv4_network(), "192.168.1.0/24", "192.168.1.0/24"),
    (ipv4_network(), "192.168.1.1/16", "192.168.1.1/16"),  # host bits allowed, as upstream
    (ipv4_network(), " ", None),
    (http_url(), "https://api.example:8443/base", "https://api.example:8443/base"),
    (http_url(("none",)), "NONE", ""),
    (http_url(), "", ""),
]


@pytest.mark.parametrize(("parser", "given", "value"), GOOD)
def test_parsers_accept(parser: ValueParser[Any], given: str, value: object) -> None:
    assert parser.convert(given) == value


BAD: list[tuple[ValueParser[Any], str, str]] = [
    (whole_number(0, 10), "abc", "is not a whole number"),
    (whole_number(0, 10), "1.0", "is not a whole number"),
    (whole_number(0, 10), "1_0", "is not a whole number"),
    (whole_number(0, 10), "١", "is not a whole number"),  # non-ASCII digit
    (whole_number(0, 10), "11", "is out of range"),
    (whole_number(0, 10), "-1", "is out of range"),
    (port_number(), "0", "is out of range"),
    (port_number(), "65536", "is out of range"),
    (positive_number(), "0", "is out of range"),
    (positive_number(), "-1", "is not a number"),
    (positive_number(), "nan", "is not a number"),
    (positive_number(), "inf", "is not a number"),
    (positive_number(), "1e999", "is out of range"),
    (positive_number(), "1_0", "is not a number"),
    (positive_number(10), "10.5", "is out of range"),
    (yes_no(), "maybe", "is neither yes nor no"),
    (path(), "a\0b", "contains a NUL character"),
    (address(), "0.0.0.0:21116", "is not an IP address or host name"),
    (address(), "bad host", "is not an IP address or host name"),
    (address(), "-x.example", "is not an IP address or host name"),
    (host_port(1), "h:", "has port '', which is not a port number"),
    (host_port(1), "h:70000", "has port 70000, which is not a port number"),
    (host_port(1), "[::1", "has an unclosed or misplaced ']'"),
    (host_port(1), "[::1]x", "has an unclosed or misplaced ']'"),
    (host_port(1), ":21116", "has '', which is not an IP address or host name"),
    (host_port(1), "a b:1", "has 'a b', which is not an IP address or host name"),
    (comma_list(host_port(1)), "ok,bad:port", "has port port, which is not a port number"),
    (networks(), "10.0.0.0/8,proxy.local", "has proxy.local, which is not an IP network"),
    (networks(), "10.0.0.0/33", "has 10.0.0.0/33, which is not an IP network"),
    (ipv4_network(), "2001:db8::/32", "is not an IPv4 network"),
    (ipv4_network(), "lan", "is not an IPv4 network"),
    (http_url(), "ftp://x", "is not an http:// or https:// URL"),
    (http_url(), "http://", "is not an http:// or https:// URL"),
    (http_url(), "http://h:99999", "is not a URL"),
    (http_url(), "none", "is not an http:// or https:// URL"),  # no off word declared
]


@pytest.mark.parametrize(("parser", "given", "reason"), BAD)
def test_parsers_refuse_with_a_reason(parser: ValueParser[Any], given: str, reason: str) -> None:
    with pytest.raises(BadValue) as info:
        parser.convert(given)
    assert info.value.reason == reason


def test_every_parser_describes_what_it_expects() -> None:
    for parser, _, _ in GOOD + BAD:
        assert parser.expected and not parser.expected.endswith(".")
        assert re.fullmatch(r"[^\n]+", parser.expected)


def test_split_host_port() -> None:
    assert split_host_port("h", 9) == ("h", 9)
    assert split_host_port("[::1]:80", 9) == ("::1", 80)
    assert split_host_port("[::1]", 9) == ("::1", 9)
    assert split_host_port("::1", 9) == ("::1", 9)
    assert split_host_port(" 10.0.0.1:21116 ", 9) == ("10.0.0.1", 21116)
