"""``pyhbb api`` options and its ``--help``, declared with :mod:`pyhbb.config.options`.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, the ``-c/--config`` file, then flags (as for hbbs). Variables specific to the
API carry an ``API_`` prefix so a ``.env`` shared with hbbs (whose ``PORT`` is 21116)
cannot move it; ``BIND``, ``DB_URL``, ``MAX_DATABASE_CONNECTIONS`` and ``TRUSTED_PROXIES``
mean the same as for hbbs on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyhbb.config import shared
from pyhbb.config.options import (
    OFFICIAL,
    PYHBB,
    CommandSpec,
    Option,
    address,
    host_port,
    parse_command,
    port_number,
    split_host_port,
    whole_number,
)
from pyhbb.net.forwarded import DEFAULT_TRUSTED, Network, parse_networks
from pyhbb.store.schema import db_path_from_url

DEFAULT_PORT = 21114  # hbbs's port minus 2, where clients look when not told otherwise
HBBS_NAT_PORT = 21115
HBBR_PORT = 21117

API_PORT = Option(
    "API_PORT",
    port_number(),
    str(DEFAULT_PORT),
    "TCP port of the HTTP API (clients derive it as the ID server's port minus 2)",
    flags=("-p", "--port"),
    metavar="NUMBER",
)
API_HBBS = Option(
    "API_HBBS",
    host_port(HBBS_NAT_PORT),
    f"127.0.0.1:{HBBS_NAT_PORT}",
    "hbbs's TCP port P-1 (host:port), asked which devices are online",
    flags=("--hbbs",),
    metavar="HOST:PORT",
)
API_HBBR = Option(
    "API_HBBR",
    host_port(HBBR_PORT),
    f"127.0.0.1:{HBBR_PORT}",
    "hbbr's TCP port (host:port); the web console reads its counters and changes its "
    "block list through hbbr's loopback console there",
    flags=("--hbbr",),
    metavar="HOST:PORT",
)
API_PUBLIC_HOST = Option(
    "API_PUBLIC_HOST",
    address(),
    "",
    "host name (or IP) RustDesk clients use to reach this server, shown on the web "
    "console's server page (default: the host the page was opened with)",
    flags=("--public-host",),
    metavar="HOST",
)
MAX_DATABASE_CONNECTIONS = Option(
    "MAX_DATABASE_CONNECTIONS", whole_number(1, 64), "2", "database reader threads", group=OFFICIAL
)
TRUSTED_PROXIES = shared.TRUSTED_PROXIES.but(
    help="reverse proxies (IPs or networks, comma-separated) whose X-Real-IP / "
    "X-Forwarded-For headers are believed; loopback covers hbbs's HTTP tunnel"
)
API_MAX_BODY = Option(
    "API_MAX_BODY",
    whole_number(1024, 64 * 1024 * 1024),
    str(1024 * 1024),
    "largest request body accepted, in bytes (larger: 413)",
    flags=("--max-body",),
    metavar="BYTES",
)
MAX_PEER_ONE_AB = Option(
    "MAX_PEER_ONE_AB",
    whole_number(0, 1 << 30),
    "0",
    "most peers in one address book (0: unlimited); the client shows the limit",
    flags=("--max-peer-one-ab",),
    metavar="NUMBER",
)
API_TOKEN_DAYS = Option(
    "API_TOKEN_DAYS",
    whole_number(1, 3650),
    "7",
    "a login stays valid this many days after the client last used it",
    flags=("--token-days",),
    metavar="DAYS",
)
API_LOGIN_BURST_PER_IP = Option(
    "API_LOGIN_BURST_PER_IP",
    whole_number(1, 1 << 20),
    "20",
    "login attempts from one IP before it is limited to one per 3 s",
    flags=("--login-burst-per-ip",),
    metavar="NUMBER",
)
API_LOGIN_FAILURES_PER_USER = Option(
    "API_LOGIN_FAILURES_PER_USER",
    whole_number(1, 1 << 20),
    "10",
    "failed logins for one user name before it is limited to one attempt per 30 s",
    flags=("--login-failures-per-user",),
    metavar="NUMBER",
)
API_METRICS = shared.METRICS.but(
    name="API_METRICS",
    help=shared.METRICS.help + ". pyhbb run uses 127.0.0.1:9114",
)

DESCRIPTION = """\
The RustDesk API server (port 21114): logins, address books, the device list, device
heartbeats and sysinfo, audit logs. It uses hbbs's database (db_v2.sqlite3 in the working
directory; its own tables are named api_*) and asks hbbs which devices are online.
Create the first account with: pyhbb user add NAME --admin"""

SPEC = CommandSpec(
    prog="pyhbb api",
    description=DESCRIPTION,
    options=(
        API_PORT,
        shared.BIND,
        API_HBBS,
        API_HBBR,
        API_PUBLIC_HOST,
        shared.DB_URL,
        MAX_DATABASE_CONNECTIONS,
        TRUSTED_PROXIES,
        API_MAX_BODY,
        MAX_PEER_ONE_AB,
        API_TOKEN_DAYS,
        API_LOGIN_BURST_PER_IP,
        API_LOGIN_FAILURES_PER_USER,
        API_METRICS,
        shared.RUST_LOG,
    ),
    titles={OFFICIAL: "options shared with hbbs", PYHBB: "API server options"},
)


@dataclass(frozen=True)
class ApiOptions:
    port: int = DEFAULT_PORT
    bind: str | None = None
    hbbs_host: str = "127.0.0.1"
    hbbs_port: int = HBBS_NAT_PORT
    hbbr_host: str = "127.0.0.1"
    hbbr_port: int = HBBR_PORT
    public_host: str = ""
    db_url: str = "./db_v2.sqlite3"
    db_readers: int = 2
    trusted_proxies: list[Network] = field(default_factory=lambda: parse_networks(DEFAULT_TRUSTED))
    max_body: int = 1024 * 1024
    max_peer_one_ab: int = 0
    token_days: float = 7.0
    login_burst_per_ip: int = 20
    login_failures_per_user: int = 10
    metrics: tuple[str, int] | None = None
    """Where to serve /metrics and /healthz (None: nowhere)."""
    workdir: Path = field(default_factory=Path.cwd)


def database_path(db_url: str, workdir: Path) -> str:
    """The database file of ``DB_URL`` (hbbs's rules), relative to the working directory."""
    path = Path(db_path_from_url(db_url))
    return str(path if path.is_absolute() else workdir / path)


def parse_api_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> ApiOptions:
    """Parse flags and every configuration source; raises ConfigError (one line)."""
    workdir = workdir or Path.cwd()
    v = parse_command(SPEC, argv, os.environ if environ is None else environ, workdir)
    hbbs_host, hbbs_port = split_host_port(v[API_HBBS], HBBS_NAT_PORT)
    hbbr_host, hbbr_port = split_host_port(v[API_HBBR], HBBR_PORT)
    return ApiOptions(
        port=v[API_PORT],
        bind=v[shared.BIND],
        hbbs_host=hbbs_host,
        hbbs_port=hbbs_port,
        hbbr_host=hbbr_host,
        hbbr_port=hbbr_port,
        public_host=v[API_PUBLIC_HOST] or "",
        db_url=v[shared.DB_URL],
        db_readers=v[MAX_DATABASE_CONNECTIONS],
        trusted_proxies=v[TRUSTED_PROXIES],
        max_body=v[API_MAX_BODY],
        max_peer_one_ab=v[MAX_PEER_ONE_AB],
        token_days=float(v[API_TOKEN_DAYS]),
        login_burst_per_ip=v[API_LOGIN_BURST_PER_IP],
        login_failures_per_user=v[API_LOGIN_FAILURES_PER_USER],
        metrics=v[API_METRICS],
        workdir=workdir,
    )
