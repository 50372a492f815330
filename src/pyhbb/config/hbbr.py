"""hbbr's options (docs/protocol.md §1.2, §5.2, §8.4, §10.3) and its ``--help``.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, then command-line flags (hbbr has no ``--config``). Bandwidth values are in
"Mb/s" meaning mebibits per second, as in the official server; non-positive or
unparseable values keep the default (with a warning), again as the official server does.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyhbb.config.sources import ConfigError, OptionSource
from pyhbb.net.forwarded import DEFAULT_TRUSTED, Network, parse_networks

log = logging.getLogger("pyhbb.relay.config")

DEFAULT_PORT = 21117
DEFAULT_TOTAL_BANDWIDTH = 1024.0  # Mb/s, shared by all sessions
DEFAULT_SINGLE_BANDWIDTH = 128.0  # Mb/s per session
DEFAULT_LIMIT_SPEED = 32.0  # Mb/s per blacklisted or downgraded session
DEFAULT_DOWNGRADE_THRESHOLD = 0.66
DEFAULT_DOWNGRADE_START_CHECK = 1800  # seconds
DEFAULT_MAX_WAITING = 10_000
DEFAULT_MAX_WAITING_PER_IP = 64
DEFAULT_MAX_HANDSHAKES = 10_000
DEFAULT_MAX_HANDSHAKES_PER_IP = 128
# The official server's constants; kept as fields so tests can shorten them.
PAIR_WAIT_TIMEOUT = 30.0
FIRST_MESSAGE_TIMEOUT = 30.0
IDLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class HbbrOptions:
    """Everything hbbr needs to start, already validated."""

    port: int = DEFAULT_PORT
    bind: str | None = None
    key: str = ""
    total_bandwidth: float = DEFAULT_TOTAL_BANDWIDTH
    single_bandwidth: float = DEFAULT_SINGLE_BANDWIDTH
    limit_speed: float = DEFAULT_LIMIT_SPEED
    downgrade_threshold: float = DEFAULT_DOWNGRADE_THRESHOLD
    downgrade_start_check: int = DEFAULT_DOWNGRADE_START_CHECK
    trusted_proxies: tuple[Network, ...] = field(
        default_factory=lambda: tuple(parse_networks(DEFAULT_TRUSTED))
    )
    max_waiting: int = DEFAULT_MAX_WAITING
    max_waiting_per_ip: int = DEFAULT_MAX_WAITING_PER_IP
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    max_handshakes_per_ip: int = DEFAULT_MAX_HANDSHAKES_PER_IP
    workdir: Path = field(default_factory=Path.cwd)
    pair_wait_timeout: float = PAIR_WAIT_TIMEOUT
    first_message_timeout: float = FIRST_MESSAGE_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT

    @property
    def ws_port(self) -> int:
        return self.port + 2


DESCRIPTION = """\
RustDesk relay server (pyhbb's hbbr). When two RustDesk clients cannot reach each other
directly, both connect here and every byte of their session flows through this server.
It listens on TCP port R (default 21117) and on WebSocket port R+2 (default 21119)."""

EPILOG = f"""\
Every option can also come from an environment variable or from a .env file
(KEY=value lines) in the working directory. Precedence: command-line flag > .env >
environment. Names are case-insensitive and '-' and '_' are interchangeable.

environment variables:
  PORT                  When set (and -p is not given), the relay port is PORT+1, so one
                        PORT=21116 shared with hbbs gives hbbs 21116 and hbbr 21117.
  KEY                   Same as -k. Default: empty (no check).
  BIND                  Same as -b. Default: all interfaces (IPv4 and IPv6).
  TOTAL_BANDWIDTH       Cap on the sum of all relayed traffic, in Mb/s (mebibits per
                        second). Default: {DEFAULT_TOTAL_BANDWIDTH:g}.
  SINGLE_BANDWIDTH      Cap per relayed session (both directions together), in Mb/s.
                        Default: {DEFAULT_SINGLE_BANDWIDTH:g}.
  LIMIT_SPEED           Cap per session, in Mb/s, for sessions from an IP listed in
                        blacklist.txt and for downgraded sessions. Default: {DEFAULT_LIMIT_SPEED:g}.
  DOWNGRADE_THRESHOLD   A session older than DOWNGRADE_START_CHECK whose average rate is
                        above this fraction of SINGLE_BANDWIDTH is limited to LIMIT_SPEED
                        for the rest of its life. Default: {DEFAULT_DOWNGRADE_THRESHOLD:g}.
  DOWNGRADE_START_CHECK Session age, in whole seconds, from which the downgrade rule
                        applies. Default: {DEFAULT_DOWNGRADE_START_CHECK}.
  TRUSTED_PROXIES       Same as --trusted-proxies.
  MAX_WAITING           Most connections waiting for their partner at once; more are
                        refused. Default: {DEFAULT_MAX_WAITING}.
  MAX_WAITING_PER_IP    Most waiting connections from one IP address.
                        Default: {DEFAULT_MAX_WAITING_PER_IP}.
  MAX_HANDSHAKES        Most connections that have not yet sent their first message.
                        Default: {DEFAULT_MAX_HANDSHAKES}.
  MAX_HANDSHAKES_PER_IP Same, per IP address. Default: {DEFAULT_MAX_HANDSHAKES_PER_IP}.
  RUST_LOG              Log level: error, warn, info (default), debug, trace.
Bandwidth values that are zero, negative or not numbers keep the default.

files in the working directory:
  blacklist.txt   one IP per line: sessions from these IPs are limited to LIMIT_SPEED.
  blocklist.txt   one IP per line: these IPs are refused, and their sessions cut.
  id_ed25519      the key pair that -k - loads (or creates when missing).

admin console: from the server itself, send one command to TCP port R, for example
  printf 'h' | nc 127.0.0.1 21117
prints the list of commands (block/unblock IPs, change limits, show usage)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hbbr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-p",
        "--port",
        metavar="NUMBER",
        help=f"TCP port R to listen on; the WebSocket port is R+2 (default {DEFAULT_PORT}, "
        "or PORT+1 when the PORT variable is set). Used as given, without +1.",
    )
    p.add_argument(
        "-k",
        "--key",
        metavar="KEY",
        help="only relay clients configured with this key. '-' or '_' uses the public key "
        "in id_ed25519 (created if missing, as hbbs does); a base64 secret key uses its "
        "public half; any other text is compared as is. Default: empty = anyone may relay "
        "(an open relay: use -k - in production). Variable: KEY.",
    )
    p.add_argument(
        "-b",
        "--bind",
        metavar="ADDR",
        help="IPv4 or IPv6 address to listen on (default: all addresses, IPv4 and IPv6). "
        "Variable: BIND.",
    )
    p.add_argument(
        "--trusted-proxies",
        metavar="LIST",
        help="comma-separated IPs or networks of reverse proxies allowed to tell the real "
        "client address (X-Real-IP / X-Forwarded-For) on the WebSocket port "
        f"(default: {','.join(DEFAULT_TRUSTED)}). Variable: TRUSTED_PROXIES.",
    )
    return p


