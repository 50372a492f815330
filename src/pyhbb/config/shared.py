"""Options several pyhbb services share, declared once (§10.1-10.3).

A service lists them in its :class:`~pyhbb.config.options.CommandSpec` as they are, or
with its own default or help through ``Option.but(...)`` (hbbs requires its key by
default, hbbr does not). Their parsed values keep one meaning everywhere.
"""

from __future__ import annotations

from pyhbb.config.options import (
    OFFICIAL,
    PYHBB,
    BadValue,
    Option,
    ValueParser,
    address,
    networks,
    path,
    split_host_port,
    text,
)
from pyhbb.net.forwarded import DEFAULT_TRUSTED

BIND = Option(
    "BIND",
    address(),
    "",
    "address to listen on (IPv4 or IPv6); empty: all addresses, IPv4 and IPv6",
    flags=("-b", "--bind"),
    metavar="ADDR",
    group=OFFICIAL,
)
KEY = Option(
    "KEY",
    text(),
    "",
    "the key clients must be configured with: '-' or '_' loads id_ed25519 from the working "
    "directory (generated if missing), a base64 secret key uses its public half, any other "
    "text is compared as is; empty: no check",
    flags=("-k", "--key"),
    metavar="KEY",
    group=OFFICIAL,
)
TRUSTED_PROXIES = Option(
    "TRUSTED_PROXIES",
    networks(),
    ",".join(DEFAULT_TRUSTED),
    "reverse proxies (IPs or networks, comma-separated) whose X-Real-IP / "
    "X-Forwarded-For headers are believed on the WebSocket port",
    flags=("--trusted-proxies",),
    metavar="LIST",
    group=PYHBB,
)
DB_URL = Option(
    "DB_URL",
    path(),
    "./db_v2.sqlite3",
    "SQLite database file",
    group=OFFICIAL,
)
RUST_LOG = Option(
    "RUST_LOG",
    text(strip=True),
    "",
    "log level: error, warn, info, debug or trace (empty: info), also per service, e.g. "
    "RUST_LOG=hbbs=debug. Read from the environment only, as by the official servers: "
    ".env and -c cannot set it",
    group=OFFICIAL,
    environment_only=True,
)


def _metrics_address(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[IPv6]:PORT``) to serve metrics on; empty or ``off``: none."""
    value = value.strip()
    if value.lower() in ("", "off", "no", "none"):
        return None
    host, port = split_host_port(value, 0)
    if port == 0:
        raise BadValue("has no port")
    return host.strip("[]"), port


METRICS = Option(
    "METRICS",
    ValueParser("HOST:PORT such as 127.0.0.1:9116, or empty or 'off'", _metrics_address),
    "",
    "serve Prometheus metrics at http://HOST:PORT/metrics and the health check at "
    "/healthz (200 healthy, 503 not); empty or 'off': neither. No authentication: keep it "
    "on loopback or a private network",
    flags=("--metrics",),
    metavar="HOST:PORT",
    group=PYHBB,
)
"""Each service declares it with its own default and help (``pyhbb run`` gives each a
loopback address: docs in README "Monitoring")."""
