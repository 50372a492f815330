"""``pyhbb api`` options and its ``--help``.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, the ``-c/--config`` file, then flags; names are case-insensitive and ``_`` /
``-`` are interchangeable, as for hbbs. Variables specific to the API carry an ``API_``
prefix so a ``.env`` shared with hbbs (whose ``PORT`` is 21116) cannot move it; ``DB_URL``,
``MAX_DATABASE_CONNECTIONS`` and ``TRUSTED_PROXIES`` are shared with hbbs on purpose.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyhbb.config.sources import ConfigError, OptionSource
from pyhbb.net.forwarded import DEFAULT_TRUSTED, Network, parse_networks
from pyhbb.rendezvous.relay_servers import split_list

DEFAULT_PORT = 21114  # hbbs's port minus 2, where clients look when not told otherwise


@dataclass(frozen=True)
class Opt:
    name: str
    flags: tuple[str, ...]
    default: str
    help: str
    metavar: str = "VALUE"


OPTIONS = (
    Opt(
        "API_PORT",
        ("-p", "--port"),
        str(DEFAULT_PORT),
        "TCP port of the HTTP API (clients derive it as the ID server's port minus 2)",
        "NUMBER",
    ),
    Opt(
        "API_BIND",
        ("-b", "--bind"),
        "",
        "address to listen on; empty: all addresses, IPv4 and IPv6",
        "ADDR",
    ),
    Opt(
        "API_HBBS",
        ("--hbbs",),
        "127.0.0.1:21115",
        "hbbs's TCP port P-1 (host:port), asked for the online state of devices",
        "HOST:PORT",
    ),
    Opt("DB_URL", ("--db-url",), "./db_v2.sqlite3", "SQLite database file (shared with hbbs)"),
    Opt("MAX_DATABASE_CONNECTIONS", (), "2", "database reader threads", "NUMBER"),
    Opt(
        "TRUSTED_PROXIES",
        ("--trusted-proxies",),
        ",".join(DEFAULT_TRUSTED),
        "reverse proxies (IPs or networks, comma-separated) whose X-Real-IP / "
        "X-Forwarded-For headers are believed; loopback covers hbbs's HTTP tunnel",
        "LIST",
    ),
    Opt(
        "API_MAX_BODY",
        ("--max-body",),
        str(1024 * 1024),
        "largest request body accepted, in bytes (larger: 413)",
        "BYTES",
    ),
    Opt(
        "MAX_PEER_ONE_AB",
        ("--max-peer-one-ab",),
        "0",
        "most peers in one address book (0: unlimited); the client shows the limit",
        "NUMBER",
    ),
    Opt(
        "API_TOKEN_DAYS",
        ("--token-days",),
        "7",
        "a login stays valid this many days after the client last used it",
        "DAYS",
    ),
    Opt(
        "API_LOGIN_BURST_PER_IP",
        ("--login-burst-per-ip",),
        "20",
        "login attempts from one IP before it is limited to one per 3 s",
        "NUMBER",
    ),
    Opt(
        "API_LOGIN_FAILURES_PER_USER",
        ("--login-failures-per-user",),
        "10",
        "failed logins for one user name before it is limited to one attempt per 30 s",
        "NUMBER",
    ),
)


@dataclass(frozen=True)
class ApiOptions:
    port: int = DEFAULT_PORT
    bind: str | None = None
    hbbs_host: str = "127.0.0.1"
    hbbs_port: int = 21115
    db_url: str = "./db_v2.sqlite3"
    db_readers: int = 2
    trusted_proxies: list[Network] = field(default_factory=lambda: parse_networks(DEFAULT_TRUSTED))
    max_body: int = 1024 * 1024
    max_peer_one_ab: int = 0
    token_days: float = 7.0
    login_burst_per_ip: int = 20
    login_failures_per_user: int = 10
    workdir: Path = field(default_factory=Path.cwd)


DESCRIPTION = """\
The RustDesk API server (port 21114): logins, address books, the device list, device
heartbeats and sysinfo, audit logs. It uses hbbs's database (db_v2.sqlite3 in the working
directory; its own tables are named api_*) and asks hbbs which devices are online.
Create the first account with: pyhbb user add NAME --admin"""

EPILOG = """\
Every option can also be set as an environment variable (the name shown), in a .env file
in the working directory, or in the -c file. Precedence: flag > -c file > .env >
environment. RUST_LOG sets the log level (info by default)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyhbb api",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE", help="extra KEY=value file, read after .env")
    for opt in OPTIONS:
        if opt.flags:
            p.add_argument(
                *opt.flags,
                dest=opt.name,
                metavar=opt.metavar,
                help=f"{opt.help}. Variable: {opt.name}. Default: {opt.default or 'empty'}",
            )
    return p


def _int(src: OptionSource, name: str, low: int, high: int) -> int:
    default = next(int(o.default) for o in OPTIONS if o.name == name)
    value = src.get_int(name, default)
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range ({low}..{high})")
    return value


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"API_HBBS={value!r} must be host:port, e.g. 127.0.0.1:21115")
    return host, int(port)


def parse_api_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> ApiOptions:
    args = build_parser().parse_args(argv)
    workdir = workdir or Path.cwd()
    config = workdir / args.config if args.config else None
    src = OptionSource.load(os.environ if environ is None else environ, workdir, config)
    layered = OptionSource(
        [
            {o.name: o.default for o in OPTIONS},
            src.as_dict(),
            {k: v for k, v in vars(args).items() if v is not None and k != "config"},
        ]
    )
    try:
        trusted = parse_networks(split_list(layered.get_str("TRUSTED_PROXIES", "")))
    except ValueError as e:
        raise ConfigError(f"TRUSTED_PROXIES: {e}") from None
    hbbs_host, hbbs_port = _host_port(layered.get_str("API_HBBS", ""))
    return ApiOptions(
        port=_int(layered, "API_PORT", 1, 65535),
        bind=layered.get_str("API_BIND", "").strip() or None,
        hbbs_host=hbbs_host,
        hbbs_port=hbbs_port,
        db_url=layered.get_str("DB_URL", "") or "./db_v2.sqlite3",
        db_readers=_int(layered, "MAX_DATABASE_CONNECTIONS", 1, 64),
        trusted_proxies=trusted,
        max_body=_int(layered, "API_MAX_BODY", 1024, 64 * 1024 * 1024),
        max_peer_one_ab=_int(layered, "MAX_PEER_ONE_AB", 0, 1 << 30),
        token_days=float(_int(layered, "API_TOKEN_DAYS", 1, 3650)),
        login_burst_per_ip=_int(layered, "API_LOGIN_BURST_PER_IP", 1, 1 << 20),
        login_failures_per_user=_int(layered, "API_LOGIN_FAILURES_PER_USER", 1, 1 << 20),
        workdir=workdir,
    )