def _positive_float(src: OptionSource, name: str, default: float) -> float:
    raw = src.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        log.warning("%s=%r is not a positive number; using %g", name, raw, default)
        return default
    return value


def _positive_int(src: OptionSource, name: str, default: int) -> int:
    raw = src.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("%s=%r is not a positive whole number; using %d", name, raw, default)
        return default
    return value


def _port(flag: str | None, src: OptionSource) -> int:
    if flag is not None:
        try:
            port = int(flag)
        except ValueError:
            raise ConfigError(f"--port {flag!r} is not a port number") from None
    else:
        port = DEFAULT_PORT
        raw = src.get("PORT")
        if raw is not None and raw.strip():
            try:
                base = int(raw.strip())
            except ValueError:
                base = 0
            if base > 0:
                port = base + 1  # the official PORT+1 rule: PORT names hbbs' port
            else:
                log.warning("PORT=%r is not a positive port number; using %d", raw, port)
    if not 1 <= port <= 65535 - 2:
        raise ConfigError(f"relay port {port} is out of range: it must be 1-65533 (R and R+2)")
    return port


def parse_options(
    argv: Sequence[str] | None, environ: Mapping[str, str], workdir: Path
) -> HbbrOptions:
    """Build the options from flags, ``.env`` and the environment; ConfigError if invalid.

    ``--help`` prints the help and raises SystemExit(0), as argparse does.
    """
    parser = _parser()
    ns = parser.parse_args(list(argv) if argv is not None else None)
    src = OptionSource.load(environ, workdir)

    bind = ns.bind if ns.bind is not None else src.get_str("BIND", "")
    trusted_text = (
        ns.trusted_proxies
        if ns.trusted_proxies is not None
        else src.get_str("TRUSTED_PROXIES", ",".join(DEFAULT_TRUSTED))
    )
    try:
        trusted = tuple(parse_networks(trusted_text.split(",")))
    except ValueError as e:
        raise ConfigError(f"TRUSTED_PROXIES: {e}") from None

    threshold = _positive_float(src, "DOWNGRADE_THRESHOLD", DEFAULT_DOWNGRADE_THRESHOLD)
    return HbbrOptions(
        port=_port(ns.port, src),
        bind=bind.strip() or None,
        key=ns.key if ns.key is not None else src.get_str("KEY", ""),
        total_bandwidth=_positive_float(src, "TOTAL_BANDWIDTH", DEFAULT_TOTAL_BANDWIDTH),
        single_bandwidth=_positive_float(src, "SINGLE_BANDWIDTH", DEFAULT_SINGLE_BANDWIDTH),
        limit_speed=_positive_float(src, "LIMIT_SPEED", DEFAULT_LIMIT_SPEED),
        downgrade_threshold=threshold,
        downgrade_start_check=_positive_int(
            src, "DOWNGRADE_START_CHECK", DEFAULT_DOWNGRADE_START_CHECK
        ),
        trusted_proxies=trusted,
        max_waiting=_positive_int(src, "MAX_WAITING", DEFAULT_MAX_WAITING),
        max_waiting_per_ip=_positive_int(src, "MAX_WAITING_PER_IP", DEFAULT_MAX_WAITING_PER_IP),
        max_handshakes=_positive_int(src, "MAX_HANDSHAKES", DEFAULT_MAX_HANDSHAKES),
        max_handshakes_per_ip=_positive_int(
            src, "MAX_HANDSHAKES_PER_IP", DEFAULT_MAX_HANDSHAKES_PER_IP
        ),
        workdir=workdir,
    )
