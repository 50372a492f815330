"""Settings files (.env and -c): format, line numbers, encodings and bounds (§10.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhbb.config.sources import (
    MAX_FILE_BYTES,
    ConfigError,
    OptionSource,
    Source,
    load_settings,
    parse_settings,
    read_settings_file,
    show,
)


def values(text: str) -> dict[str, str]:
    return {k: s.text for k, s in parse_settings(text, "f", Source.DOTENV).items()}


def test_format() -> None:
    text = (
        "# comment\n"
        "; another\n"
        "\n"
        '  KEY = "quoted value"  \n'
        "RELAY_SERVERS='a,b'\n"
        "BIND=\n"
        "MIXED=\"not' stripped\n"
        "EQUALS=a=b\n"
        "[ignored section header]\n"
        "    INDENTED=own line\n"
        "SAME=1\n"
        "SAME=2\n"
        "HASH=a # not a comment\n"
    )
    assert values(text) == {
        "KEY": "quoted value",
        "RELAY_SERVERS": "a,b",
        "BIND": "",
        "MIXED": "\"not' stripped",
        "EQUALS": "a=b",
        "INDENTED": "own line",
        "SAME": "2",
        "HASH": "a # not a comment",
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_numbers_are_exact_with_any_newline(newline: str) -> None:
    text = newline.join(["# one", "", "A=1", "B=2", ""])
    parsed = parse_settings(text, "my.env", Source.CONFIG_FILE)
    assert parsed["A"].origin == "from my.env line 3"
    assert parsed["B"].origin == "from my.env line 4"
    assert parsed["B"].source is Source.CONFIG_FILE


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ("A=1\nno equals sign here\n", 2, "'no equals sign here'"),
        ("broken\n", 1, "broken"),
        ("\n\n# c\n=value\n", 4, "=value"),
        ("A=1\r\nB=2\r\nC\r\n", 3, "C"),
    ],
)
def test_malformed_line_names_its_own_number(text: str, line: int, shown: str) -> None:
    # configparser, used before, counted a prepended "[root]" header: one line too many.
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "/srv/.env", Source.DOTENV)
    assert str(info.value) == f"/srv/.env line {line}: expected KEY=value, found {shown}"


def test_not_utf8_names_offset_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"PORT=1\nRELAY_SERVERS=caf" + b"\xe9\n")
    with pytest.raises(ConfigError) as info:
        read_settings_file(bad, "latin1.conf", Source.CONFIG_FILE)
    assert str(info.value) == (
        "latin1.conf is not UTF-8 text: byte 0xe9 at offset 24 (line 2); save it as UTF-8"
    )


def test_utf8_with_bom_and_non_ascii_values(tmp_path: Path) -> None:
    f = tmp_path / "bom.conf"
    f.write_bytes(b"\xef\xbb\xbfKEY=caf\xc3\xa9\n")
    assert read_settings_file(f, "bom.conf", Source.CONFIG_FILE)["KEY"].text == "café"
    f.write_bytes(b"\xef\xbb\xbfA=1\n\xff")
    with pytest.raises(ConfigError, match=r"byte 0xff at offset 7 \(line 2\)"):
        read_settings_file(f, "bom.conf", Source.CONFIG_FILE)


def test_missing_directory_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^settings file nope\.conf does not exist$"):
        read_settings_file(tmp_path / "nope.conf", "nope.conf", Source.CONFIG_FILE)
    with pytest.raises(ConfigError, match=r"^settings file d is a directory, not a file$"):
        read_settings_file(tmp_path, "d", Source.CONFIG_FILE)
    big = tmp_path / "big.conf"
    big.write_bytes(b"#" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(ConfigError, match=r"^big\.conf is larger than 1 MiB"):
        read_settings_file(big, "big.conf", Source.CONFIG_FILE)


def test_unreadable_file(tmp_path: Path) -> None:
    loop = tmp_path / "loop.conf"
    loop.symlink_to(loop)  # unreadable even for root, unlike a chmod 0 file
    with pytest.raises(ConfigError, match=r"^cannot read settings file loop\.conf: .*symbolic"):
        read_settings_file(loop, "loop.conf", Source.CONFIG_FILE)


def test_load_settings_layers_and_relative_config(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("b=dotenv\nC=dotenv\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.conf").write_text("C=config\n")
    merged = load_settings({"A": "env", "B": "env"}, tmp_path, "sub/x.conf")
    assert {k: s.text for k, s in merged.items()} == {"A": "env", "B": "dotenv", "C": "config"}
    assert merged["C"].origin == "from sub/x.conf line 1"
    assert merged["B"].origin == f"from {tmp_path / '.env'} line 1"


def test_dotenv_directory_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    assert load_settings({"A": "1"}, tmp_path)["A"].text == "1"


def test_show() -> None:
    assert show("abc") == "abc"
    assert show("") == "''"
    assert show("a b") == "'a b'"
    assert show("a\x1b[0m") == r"'a\x1b[0m'"
    assert show("x" * 10, limit=4) == "xxxx… (10 characters)"


def test_transitional_option_source(tmp_path: Path) -> None:
    # Kept for code not yet declared with options.py (pyhbb api on its branch).
    (tmp_path / ".env").write_text("relay_servers=dotenv\nN=\n")
    (tmp_path / "c.conf").write_text("Port=7\nB=yes\n")
    src = OptionSource.load({"PORT": "1", "X": "x"}, tmp_path, tmp_path / "c.conf")
    layered = OptionSource([{"PORT": "0", "N": "5"}, src.as_dict()])
    assert (layered.get_int("port", 0), layered.get_str("RELAY-SERVERS", "")) == (7, "dotenv")
    assert (layered.get_int("N", 5), layered.get_bool("b", False), layered.get("x")) == (
        5,
        True,
        "x",
    )
    with pytest.raises(ConfigError, match="X=x is not an integer"):
        layered.get_int("X", 0)
    with pytest.raises(ConfigError, match=r"\.env line 3: expected KEY=value"):
        (tmp_path / ".env").write_text("A=1\n\nbroken\n")
        OptionSource.load({}, tmp_path)
