"""Declarative options: one way for every pyhbb command to read its configuration.

An :class:`Option` is a variable name, its flags, a default, help text and a
:class:`ValueParser` that turns text into a typed value or refuses it. A command lists its
options in a :class:`CommandSpec`; :func:`parse_command` then builds the argparse parser
and ``--help``, layers the sources with the official precedence (flag > ``-c`` file >
``.env`` in the working directory > environment; names case-insensitive, ``_`` and ``-``
interchangeable, §10.1), parses every value and returns them typed. A bad value of any
option raises :class:`ConfigError` with one line naming the option, the value, what was
expected and where it was set::

    PORT=abc is not a whole number: expected a whole number from 3 to 65533 (from .env line 2)

Each command's ``main()`` prints ``"<prog>: <message>"`` to stderr and exits with status 2.

Declaring a new service's options (options shared by several services, such as BIND,
KEY, DB_URL, TRUSTED_PROXIES and RUST_LOG, live in :mod:`pyhbb.config.shared`)::

    from dataclasses import dataclass
    from pyhbb.config import shared
    from pyhbb.config.options import (
        OFFICIAL, PYHBB, CommandSpec, Option, parse_command, port_number,
    )

    API_PORT = Option(
        "API_PORT", port_number(), "21114", "HTTP port of the API server",
        flags=("--api-port",), metavar="PORT", group=PYHBB,
    )
    SPEC = CommandSpec(
        prog="pyhbb api",
        description="RustDesk API server (address books, login) for pyhbb.",
        options=(API_PORT, shared.BIND, shared.DB_URL, shared.RUST_LOG),
        titles={OFFICIAL: "options shared with hbbs"},
    )

    @dataclass(frozen=True)
    class ApiOptions:
        port: int
        bind: str | None
        db_url: str

    def parse_api_options(argv, environ, workdir) -> ApiOptions:
        values = parse_command(SPEC, argv, environ, workdir)
        return ApiOptions(values[API_PORT], values[shared.BIND], values[shared.DB_URL])

``values[OPTION]`` is typed by the option's parser (``int`` for ``API_PORT`` above).
A rule spanning several options raises ``values.refuse(OPTION, reason, expected)`` so its
message has the same shape. A value that may be blank in a ``.env`` template falls back
to the default when its parser says ``blank_is_default`` (numbers, Y/N, paths).

Value parsers ready to use: :func:`whole_number`, :func:`port_number`,
:func:`positive_number`, :func:`yes_no`, :func:`y_means_yes` (the official ``Y`` rule),
:func:`text`, :func:`path`, :func:`address`, :func:`host_port` (and
:func:`split_host_port`), :func:`comma_list`, :func:`networks`, :func:`ipv4_network`,
:func:`http_url`. A new kind is ``ValueParser(expected, convert)`` where ``convert``
raises ``BadValue("is not …")``. A value that no variable may set (``pyhbb check HOST``)
goes through :func:`parse_argument` for the same error line; :func:`flag_values` tells a
launcher which flags an argument list sets (``pyhbb run`` deriving hbbr's from hbbs').
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

from pyhbb.config.sources import (
    ConfigError,
    Setting,
    Source,
    environment_settings,
    layer,
    load_settings,
    normalize_name,
    show,
)
from pyhbb.net.forwarded import Network, parse_networks

__all__ = [
    "OFFICIAL",
    "PYHBB",
    "BadValue",
    "CommandSpec",
    "ConfigError",
    "Option",
    "ValueParser",
    "Values",
    "address",
    "build_parser",
    "comma_list",
    "flag_values",
    "host_port",
    "http_url",
    "ipv4_network",
    "networks",
    "parse_argument",
    "parse_command",
    "path",
    "port_number",
    "positive_number",
    "refuse_value",
    "split_host_port",
    "text",
    "whole_number",
    "y_means_yes",
    "yes_no",
]

T = TypeVar("T")

# Help groups for options with flags; any other string is used as the group's title.
OFFICIAL = "official"
PYHBB = "pyhbb"
HELP_WIDTH = 79


class BadValue(ValueError):
    """Raised by a value parser. ``reason`` completes "NAME=value …", e.g. "is not a number"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ValueParser(Generic[T]):
    """Turns an option's text into a ``T`` or raises :class:`BadValue`.

    ``expected`` describes a good value ("a whole number from 1 to 64") for error messages.
    ``blank_is_default``: an empty value (``PORT=`` in a .env template) means "not set".
    """

    expected: str
    convert: Callable[[str], T]
    blank_is_default: bool = False


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option. ``name`` is the variable (any spelling works, §10.1); ``default`` is text,
    parsed like any other value; options without ``flags`` are variables only.
    ``environment_only`` options are read from the inherited environment alone (RUST_LOG:
    upstream sets up logging before it reads any file)."""

    name: str
    parser: ValueParser[T]
    default: str
    help: str
    flags: tuple[str, ...] = ()
    metavar: str = "VALUE"
    group: str = PYHBB
    environment_only: bool = False

    def but(self, **changes: Any) -> Option[T]:
        """This option with some fields changed (a shared option with another default)."""
        return replace(self, **changes)

    @property
    def flag_names(self) -> str:
        return "/".join(self.flags)


def refuse_value(label: str, text: str, reason: str, expected: str, where: str) -> ConfigError:
    """The one-line error every bad value produces."""
    return ConfigError(f"{label}={show(text)} {reason}: expected {expected} ({where})")


def _where(option: Option[Any], setting: Setting | None) -> str:
    if setting is None:
        return "the default"
    if setting.source is Source.FLAG or not option.flags:
        return setting.origin
    return f"{setting.origin}; flag {option.flag_names}"


def _parse(option: Option[T], setting: Setting | None) -> T:
    text = option.default if setting is None else setting.text
    try:
        return option.parser.convert(text)
    except BadValue as e:
        where = _where(option, setting)
        raise refuse_value(option.name, text, e.reason, option.parser.expected, where) from None


def parse_argument(label: str, parser: ValueParser[T], text: str) -> T:
    """A command-line value that is not an option (a positional argument, or a flag that
    no variable may set): parsed by ``parser``, refused with the same one-line error."""
    try:
        return parser.convert(text)
    except BadValue as e:
        raise refuse_value(label, text, e.reason, parser.expected, "on the command line") from None


def flag_values(spec: CommandSpec, argv: Sequence[str]) -> dict[str, str]:
    """The flags given in ``argv``, by variable name (``"config"`` for ``-c``), unparsed:
    lets a launcher see what the admin set for a command whatever the spelling
    (``-p 1``, ``-p1``, ``--port=1``, ``--po 1``)."""
    return {k: str(v) for k, v in vars(build_parser(spec).parse_args(list(argv))).items()}


class Values:
    """Parsed values of one command, typed by their options: ``values[PORT]`` is an int."""

    def __init__(self, parsed: Mapping[str, object], settings: Mapping[str, Setting]) -> None:
        self._parsed = dict(parsed)
        self._settings = dict(settings)

    def __getitem__(self, option: Option[T]) -> T:
        return cast(T, self._parsed[option.name])

    def source(self, option: Option[Any]) -> Source:
        setting = self._settings.get(option.name)
        return Source.DEFAULT if setting is None else setting.source

    def refuse(self, option: Option[Any], reason: str, expected: str) -> ConfigError:
        """An error about this option's value, shaped like every other one."""
        setting = self._settings.get(option.name)
        text = option.default if setting is None else setting.text
        return refuse_value(option.name, text, reason, expected, _where(option, setting))


