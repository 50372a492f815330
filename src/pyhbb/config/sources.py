"""Where option values come from, with the official servers' rules (§10.1).

Option names are case-insensitive and ``_``/``-`` are interchangeable: ``relay_servers``,
``RELAY-SERVERS`` and ``Relay_Servers`` all name one option. Values come from layers, each
overriding the previous: inherited environment, ``.env`` in the working directory, the
``-c/--config`` file, then command-line flags. Every value remembers where it was set, so
an error can tell the admin which line of which file to fix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

V = TypeVar("V")

# A settings file is a handful of KEY=value lines; anything bigger is a mistake (a log or
# a binary given to -c), refused before it is read into memory.
MAX_FILE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"  # written by some Windows editors; not part of the first key
_NEWLINE = re.compile(r"\r\n|\r|\n")


class ConfigError(Exception):
    """A configuration problem the admin must fix; the message says what and where."""


class Source(enum.Enum):
    """The layer a value came from, lowest precedence first."""

    DEFAULT = "default"
    ENVIRONMENT = "environment"
    DOTENV = ".env"
    CONFIG_FILE = "-c file"
    FLAG = "flag"


@dataclass(frozen=True)
class Setting:
    """One value as written by the admin, and where: ``origin`` reads "from .env line 3"."""

    text: str
    source: Source
    origin: str


def show(text: str, limit: int = 100) -> str:
    """``text`` as it can safely go into a one-line message: quoted when it is empty or has
    spaces or control characters (a hostile value must not forge log lines), and cut."""
    cut = text[:limit]
    plain = bool(cut) and cut.isprintable() and not any(c.isspace() for c in cut)
    out = cut if plain else repr(cut)
    return out if len(text) <= limit else f"{out}… ({len(text)} characters)"


def normalize_name(name: str) -> str:
    return name.upper().replace("_", "-")


def _pick(keys: Iterable[str], name: str) -> str:
    """Upstream's order among spellings: DASHED, UNDERSCORED, dashed, underscored, then A-Z."""
    dashed = normalize_name(name)
    preferred = [dashed, dashed.replace("-", "_"), dashed.lower(), dashed.replace("-", "_").lower()]
    keyset = set(keys)
    for candidate in preferred:
        if candidate in keyset:
            return candidate
    return min(keyset)


def layer(values: Mapping[str, V]) -> dict[str, V]:
    """Collapse one source's variables into ``{NORMALIZED-NAME: value}``."""
    by_name: dict[str, list[str]] = {}
    for key in values:
        by_name.setdefault(normalize_name(key), []).append(key)
    return {norm: values[_pick(keys, norm)] for norm, keys in by_name.items()}


def environment_settings(environ: Mapping[str, str]) -> dict[str, Setting]:
    return {k: Setting(v, Source.ENVIRONMENT, "from the environment") for k, v in environ.items()}


def _decode(data: bytes, label: str) -> str:
    skipped = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skipped + e.start
        line = data[:offset].count(b"\n") + 1
        raise ConfigError(
            f"{label} is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} "
            f"(line {line}); save it as UTF-8"
        ) from None


def parse_settings(text: str, label: str, source: Source) -> dict[str, Setting]:
    """``KEY=value`` lines as the official servers read ``.env`` (a section-less INI file).

    Blank lines and lines starting with ``#`` or ``;`` are skipped, ``[section]`` headers
    are ignored (their keys count like the others), spaces around keys and values are
    trimmed, one pair of matching quotes around a value is removed, and a repeated key
    keeps its last value. Any other line is an error naming its line number.
    """
    out: dict[str, Setting] = {}
    for number, raw in enumerate(_NEWLINE.split(text), start=1):
        line = raw.strip()
        if not line or line[0] in "#;" or (line[0] == "[" and line[-1] == "]"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"{label} line {number}: expected KEY=value, found {show(line)}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = Setting(value, source, f"from {label} line {number}")
    return out


def read_settings_file(path: Path, label: str, source: Source) -> dict[str, Setting]:
    """Read and parse a settings file; every problem is a one-line :class:`ConfigError`."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"settings file {label} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"settings file {label} is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read settings file {label}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{label} is larger than {MAX_FILE_BYTES >> 20} MiB: not a KEY=value settings file"
        )
    return parse_settings(_decode(data, label), label, source)


def load_settings(
    environ: Mapping[str, str], workdir: Path, config_file: str | None = None
) -> dict[str, Setting]:
    """Environment, then ``.env`` in ``workdir``, then the ``-c`` file (relative to
    ``workdir``), merged by normalised name."""
    layers = [environment_settings(environ)]
    dotenv = workdir / ".env"
    if dotenv.is_file():  # absent (or not a file): nothing to read, as upstream
        layers.append(read_settings_file(dotenv, show(str(dotenv)), Source.DOTENV))
    if config_file is not None:
        label = show(config_file)
        layers.append(read_settings_file(workdir / config_file, label, Source.CONFIG_FILE))
    merged: dict[str, Setting] = {}
    for values in layers:
        merged.update(layer(values))
    return merged


class OptionSource:
    """Transitional: the look-up API from before :mod:`pyhbb.config.options`, kept only so
    code written against it (``pyhbb api`` on its branch) keeps working until it declares
    its options with ``options.py``. Do not use it in new code."""

    def __init__(self, layers: Iterable[Mapping[str, str]] = ()) -> None:
        self._values: dict[str, str] = {}
        for values in layers:
            self._values.update(layer(values))

    @classmethod
    def load(
        cls, environ: Mapping[str, str], workdir: Path, config_file: Path | None = None
    ) -> OptionSource:
        settings = load_settings(
            environ, workdir, None if config_file is None else str(config_file)
        )
        return cls([{name: s.text for name, s in settings.items()}])

    def get(self, name: str) -> str | None:
        return self._values.get(normalize_name(name))

    def as_dict(self) -> dict[str, str]:
        return dict(self._values)

    def get_str(self, name: str, default: str) -> str:
        value = self.get(name)
        return default if value is None else value

    def get_int(self, name: str, default: int) -> int:
        value = (self.get(name) or "").strip()
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{normalize_name(name)}={show(value)} is not an integer") from None

    def get_bool(self, name: str, default: bool) -> bool:
        value = (self.get(name) or "").strip()
        return default if not value else value.upper() in ("Y", "YES", "TRUE", "1", "ON")
