"""Every command's real ``main()`` with a bad value of every option kind: exit status 2 and
exactly one line on stderr naming the option, the value, what is expected and where."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhbb import cli as pyhbb_cli
from pyhbb.config import hbbr, hbbs
from pyhbb.config.sources import normalize_name
from pyhbb.relay import cli as hbbr_cli
from pyhbb.rendezvous import cli as hbbs_cli

# A case that wrongly parses would start a server: let it fail by timeout, not hang.
pytestmark = pytest.mark.timeout(60)

Main = Callable[[list[str] | None], int]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and an environment without any of our variables."""
    names = {normalize_name(o.name) for o in hbbs.ALL_OPTIONS + hbbr.ALL_OPTIONS}
    for key in list(os.environ):
        if normalize_name(key) in names:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(
    main: Main, argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2
) -> str:
    assert main(argv) == status
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


# -- hbbs -------------------------------------------------------------------------------------

HBBS_CASES = [
    # (argv, environment, .env text, expected line after "hbbs: ")
    (
        ["-p", "2"],
        {},
        "",
        "PORT=2 is out of range: expected a port number from 3 to 65533 (given as -p/--port)",
    ),
    (
        [],
        {"max_connections": "0"},
        "",
        "MAX_CONNECTIONS=0 is out of range: expected a whole number from 1 to 16777216 "
        "(from the environment; flag --max-connections)",
    ),
    (
        [],
        {},
        "# serial\nSERIAL=four\n",
        "SERIAL=four is not a whole number: expected a whole number from -2147483648 to "
        "2147483647 (from {dotenv} line 2; flag -s/--serial)",
    ),
    (
        ["--console", "maybe"],
        {},
        "",
        "CONSOLE=maybe is neither yes nor no: expected Y or N (given as --console)",
    ),
    (
        ["-r", "r1.example,r2.example:relay"],
        {},
        "",
        "RELAY_SERVERS=r1.example,r2.example:relay has port relay, which is not a port number: "
        "expected a comma-separated list of host[:port] (port 21117 when omitted) "
        "(given as -r/--relay-servers)",
    ),
    (
        [],
        {"TEST_HBBS": "127.0.0.1:0"},
        "",
        "TEST_HBBS=127.0.0.1:0 has port 0, which is not a port number: "
        "expected 'no', empty, or IP:port (from the environment)",
    ),
    (
        ["--trusted-proxies", "127.0.0.1,proxy.local"],
        {},
        "",
        "TRUSTED_PROXIES=127.0.0.1,proxy.local has proxy.local, which is not an IP network: "
        "expected comma-separated IP addresses or networks such as 10.0.0.0/8 "
        "(given as --trusted-proxies)",
    ),
    (
        [],
        {"API_SERVER": "ftp://api"},
        "",
        "API_SERVER=ftp://api is not an http:// or https:// URL: expected an http:// or "
        "https:// URL or 'none' (from the environment; flag --api-server)",
    ),
    (
        [],
        {"mask": "lan"},
        "",
        "MASK=lan is not an IPv4 network: expected an IPv4 network such as 192.168.0.0/16 "
        "(from the environment; flag --mask)",
    ),
    (
        [],
        {},
        "BIND=0.0.0.0:21116\n",
        "BIND=0.0.0.0:21116 is not an IP address or host name: expected an IP address "
        "or host name without a port, or empty (from {dotenv} line 1; flag -b/--bind)",
    ),
    (
        [],
        {},
        "DB_URL=db\x00.sqlite3\n",
        "DB_URL='db\\x00.sqlite3' contains a NUL character: expected a file path "
        "(from {dotenv} line 1)",
    ),
]


@pytest.mark.parametrize(("argv", "env", "dotenv", "expected"), HBBS_CASES)
def test_hbbs_bad_value(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    dotenv: str,
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if dotenv:
        (workdir / ".env").write_text(dotenv)
    line = one_line_error(hbbs_cli.main, argv, capsys)
    assert line == "hbbs: " + expected.format(dotenv=workdir / ".env")
    assert not (workdir / "id_ed25519").exists()  # refused before touching anything


def test_hbbs_bad_value_in_config_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / ".env").write_text("MAX_FRAME_SIZE=2048\n")
    (workdir / "hbbs.conf").write_text("\n\nmax-frame-size = 10\n")
    line = one_line_error(hbbs_cli.main, ["-c", "hbbs.conf"], capsys)
    assert line == (
        "hbbs: MAX_FRAME_SIZE=10 is out of range: expected a whole number from 1024 to "
        "67108864 (from hbbs.conf line 3; flag --max-frame-size)"
    )


