"""Option look-up with the official servers' rules (docs/protocol.md §10.1).

Option names are case-insensitive and ``_``/``-`` are interchangeable: ``relay_servers``,
``RELAY-SERVERS`` and ``Relay_Servers`` all name one option. Values come from layers, each
overriding the previous: inherited environment, ``.env`` in the working directory, an
optional ``--config`` file (hbbs only), then command-line flags (applied by the caller).
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable, Mapping
from pathlib import Path


class ConfigError(Exception):
    """A configuration problem the admin must fix; the message says what and where."""


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


def layer(values: Mapping[str, str]) -> dict[str, str]:
    """Collapse one source's variables into ``{NORMALIZED-NAME: value}``."""
    by_name: dict[str, list[str]] = {}
    for key in values:
        by_name.setdefault(normalize_name(key), []).append(key)
    return {norm: values[_pick(keys, norm)] for norm, keys in by_name.items()}


def read_ini(path: Path) -> dict[str, str]:
    """Read a section-less INI file (``KEY=value`` lines, ``#``/``;`` comments)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    try:
        parser.read_string("[root]\n" + text, source=str(path))
    except configparser.Error as e:
        raise ConfigError(f"{path} is not KEY=value lines: {e.message}") from None
    out: dict[str, str] = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[key] = value
    return out


class OptionSource:
    """Merged option values; :meth:`get` applies the case- and dash-insensitive rule."""

    def __init__(self, layers: Iterable[Mapping[str, str]] = ()) -> None:
        self._values: dict[str, str] = {}
        for values in layers:
            self._values.update(layer(values))

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str],
        workdir: Path,
        config_file: Path | None = None,
    ) -> OptionSource:
        layers: list[Mapping[str, str]] = [environ]
        dotenv = workdir / ".env"
        if dotenv.is_file():
            layers.append(read_ini(dotenv))
        if config_file is not None:
            layers.append(read_ini(config_file))
        return cls(layers)

    def get(self, name: str) -> str | None:
        return self._values.get(normalize_name(name))

    def as_dict(self) -> dict[str, str]:
        """The merged values by normalised name (a layer for another source)."""
        return dict(self._values)

    def get_str(self, name: str, default: str) -> str:
        value = self.get(name)
        return default if value is None else value

    def get_int(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError(f"{normalize_name(name)}={value!r} is not an integer") from None

    def get_bool(self, name: str, default: bool) -> bool:
        """``Y``/``yes``/``true``/``1`` (any case) are true; other non-empty values false."""
        value = self.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip().upper() in ("Y", "YES", "TRUE", "1", "ON")