@dataclass(frozen=True)
class CommandSpec:
    """A command's options and help. ``epilog`` follows the generated sections of --help;
    ``titles`` renames option groups (by default OFFICIAL options are "options of the
    official <prog>", which suits hbbs and hbbr only). Every command takes ``-c FILE``."""

    prog: str
    description: str
    options: tuple[Option[Any], ...]
    epilog: str = ""
    titles: Mapping[str, str] = field(default_factory=dict)
    by_name: dict[str, Option[Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Option[Any]] = {}
        flags = {"-h", "--help", "-c", "--config"}
        for option in self.options:
            norm = normalize_name(option.name)
            if norm in by_name:
                raise ValueError(f"{self.prog}: option {option.name} declared twice")
            if flags & set(option.flags):
                raise ValueError(f"{self.prog}: {option.name} reuses a flag")
            if option.environment_only and option.flags:
                raise ValueError(f"{self.prog}: {option.name} is environment-only yet has flags")
            flags.update(option.flags)
            by_name[norm] = option
            _parse(option, None)  # a default that does not parse is a programming error
        object.__setattr__(self, "by_name", by_name)


def _group_title(spec: CommandSpec, group: str) -> str:
    defaults = {OFFICIAL: f"options of the official {spec.prog}", PYHBB: "pyhbb options"}
    return spec.titles.get(group) or defaults.get(group, group)


def _default_text(option: Option[Any]) -> str:
    return option.default or "empty"


def _variables_section(options: Sequence[Option[Any]]) -> list[str]:
    lines = ["variables without a flag:"]
    for option in options:
        body = f"{option.help} (default: {_default_text(option)})"
        lines += textwrap.wrap(
            f"  {option.name:<26}{body}",
            HELP_WIDTH,
            subsequent_indent=" " * 28,
            break_on_hyphens=False,
        )
    return lines


def _epilog(spec: CommandSpec) -> str:
    lines = textwrap.wrap(
        "Every option can also be set as an environment variable, in a .env file "
        "(KEY=value lines) in the working directory, or in the -c file. Names are "
        "case-insensitive; '-' and '_' are interchangeable.",
        HELP_WIDTH,
        break_on_hyphens=False,
    )
    lines.append("Precedence: flag > -c file > .env > environment.")
    flagless = [o for o in spec.options if not o.flags]
    if flagless:
        lines += ["", *_variables_section(flagless)]
    if spec.epilog:
        lines += ["", spec.epilog]
    return "\n".join(lines)


def build_parser(spec: CommandSpec) -> argparse.ArgumentParser:
    """The argparse parser of ``spec``: every flag's help shows its variable and default."""
    parser = argparse.ArgumentParser(
        prog=spec.prog,
        description=spec.description,
        epilog=_epilog(spec),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # an absent flag leaves the variable in charge
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="extra KEY=value file, read after .env (relative to the working directory)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in spec.options:
        if not option.flags:
            continue
        title = _group_title(spec, option.group)
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        text = f"{option.help}. Variable: {option.name}. Default: {_default_text(option)}"
        groups[title].add_argument(
            *option.flags,
            dest=option.name,
            metavar=option.metavar,
            help=text.replace("%", "%%"),  # argparse formats help with %
        )
    return parser


def parse_command(
    spec: CommandSpec,
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    workdir: Path,
) -> Values:
    """Parse flags and every source of ``spec``'s options; raises ConfigError.

    ``--help`` and usage errors (unknown flag, missing value) exit through argparse.
    """
    namespace = vars(build_parser(spec).parse_args(None if argv is None else list(argv)))
    config_file = namespace.pop("config", None)
    layered = load_settings(environ, workdir, config_file)
    inherited = layer(environment_settings(environ))
    settings: dict[str, Setting] = {}
    parsed: dict[str, object] = {}
    for norm, option in spec.by_name.items():
        setting: Setting | None
        if option.name in namespace:
            origin = f"given as {option.flag_names}"
            setting = Setting(str(namespace[option.name]), Source.FLAG, origin)
        else:
            setting = (inherited if option.environment_only else layered).get(norm)
        if setting is not None and option.parser.blank_is_default and not setting.text.strip():
            setting = None  # "PORT=" in a .env template: not set
        if setting is not None:
            settings[option.name] = setting
        parsed[option.name] = _parse(option, setting)
    return Values(parsed, settings)


# -- value parsers ---------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_TRUE = ("Y", "YES", "TRUE", "1", "ON")
_FALSE = ("N", "NO", "FALSE", "0", "OFF")


def whole_number(low: int, high: int) -> ValueParser[int]:
    """An integer in ``low..high`` (ASCII digits, optional sign)."""

    def convert(text: str) -> int:
        text = text.strip()
        if not _INTEGER.fullmatch(text):
            raise BadValue("is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise BadValue("is out of range")
        return value

    return ValueParser(f"a whole number from {low} to {high}", convert, blank_is_default=True)


def port_number(low: int = 1, high: int = 65535) -> ValueParser[int]:
    """A TCP/UDP port; narrow the range when the command also uses P-1, P+2, …"""
    parser = whole_number(low, high)
    return replace(parser, expected=f"a port number from {low} to {high}")


def positive_number(high: float = math.inf) -> ValueParser[float]:
    """A finite decimal number above 0 (``0.5``, ``1024``, ``1e3``)."""

    def convert(text: str) -> float:
        text = text.strip()
        if not _DECIMAL.fullmatch(text):
            raise BadValue("is not a number")
        value = float(text)
        if not 0 < value <= high or math.isinf(value):
            raise BadValue("is out of range")
        return value

    bound = "" if math.isinf(high) else f" and at most {high:g}"
    return ValueParser(f"a number above 0{bound}", convert, blank_is_default=True)


def yes_no() -> ValueParser[bool]:
    """``Y``/``yes``/``true``/``1``/``on`` or ``N``/``no``/``false``/``0``/``off``, any case."""

    def convert(text: str) -> bool:
        word = text.strip().upper()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise BadValue("is neither yes nor no")

    return ValueParser("Y or N", convert, blank_is_default=True)


def y_means_yes() -> ValueParser[bool]:
    """The official servers' switch: ``Y`` (any case) is on, any other text is off."""
    return ValueParser("Y or N", lambda text: text.strip().upper() == "Y", blank_is_default=True)


def text(strip: bool = False) -> ValueParser[str]:
    """Any text (``strip``: without surrounding spaces)."""
    return ValueParser("any text", (lambda t: t.strip()) if strip else (lambda t: t))


def path() -> ValueParser[str]:
    """A file path; blank means the default."""

    def convert(text: str) -> str:
        if "\0" in text:
            raise BadValue("contains a NUL character")
        return text

    return ValueParser("a file path", convert, blank_is_default=True)


def _host(host: str) -> str:
    """``host`` if it is an IP address or a DNS name, else BadValue."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    name = host[:-1] if host.endswith(".") else host
    if 0 < len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
        return host
    raise BadValue(f"has {show(host)}, which is not an IP address or host name")


def address() -> ValueParser[str | None]:
    """An IP address or host name to listen on; empty means ``None`` (all addresses)."""

    def convert(text: str) -> str | None:
        text = text.strip()
        if not text:
            return None
        try:
            return _host(text)
        except BadValue:
            raise BadValue("is not an IP address or host name") from None

    return ValueParser("an IP address or host name without a port, or empty", convert)


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` (IPv6 bare or in brackets) → (host, port); raises BadValue."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadValue("has an unclosed or misplaced ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, None
    _host(host)
    if port_text is None:
        return host, default_port
    if not _INTEGER.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise BadValue(f"has port {show(port_text)}, which is not a port number")
    return host, int(port_text)


def host_port(default_port: int) -> ValueParser[str]:
    """``host[:port]``, checked and returned as written (stripped)."""

    def convert(value: str) -> str:
        split_host_port(value, default_port)
        return value.strip()

    return ValueParser(f"host[:port] (port {default_port} when omitted)", convert)


def comma_list(item: ValueParser[str] | None = None) -> ValueParser[list[str]]:
    """Comma-separated entries, blanks dropped; each checked by ``item`` when given."""

    def convert(value: str) -> list[str]:
        entries = [s.strip() for s in value.split(",") if s.strip()]
        return entries if item is None else [item.convert(entry) for entry in entries]

    expected = "a comma-separated list" + (f" of {item.expected}" if item else "")
    return ValueParser(expected, convert)


def networks() -> ValueParser[list[Network]]:
    """Comma-separated IP addresses or CIDR networks; empty means none."""

    def convert(value: str) -> list[Network]:
        found: list[Network] = []
        for entry in value.split(","):
            try:
                found += parse_networks([entry])
            except ValueError:
                raise BadValue(f"has {show(entry.strip())}, which is not an IP network") from None
        return found

    return ValueParser("comma-separated IP addresses or networks such as 10.0.0.0/8", convert)


def ipv4_network() -> ValueParser[str | None]:
    """An IPv4 CIDR such as ``192.168.0.0/16``, returned as written; empty means ``None``."""

    def convert(value: str) -> str | None:
        value = value.strip()
        if not value:
            return None
        try:
            ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            raise BadValue("is not an IPv4 network") from None
        return value

    return ValueParser("an IPv4 network such as 192.168.0.0/16", convert)


def http_url(off_words: tuple[str, ...] = ()) -> ValueParser[str]:
    """An ``http://`` or ``https://`` URL with a host; any of ``off_words`` (any case) or
    an empty value gives ``""`` (the feature is off)."""

    def convert(value: str) -> str:
        value = value.strip()
        if value.lower() in ("", *off_words):
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise BadValue("is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadValue("is not an http:// or https:// URL")
        return value

    off = "".join(f" or '{w}'" for w in off_words[:1])
    return ValueParser(f"an http:// or https:// URL{off}", convert)