# -- hbbr -------------------------------------------------------------------------------------

HBBR_CASES = [
    (
        [],
        {"PORT": "0"},
        "",
        "PORT=0 is out of range: expected a port number from 1 to 65533 "
        "(from the environment; flag -p/--port)",
    ),
    (
        [],
        {"PORT": "65533"},
        "",
        "PORT=65533 is too high for the relay, which listens on PORT+1 and PORT+3: "
        "expected a port number from 1 to 65532 (from the environment; flag -p/--port)",
    ),
    (
        ["-p", "notaport"],
        {},
        "",
        "PORT=notaport is not a whole number: expected a port number from 1 to 65533 "
        "(given as -p/--port)",
    ),
    (
        [],
        {"TOTAL_BANDWIDTH": "abc"},
        "",
        "TOTAL_BANDWIDTH=abc is not a number: expected a number above 0 (from the environment)",
    ),
    (
        [],
        {},
        "SINGLE_BANDWIDTH=-1\n",
        "SINGLE_BANDWIDTH=-1 is not a number: expected a number above 0 (from {dotenv} line 1)",
    ),
    (
        [],
        {"limit-speed": "0"},
        "",
        "LIMIT_SPEED=0 is out of range: expected a number above 0 (from the environment)",
    ),
    (
        [],
        {"DOWNGRADE_THRESHOLD": "nan"},
        "",
        "DOWNGRADE_THRESHOLD=nan is not a number: expected a number above 0 (from the environment)",
    ),
    (
        [],
        {},
        "\nDOWNGRADE_START_CHECK=1.5\n",
        "DOWNGRADE_START_CHECK=1.5 is not a whole number: expected a whole number from 1 to "
        "2147483648 (from {dotenv} line 2)",
    ),
    (
        ["--max-waiting-per-ip", "0"],
        {},
        "",
        "MAX_WAITING_PER_IP=0 is out of range: expected a whole number from 1 to 2147483648 "
        "(given as --max-waiting-per-ip)",
    ),
    (
        ["-b", "::1:21117"],
        {},
        "",
        "BIND=::1:21117 is not an IP address or host name: expected an IP address or host "
        "name without a port, or empty (given as -b/--bind)",
    ),
    (
        [],
        {"TRUSTED_PROXIES": "10.0.0.0/33"},
        "",
        "TRUSTED_PROXIES=10.0.0.0/33 has 10.0.0.0/33, which is not an IP network: expected "
        "comma-separated IP addresses or networks such as 10.0.0.0/8 "
        "(from the environment; flag --trusted-proxies)",
    ),
]


@pytest.mark.parametrize(("argv", "env", "dotenv", "expected"), HBBR_CASES)
def test_hbbr_bad_value(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    dotenv: str,
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if dotenv:
        (workdir / ".env").write_text(dotenv)
    line = one_line_error(hbbr_cli.main, argv, capsys)
    assert line == "hbbr: " + expected.format(dotenv=workdir / ".env")


def test_hbbr_bad_value_in_config_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "relay.conf").write_text("KEY=-\nTOTAL_BANDWIDTH = 0\n")
    line = one_line_error(hbbr_cli.main, ["--config", "relay.conf"], capsys)
    assert line == (
        "hbbr: TOTAL_BANDWIDTH=0 is out of range: expected a number above 0 "
        "(from relay.conf line 2)"
    )
    assert not (workdir / "id_ed25519").exists()


# -- settings files, for both servers ----------------------------------------------------------

SERVERS = [("hbbs", hbbs_cli.main), ("hbbr", hbbr_cli.main)]


@pytest.mark.parametrize(("prog", "main"), SERVERS)
def test_dotenv_not_utf8(
    workdir: Path, capsys: pytest.CaptureFixture[str], prog: str, main: Main
) -> None:
    (workdir / ".env").write_bytes(b"PORT=21116\nKEY=cl\xe9\n")
    assert one_line_error(main, [], capsys) == (
        f"{prog}: {workdir / '.env'} is not UTF-8 text: byte 0xe9 at offset 17 (line 2); "
        "save it as UTF-8"
    )


