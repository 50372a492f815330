"""hbbr's options (§1.2, §5.2, §8.4, §10.3) and its ``--help``, declared with
:mod:`pyhbb.config.options`.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, the ``-c/--config`` file (a pyhbb addition: the official hbbr has none), then
command-line flags. Bandwidth values are in "Mb/s" meaning mebibits per second, as in the
official server.

Deliberate deviation: the official hbbr silently keeps the default for a bandwidth, port
or limit it cannot use (``TOTAL_BANDWIDTH=abc``, ``PORT=0``); pyhbb refuses to start with
a one-line error instead, so a typo cannot leave a relay running with settings the admin
did not choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhbb.config import shared
from pyhbb.config.options import (
    OFFICIAL,
    CommandSpec,
    Option,
    parse_command,
    port_number,
    positive_number,
    whole_number,
)
from pyhbb.config.sources import ConfigError, Source
from pyhbb.net.forwarded import DEFAULT_TRUSTED, Network, parse_networks

__all__ = ["ALL_OPTIONS", "SPEC", "ConfigError", "HbbrOptions", "parse_options"]

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
MAX_PORT = 65535 - 2  # R+2 is the WebSocket port
MAX_COUNT = 1 << 31

PORT = Option(
    "PORT",
    port_number(1, MAX_PORT),
    str(DEFAULT_PORT),
    "TCP port R to listen on; the WebSocket port is R+2. -p is used as given, but the PORT "
    "variable names hbbs' port, so the relay takes PORT+1 (one PORT=21116 shared with "
    "hbbs gives hbbs 21116 and hbbr 21117)",
    flags=("-p", "--port"),
    metavar="NUMBER",
    group=OFFICIAL,
)
KEY = shared.KEY.but(
    help="only relay clients configured with this key. '-' or '_' uses the public key in "
    "id_ed25519 (created if missing, as hbbs does); a base64 secret key uses its public "
    "half; any other text is compared as is. Empty: anyone may relay (an open relay: use "
    "-k - in production)",
)
TOTAL_BANDWIDTH = Option(
    "TOTAL_BANDWIDTH",
    positive_number(),
    f"{DEFAULT_TOTAL_BANDWIDTH:g}",
    "cap on the sum of all relayed traffic, in Mb/s (mebibits per second)",
    group=OFFICIAL,
)
SINGLE_BANDWIDTH = Option(
    "SINGLE_BANDWIDTH",
    positive_number(),
    f"{DEFAULT_SINGLE_BANDWIDTH:g}",
    "cap per relayed session (both directions together), in Mb/s",
    group=OFFICIAL,
)
LIMIT_SPEED = Option(
    "LIMIT_SPEED",
    positive_number(),
    f"{DEFAULT_LIMIT_SPEED:g}",
    "cap per session, in Mb/s, for sessions from an IP listed in blacklist.txt and for "
    "downgraded sessions",
    group=OFFICIAL,
)
DOWNGRADE_THRESHOLD = Option(
    "DOWNGRADE_THRESHOLD",
    positive_number(),
    f"{DEFAULT_DOWNGRADE_THRESHOLD:g}",
    "a session older than DOWNGRADE_START_CHECK whose average rate is above this fraction "
    "of SINGLE_BANDWIDTH is limited to LIMIT_SPEED for the rest of its life",
    group=OFFICIAL,
)
DOWNGRADE_START_CHECK = Option(
    "DOWNGRADE_START_CHECK",
    whole_number(1, MAX_COUNT),
    str(DEFAULT_DOWNGRADE_START_CHECK),
    "session age, in whole seconds, from which the downgrade rule applies",
    group=OFFICIAL,
)
MAX_WAITING = Option(
    "MAX_WAITING",
    whole_number(1, MAX_COUNT),
    str(DEFAULT_MAX_WAITING),
    "most connections waiting for their partner at once; more are refused",
    flags=("--max-waiting",),
    metavar="NUMBER",
)
MAX_WAITING_PER_IP = Option(
    "MAX_WAITING_PER_IP",
    whole_number(1, MAX_COUNT),
    str(DEFAULT_MAX_WAITING_PER_IP),
    "most waiting connections from one IP address",
    flags=("--max-waiting-per-ip",),
    metavar="NUMBER",
)
MAX_HANDSHAKES = Option(
    "MAX_HANDSHAKES",
    whole_number(1, MAX_COUNT),
    str(DEFAULT_MAX_HANDSHAKES),
    "most connections that have not yet sent their first message",
    flags=("--max-handshakes",),
    metavar="NUMBER",
)
MAX_HANDSHAKES_PER_IP = Option(
    "MAX_HANDSHAKES_PER_IP",
    whole_number(1, MAX_COUNT),
    str(DEFAULT_MAX_HANDSHAKES_PER_IP),
    "most connections from one IP address that have not yet sent their first message",
    flags=("--max-handshakes-per-ip",),
    metavar="NUMBER",
)

METRICS = shared.METRICS.but(
    help=shared.METRICS.help + ". Like PORT, --metrics is used as given, but the METRICS "
    "variable names hbbs' address, so the relay takes its port + 1 (one METRICS shared "
    "with hbbs in a .env gives hbbs 9116 and hbbr 9117); pyhbb run uses 127.0.0.1:9117",
)

ALL_OPTIONS: tuple[Option[Any], ...] = (
    PORT,
    KEY,
    shared.BIND,
    TOTAL_BANDWIDTH,
    SINGLE_BANDWIDTH,
    LIMIT_SPEED,
    DOWNGRADE_THRESHOLD,
    DOWNGRADE_START_CHECK,
    shared.RUST_LOG,
    shared.TRUSTED_PROXIES,
    MAX_WAITING,
    MAX_WAITING_PER_IP,
    MAX_HANDSHAKES,
    MAX_HANDSHAKES_PER_IP,
    METRICS,
)


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
    rust_log: str = ""  # RUST_LOG from the inherited environment
    metrics: tuple[str, int] | None = None
    """Where to serve /metrics and /healthz (None: nowhere)."""

    @property
    def ws_port(self) -> int:
        return self.port + 2


DESCRIPTION = """\
RustDesk relay server (pyhbb's hbbr). When two RustDesk clients cannot reach each other
directly, both connect here and every byte of their session flows through this server.
It listens on TCP port R (default 21117) and on WebSocket port R+2 (default 21119)."""

EPILOG = """\
files in the working directory:
  blacklist.txt   one IP per line: sessions from these IPs are limited to LIMIT_SPEED.
  blocklist.txt   one IP per line: these IPs are refused, and their sessions cut.
  id_ed25519      the key pair that -k - loads (or creates when missing).

admin console: from the server itself, send one command to TCP port R, for example
  printf 'h' | nc 127.0.0.1 21117
prints the list of commands (block/unblock IPs, change limits, show usage)."""

SPEC = CommandSpec(prog="hbbr", description=DESCRIPTION, options=ALL_OPTIONS, epilog=EPILOG)


def parse_options(
    argv: Sequence[str] | None, environ: Mapping[str, str], workdir: Path
) -> HbbrOptions:
    """Build the options from flags, the ``-c`` file, ``.env`` and the environment;
    ConfigError if any value is invalid.

    ``--help`` prints the help and raises SystemExit(0), as argparse does.
    """
    v = parse_command(SPEC, argv, environ, workdir)
    port = v[PORT]
    trusted: list[Network] = v[shared.TRUSTED_PROXIES]
    if v.source(PORT) not in (Source.DEFAULT, Source.FLAG):
        port += 1  # the official PORT+1 rule: the variable names hbbs' port
        if port > MAX_PORT:
            raise v.refuse(
                PORT,
                "is too high for the relay, which listens on PORT+1 and PORT+3",
                f"a port number from 1 to {MAX_PORT - 1}",
            )
    metrics: tuple[str, int] | None = v[METRICS]
    if metrics is not None and v.source(METRICS) not in (Source.DEFAULT, Source.FLAG):
        if metrics[1] >= 65535:
            raise v.refuse(
                METRICS,
                "leaves no port for the relay, which takes its port + 1",
                "HOST:PORT with a port below 65535",
            )
        metrics = (metrics[0], metrics[1] + 1)  # the variable names hbbs' address
    return HbbrOptions(
        port=port,
        bind=v[shared.BIND],
        key=v[KEY],
        total_bandwidth=v[TOTAL_BANDWIDTH],
        single_bandwidth=v[SINGLE_BANDWIDTH],
        limit_speed=v[LIMIT_SPEED],
        downgrade_threshold=v[DOWNGRADE_THRESHOLD],
        downgrade_start_check=v[DOWNGRADE_START_CHECK],
        trusted_proxies=tuple(trusted),
        max_waiting=v[MAX_WAITING],
        max_waiting_per_ip=v[MAX_WAITING_PER_IP],
        max_handshakes=v[MAX_HANDSHAKES],
        max_handshakes_per_ip=v[MAX_HANDSHAKES_PER_IP],
        workdir=workdir,
        rust_log=v[shared.RUST_LOG],
        metrics=metrics,
    )
