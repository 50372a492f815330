"""hbbr's admin console commands (§9.2), without I/O.

A console session sends one line; :func:`execute` runs it against a :class:`ConsoleTarget`
(the relay core) and returns the text to send back, possibly empty. The output formats
are the official server's, so scripts written for it keep working.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from pyhbb.relay.bandwidth import RelaySettings
from pyhbb.relay.lists import IpList

HELP = (
    "blacklist-add(ba) <ip>\n"
    "blacklist-remove(br) <ip>\n"
    "blacklist(b) <ip>\n"
    "blocklist-add(Ba) <ip>\n"
    "blocklist-remove(Br) <ip>\n"
    "blocklist(B) <ip>\n"
    "downgrade-threshold(dt) [value]\n"
    "downgrade-start-check(t) [value(second)]\n"
    "limit-speed(ls) [value(Mb/s)]\n"
    "total-bandwidth(tb) [value(Mb/s)]\n"
    "single-bandwidth(sb) [value(Mb/s)]\n"
    "usage(u)\n"
)

_ALIASES = {
    "ba": "blacklist-add",
    "br": "blacklist-remove",
    "b": "blacklist",
    "Ba": "blocklist-add",
    "Br": "blocklist-remove",
    "B": "blocklist",
    "dt": "downgrade-threshold",
    "t": "downgrade-start-check",
    "ls": "limit-speed",
    "tb": "total-bandwidth",
    "sb": "single-bandwidth",
    "u": "usage",
}
COMMANDS = frozenset({"h", *_ALIASES, *_ALIASES.values()})
"""Every word that starts a console command (the loopback console gate needs them)."""


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One active session's figures, as the ``usage`` command prints them."""

    key: str  # "IP:port" of the session's second connection
    elapsed_ms: int
    total_bits: int
    highest: int  # bit/ms
    current: int  # bit/ms


class ConsoleTarget(Protocol):
    """What the console acts on: the running relay's settings, lists and sessions."""

    @property
    def settings(self) -> RelaySettings: ...
    @property
    def blacklist(self) -> IpList: ...
    @property
    def blocklist(self) -> IpList: ...
    def set_total_bandwidth(self, mbps: float, now: float) -> None: ...
    def usage(self) -> list[UsageLine]: ...


def fmt_number(value: float) -> str:
    """A float the way Rust's ``{}`` prints it: ``32``, ``0.5``, never an exponent."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def _parse_positive_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def _parse_positive_int(text: str) -> int | None:
    # Rust's usize parse: digits only (an optional leading '+'), no sign, no spaces.
    digits = text[1:] if text.startswith("+") else text
    if not digits.isascii() or not digits.isdigit():
        return None
    value = int(digits)
    return value if value > 0 else None


def _list_command(lst: IpList, op: str, arg: str | None) -> str:
    if op == "add":
        if arg is not None:
            lst.add(arg.split("|"))
        return ""
    if op == "remove":
        if arg == "all":
            lst.clear()
        elif arg is not None:
            lst.remove(arg.split("|"))
        return ""
    if arg is not None:
        return f"{'true' if arg in lst else 'false'}\n"
    return "".join(f"{ip}\n" for ip in lst)


def execute(args: Sequence[str], target: ConsoleTarget, now: float) -> str:
    """Run one console command (already split on single spaces) at time ``now``; return
    its output."""
    if not args:
        return ""
    cmd = _ALIASES.get(args[0], args[0])
    arg = args[1] if len(args) > 1 else None
    settings = target.settings
    if cmd == "h":
        return HELP
    if cmd.startswith(("blacklist", "blocklist")):
        lst = target.blacklist if cmd.startswith("blacklist") else target.blocklist
        _, _, op = cmd.partition("-")
        if cmd in ("blacklist", "blocklist") or op in ("add", "remove"):
            return _list_command(lst, op, arg)
        return ""
    if cmd == "downgrade-threshold":
        if arg is None:
            return f"{fmt_number(settings.downgrade_threshold_pct / 100)}\n"
        ratio = _parse_positive_float(arg)
        if ratio is not None:
            settings.downgrade_threshold_pct = RelaySettings.threshold_pct(ratio)
        return ""
    if cmd == "downgrade-start-check":
        if arg is None:
            return f"{settings.downgrade_start_check}s\n"
        seconds = _parse_positive_int(arg)
        if seconds is not None:
            settings.downgrade_start_check = seconds
        return ""
    if cmd in ("limit-speed", "single-bandwidth", "total-bandwidth"):
        attr = cmd.replace("-", "_")
        if arg is None:
            return f"{fmt_number(getattr(settings, attr))}Mb/s\n"
        mbps = _parse_positive_float(arg)
        if mbps is not None:
            if cmd == "total-bandwidth":
                target.set_total_bandwidth(mbps, now)  # applies to running sessions at once
            else:
                setattr(settings, attr, mbps)
        return ""
    if cmd == "usage":
        lines = [u for u in target.usage() if u.elapsed_ms > 0]
        lines.sort(key=lambda u: u.total_bits, reverse=True)
        return "".join(
            f"{u.key}: {u.elapsed_ms // 1000}s {u.total_bits / 8 / 1024 / 1024:.2f}MB "
            f"{u.highest}kb/s {u.total_bits // u.elapsed_ms}kb/s {u.current}kb/s\n"
            for u in lines
        )
    return ""