@pytest.mark.parametrize(("prog", "main"), SERVERS)
def test_config_file_not_utf8(
    workdir: Path, capsys: pytest.CaptureFixture[str], prog: str, main: Main
) -> None:
    (workdir / "x.conf").write_bytes(b"\xff")
    assert one_line_error(main, ["-c", "x.conf"], capsys) == (
        f"{prog}: x.conf is not UTF-8 text: byte 0xff at offset 0 (line 1); save it as UTF-8"
    )


@pytest.mark.parametrize(("prog", "main"), SERVERS)
def test_dotenv_parse_error_names_the_right_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], prog: str, main: Main
) -> None:
    (workdir / ".env").write_text("# my settings\nPORT=21116\nthis line has no equals sign\n")
    assert one_line_error(main, [], capsys) == (
        f"{prog}: {workdir / '.env'} line 3: expected KEY=value, "
        "found 'this line has no equals sign'"
    )


@pytest.mark.parametrize(("prog", "main"), SERVERS)
def test_config_file_missing_or_a_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str], prog: str, main: Main
) -> None:
    assert one_line_error(main, ["-c", "nope.conf"], capsys) == (
        f"{prog}: settings file nope.conf does not exist"
    )
    (workdir / "conf.d").mkdir()
    assert one_line_error(main, ["--config", "conf.d"], capsys) == (
        f"{prog}: settings file conf.d is a directory, not a file"
    )


# -- pyhbb run and pyhbb check ----------------------------------------------------------------


def test_run_refuses_a_bad_hbbs_value_before_starting_anything(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(pyhbb_cli.main, ["run", "--", "-p", "2"], capsys)
    assert line == (
        "pyhbb: PORT=2 is out of range: expected a port number from 3 to 65533 (given as -p/--port)"
    )
    assert not (workdir / "id_ed25519").exists()


def test_run_hands_the_config_file_to_hbbr(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only hbbr reads TOTAL_BANDWIDTH: the error proves hbbr's arguments name the -c file.
    (workdir / "both.conf").write_text("RELAY_SERVERS=r.example\nTOTAL_BANDWIDTH=fast\n")
    line = one_line_error(pyhbb_cli.main, ["run", "--", "-c", "both.conf"], capsys)
    assert line == (
        "pyhbb: TOTAL_BANDWIDTH=fast is not a number: expected a number above 0 "
        "(from both.conf line 2)"
    )
    assert not (workdir / "id_ed25519").exists()


def test_run_checks_hbbr_args(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(pyhbb_cli.main, ["run", "--hbbr-arg=--max-waiting=0"], capsys)
    assert line == (
        "pyhbb: MAX_WAITING=0 is out of range: expected a whole number from 1 to 2147483648 "
        "(given as --max-waiting)"
    )


def test_run_derives_hbbr_args_from_hbbs_args(workdir: Path) -> None:
    (workdir / "a.conf").write_text("")
    (workdir / "b.conf").write_text("")
    derived = pyhbb_cli._hbbr_args(["-p", "30000", "-b", "127.0.0.1", "-c", "a.conf"], [])
    assert derived == [
        "-k",
        "-",
        "-p",
        "30001",
        "-b",
        "127.0.0.1",
        "-c",
        "a.conf",
        "--metrics",  # pyhbb run's default monitoring: hbbs's address, port + 1
        "127.0.0.1:9117",
    ]
    explicit = ["--port=40000", "--bi", "::1", "-cb.conf"]
    derived = pyhbb_cli._hbbr_args(["-p", "30000", "-b", "127.0.0.1", "-c", "a.conf"], explicit)
    assert derived == ["-k", "-", "--metrics", "127.0.0.1:9117", *explicit]
    assert hbbr.parse_options(derived, {}, workdir).port == 40000


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["check", "example.com:port"],
            "pyhbb check: HOST[:PORT]=example.com:port has port port, which is not a port "
            "number: expected host[:port] (port 21116 when omitted) (on the command line)",
        ),
        (
            ["check", "example.com", "--relay", "[2001:db8::1"],
            "pyhbb check: --relay=[2001:db8::1 has an unclosed or misplaced ']': "
            "expected host[:port] (port 21117 when omitted) (on the command line)",
        ),
    ],
)
def test_check_bad_address(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert one_line_error(pyhbb_cli.main, argv, capsys) == expected
