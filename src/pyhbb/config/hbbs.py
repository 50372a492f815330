"""hbbs' options (docs/protocol.md §10.1-10.2) and its ``--help``.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, the ``-c/--config`` file, then command-line flags. Names are case-insensitive
and ``_``/``-`` are interchangeable, as with the official server.
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

DEFAULT_PORT = 21116


@dataclass(frozen=True)
class Opt:
    """One option: its variable name, flags, default and the help an admin reads."""

    name: str
    flags: tuple[str, ...]
    default: str
    help: str
    metavar: str = "VALUE"


OFFICIAL = (
    Opt(
        "PORT",
        ("-p", "--port"),
        str(DEFAULT_PORT),
        "main port P: UDP and TCP P, TCP P-1 (NAT test, online status, console), WebSocket P+2",
        "NUMBER",
    ),
    Opt(
        "KEY",
        ("-k", "--key"),
        "-",
        "'-' or '_': load id_ed25519 from the working directory (generated if missing) and "
        "require clients to use its public key; empty: load/generate it for signing but "
        "accept any client key; a base64 secret key: use it; any other text: require that "
        "key but sign nothing (clients then get unencrypted sessions: avoid)",
        "KEY",
    ),
    Opt(
        "RELAY_SERVERS",
        ("-r", "--relay-servers"),
        "",
        "relay servers handed to clients, comma-separated host[:port] (port 21117 when "
        "omitted); several are used in turn and health-checked every 3 s. Empty: clients "
        "use the ID server's host with port P+1",
        "LIST",
    ),
    Opt(
        "BIND",
        ("-b", "--bind"),
        "",
        "address to listen on (IPv4 or IPv6); empty: all addresses, IPv4 and IPv6",
        "ADDR",
    ),
    Opt(
        "RMEM",
        ("-M", "--rmem"),
        "0",
        "UDP receive buffer size in bytes (0: system default); raise it for many clients "
        "(the kernel caps it at net.core.rmem_max)",
        "BYTES",
    ),
    Opt(
        "SERIAL",
        ("-s", "--serial"),
        "0",
        "configuration serial (deprecated); clients report 3 or more, so 4+ makes them "
        "take the rendezvous server list below",
        "NUMBER",
    ),
    Opt(
        "RENDEZVOUS_SERVERS",
        ("-R", "--rendezvous-servers"),
        "",
        "rendezvous servers pushed to clients with --serial (deprecated), comma-separated",
        "LIST",
    ),
    Opt(
        "SOFTWARE_URL",
        ("-u", "--software-url"),
        "",
        "download URL of the newest client (legacy clients only)",
        "URL",
    ),
    Opt(
        "MASK",
        ("--mask",),
        "",
        "IPv4 network of your LAN, e.g. 192.168.0.0/16 (deprecated): peers inside and "
        "outside it are told to relay through LOCAL_IP",
        "CIDR",
    ),
)
ENV_ONLY = (
    Opt(
        "LOCAL_IP",
        (),
        "",
        "relay address given to LAN peers with --mask (default: this host's primary IP)",
    ),
    Opt("ALWAYS_USE_RELAY", (), "N", "Y: every connection goes through the relay"),
    Opt("DB_URL", (), "./db_v2.sqlite3", "SQLite database file"),
    Opt("MAX_DATABASE_CONNECTIONS", (), "1", "database reader threads"),
    Opt(
        "TEST_HBBS",
        (),
        "",
        "'no': disable the UDP self-test; or IP:port to send it to. "
        "The self-test exits (status 1) when the UDP socket stops answering for 12 s, so a "
        "supervisor restarts the server",
    ),
)
PYHBB = (
    Opt(
        "TRUSTED_PROXIES",
        ("--trusted-proxies",),
        ",".join(DEFAULT_TRUSTED),
        "reverse proxies (IPs or networks, comma-separated) whose X-Real-IP / "
        "X-Forwarded-For headers are believed on the WebSocket port",
        "LIST",
    ),
    Opt(
        "SECURE_TCP",
        ("--secure-tcp",),
        "Y",
        "Y: offer the encrypted channel (KeyExchange) on TCP P, which logged-in and "
        "TCP-mode clients wait for; N: behave like the official server",
        "Y|N",
    ),
    Opt("CONSOLE", ("--console",), "Y", "Y: serve the admin console to loopback on P-1", "Y|N"),
    Opt(
        "MAX_FRAME_SIZE",
        ("--max-frame-size",),
        str(1024 * 1024),
        "largest message accepted on an encrypted TCP connection, in bytes: it bounds the "
        "HTTP tunnel's bodies (other connections and ports: 64 KiB)",
        "BYTES",
    ),
    Opt(
        "MAX_CONNECTIONS_PER_IP",
        ("--max-connections-per-ip",),
        "1000",
        "open TCP/WebSocket connections allowed from one IP (offices behind one NAT need many)",
        "NUMBER",
    ),
    Opt(
        "MAX_CONNECTIONS",
        ("--max-connections",),
        "100000",
        "open TCP/WebSocket connections allowed in total",
        "NUMBER",
    ),
    Opt(
        "REGISTER_BURST_PER_IP",
        ("--register-burst-per-ip",),
        "30",
        "key registrations (RegisterPk) accepted from one IP in a burst before it must "
        "pause 61 s (official: 30)",
        "NUMBER",
    ),
    Opt(
        "REGISTER_IDS_PER_IP",
        ("--register-ids-per-ip",),
        "300",
        "distinct IDs one IP may register per day (official: 300)",
        "NUMBER",
    ),
    Opt(
        "API_SERVER",
        ("--api-server",),
        "http://127.0.0.1:21114",
        "where the HTTP tunnel of newer clients (HttpProxyRequest, on encrypted TCP only) "
        "forwards API calls; 'none' disables the tunnel",
        "URL",
    ),
    Opt(
        "UDP_PUNCH",
        ("--udp-punch",),
        "N",
        "Y: serve UDP hole punching (forward udp_port, accept UDP PunchHoleSent from the "
        "registered peer answering a pending request); clients must enable it too",
        "Y|N",
    ),
    Opt(
        "ID_CHANGE",
        ("--id-change",),
        "Y",
        "Y: let clients change their own ID (client menu 'Change ID'); N: answer "
        "'not supported' like the official server",
        "Y|N",
    ),
    Opt(
        "MAX_SESSIONS_PER_IP",
        ("--max-sessions-per-ip",),
        "1000",
        "clients registered over TCP/WebSocket (proxy, WebSocket or no-UDP mode) from one IP",
        "NUMBER",
    ),
    Opt(
        "NEW_PEERS_PER_SECOND",
        ("--new-peers-per-second",),
        "500",
        "brand-new IDs registered per second in total, after a burst of a minute's worth; "
        "each is a database row, so a flood of forged registrations cannot fill the disk",
        "NUMBER",
    ),
    Opt(
        "MAX_PEERS_IN_MEMORY",
        ("--max-peers-in-memory",),
        "2000000",
        "peer records kept in memory; long-offline ones are evicted first (they reload "
        "from the database when they return)",
        "NUMBER",
    ),
)
ALL_OPTIONS = OFFICIAL + ENV_ONLY + PYHBB


@dataclass(frozen=True)
class HbbsOptions:
    """Everything hbbs needs to start, already validated."""

    port: int = DEFAULT_PORT
    key: str = "-"
    relay_servers: list[str] = field(default_factory=list)
    bind: str | None = None
    rmem: int = 0
    serial: int = 0
    rendezvous_servers: list[str] = field(default_factory=list)
    software_url: str = ""
    mask: str | None = None
    local_ip: str = ""
    always_use_relay: bool = False
    db_url: str = "./db_v2.sqlite3"
    db_readers: int = 1
    test_hbbs: str = ""
    trusted_proxies: list[Network] = field(default_factory=lambda: parse_networks(DEFAULT_TRUSTED))
    secure_tcp: bool = True
    console: bool = True
    max_frame: int = 1024 * 1024
    max_connections_per_ip: int = 1000
    max_connections: int = 100_000
    register_burst_per_ip: int = 30
    register_ids_per_ip: int = 300
    max_peers: int = 2_000_000
    new_peers_per_second: int = 500
    api_server: str = "http://127.0.0.1:21114"
    udp_punch: bool = False
    id_change: bool = True
    max_sessions_per_ip: int = 1000
    workdir: Path = field(default_factory=Path.cwd)

    @property
    def nat_port(self) -> int:
        return self.port - 1

    @property
    def ws_port(self) -> int:
        return self.port + 2


DESCRIPTION = """\
RustDesk ID/rendezvous server (pyhbb's hbbs), a drop-in replacement for the official one:
same ports, flags, variables, key files (id_ed25519, id_ed25519.pub) and database
(db_v2.sqlite3), all in the working directory."""


def _epilog() -> str:
    lines = [
        "Every option can also be set as an environment variable, in a .env file (KEY=value",
        "lines) in the working directory, or in the -c file. Precedence: flag > -c file >",
        ".env > environment. Names are case-insensitive; '-' and '_' are interchangeable.",
        "",
        "variables without a flag:",
    ]
    for opt in ENV_ONLY:
        lines.append(f"  {opt.name:<26}{opt.help} (default: {opt.default or 'empty'})")
    lines += [
        "  RUST_LOG                  log level: error, warn, info (default), debug, trace;",
        "                            e.g. RUST_LOG=hbbs=debug",
        "",
        "ports (P = --port): UDP+TCP P, TCP P-1, WebSocket P+2; open them in your firewall.",
        "The admin console: printf 'h' | nc 127.0.0.1 <P-1> (from this machine only).",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hbbs",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE", help="extra KEY=value file, read after .env")
    official = p.add_argument_group("options of the official hbbs")
    ours = p.add_argument_group("pyhbb options")
    for group, opts in ((official, OFFICIAL), (ours, PYHBB)):
        for opt in opts:
            default = opt.default or "empty"
            group.add_argument(
                *opt.flags,
                dest=opt.name,
                metavar=opt.metavar,
                help=f"{opt.help}. Variable: {opt.name}. Default: {default}",
            )
    return p


def _int(src: OptionSource, name: str, low: int, high: int) -> int:
    default = next(int(opt.default) for opt in ALL_OPTIONS if opt.name == name)
    value = src.get_int(name, default)  # an empty value means the default, as for DB_URL
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range ({low}..{high})")
    return value


def _api_server(value: str) -> str:
    value = value.strip()
    if value.lower() in ("", "none", "no", "n"):
        return ""
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"API_SERVER={value!r} must start with http:// or https://")
    return value


def parse_hbbs_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> HbbsOptions:
    """Parse flags and every configuration source; raises ConfigError with advice."""
    args = build_parser().parse_args(argv)
    workdir = workdir or Path.cwd()
    config = workdir / args.config if args.config else None  # relative to the workdir
    src = OptionSource.load(os.environ if environ is None else environ, workdir, config)
    layered = OptionSource(
        [
            {opt.name: opt.default for opt in ALL_OPTIONS},
            src.as_dict(),
            {k: v for k, v in vars(args).items() if v is not None and k != "config"},
        ]
    )
    port = _int(layered, "PORT", 3, 65533)
    mask = layered.get_str("MASK", "").strip() or None
    if mask is not None:
        try:
            import ipaddress

            ipaddress.IPv4Network(mask, strict=False)
        except ValueError:
            raise ConfigError(
                f"--mask {mask!r} is not an IPv4 network like 192.168.0.0/16"
            ) from None
    try:
        trusted = parse_networks(split_list(layered.get_str("TRUSTED_PROXIES", "")))
    except ValueError as e:
        raise ConfigError(f"TRUSTED_PROXIES: {e}") from None
    return HbbsOptions(
        port=port,
        key=layered.get_str("KEY", "-"),
        relay_servers=split_list(layered.get_str("RELAY_SERVERS", "")),
        bind=layered.get_str("BIND", "").strip() or None,
        rmem=_int(layered, "RMEM", 0, 1 << 31),
        serial=_int(layered, "SERIAL", -(1 << 31), (1 << 31) - 1),
        rendezvous_servers=split_list(layered.get_str("RENDEZVOUS_SERVERS", "")),
        software_url=layered.get_str("SOFTWARE_URL", ""),
        mask=mask,
        local_ip=layered.get_str("LOCAL_IP", "").strip(),
        always_use_relay=layered.get_str("ALWAYS_USE_RELAY", "N").strip().upper() == "Y",
        db_url=layered.get_str("DB_URL", "./db_v2.sqlite3") or "./db_v2.sqlite3",
        db_readers=_int(layered, "MAX_DATABASE_CONNECTIONS", 1, 64),
        test_hbbs=layered.get_str("TEST_HBBS", "").strip(),
        trusted_proxies=trusted,
        secure_tcp=layered.get_bool("SECURE_TCP", True),
        console=layered.get_bool("CONSOLE", True),
        max_frame=_int(layered, "MAX_FRAME_SIZE", 1024, 64 * 1024 * 1024),
        max_connections_per_ip=_int(layered, "MAX_CONNECTIONS_PER_IP", 1, 1 << 24),
        max_connections=_int(layered, "MAX_CONNECTIONS", 1, 1 << 24),
        register_burst_per_ip=_int(layered, "REGISTER_BURST_PER_IP", 1, 1 << 30),
        register_ids_per_ip=_int(layered, "REGISTER_IDS_PER_IP", 1, 1 << 30),
        max_peers=_int(layered, "MAX_PEERS_IN_MEMORY", 1000, 1 << 31),
        new_peers_per_second=_int(layered, "NEW_PEERS_PER_SECOND", 1, 1 << 30),
        api_server=_api_server(layered.get_str("API_SERVER", "")),
        udp_punch=layered.get_bool("UDP_PUNCH", False),
        id_change=layered.get_bool("ID_CHANGE", True),
        max_sessions_per_ip=_int(layered, "MAX_SESSIONS_PER_IP", 1, 1 << 24),
        workdir=workdir,
    )
