"""hbbs' options (§10.1-10.2) and its ``--help``, declared with :mod:`pyhbb.config.options`.

Sources, each overriding the previous: inherited environment, ``.env`` in the working
directory, the ``-c/--config`` file, then command-line flags. Names are case-insensitive
and ``_``/``-`` are interchangeable, as with the official server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhbb.cluster.options import CLUSTER, NODE_NAME
from pyhbb.config import shared
from pyhbb.config.options import (
    OFFICIAL,
    CommandSpec,
    Option,
    ValueParser,
    comma_list,
    host_port,
    http_url,
    ipv4_network,
    parse_command,
    port_number,
    text,
    whole_number,
    y_means_yes,
    yes_no,
)
from pyhbb.config.sources import ConfigError
from pyhbb.net.forwarded import DEFAULT_TRUSTED, Network, parse_networks
from pyhbb.rendezvous.relay_servers import DEFAULT_RELAY_PORT

__all__ = [
    "ALL_OPTIONS",
    "SPEC",
    "ConfigError",
    "HbbsOptions",
    "parse_hbbs_options",
]

DEFAULT_PORT = 21116
INT32 = (-(1 << 31), (1 << 31) - 1)


def _test_hbbs(value: str) -> str:
    """TEST_HBBS: ``no`` (any case), an ``IP:port`` to probe, or empty (our own port)."""
    value = value.strip()
    if value.lower() == "no":
        return value
    return host_port(DEFAULT_PORT).convert(value) if value else ""


PORT = Option(
    "PORT",
    port_number(3, 65533),  # P-1 and P+2 must be ports too
    str(DEFAULT_PORT),
    "main port P: UDP and TCP P, TCP P-1 (NAT test, online status, console), WebSocket P+2",
    flags=("-p", "--port"),
    metavar="NUMBER",
    group=OFFICIAL,
)
KEY = shared.KEY.but(
    default="-",
    help="'-' or '_': load id_ed25519 from the working directory (generated if missing) and "
    "require clients to use its public key; empty: load/generate it for signing but "
    "accept any client key; a base64 secret key: use it; any other text: require that "
    "key but sign nothing (clients then get unencrypted sessions: avoid)",
)
RELAY_SERVERS = Option(
    "RELAY_SERVERS",
    comma_list(host_port(DEFAULT_RELAY_PORT)),
    "",
    "relay servers handed to clients, comma-separated host[:port] (port 21117 when "
    "omitted); several are used in turn and health-checked every 3 s. Empty: clients "
    "use the ID server's host with port P+1",
    flags=("-r", "--relay-servers"),
    metavar="LIST",
    group=OFFICIAL,
)
RMEM = Option(
    "RMEM",
    whole_number(0, 1 << 31),
    "0",
    "UDP receive buffer size in bytes (0: system default); raise it for many clients "
    "(the kernel caps it at net.core.rmem_max)",
    flags=("-M", "--rmem"),
    metavar="BYTES",
    group=OFFICIAL,
)
SERIAL = Option(
    "SERIAL",
    whole_number(*INT32),
    "0",
    "configuration serial (deprecated); clients report 3 or more, so 4+ makes them "
    "take the rendezvous server list below",
    flags=("-s", "--serial"),
    metavar="NUMBER",
    group=OFFICIAL,
)
RENDEZVOUS_SERVERS = Option(
    "RENDEZVOUS_SERVERS",
    comma_list(host_port(DEFAULT_PORT)),
    "",
    "rendezvous servers pushed to clients with --serial (deprecated), comma-separated",
    flags=("-R", "--rendezvous-servers"),
    metavar="LIST",
    group=OFFICIAL,
)
SOFTWARE_URL = Option(
    "SOFTWARE_URL",
    text(),
    "",
    "download URL of the newest client (legacy clients only)",
    flags=("-u", "--software-url"),
    metavar="URL",
    group=OFFICIAL,
)
MASK = Option(
    "MASK",
    ipv4_network(),
    "",
    "IPv4 network of your LAN, e.g. 192.168.0.0/16 (deprecated): peers inside and "
    "outside it are told to relay through LOCAL_IP",
    flags=("--mask",),
    metavar="CIDR",
    group=OFFICIAL,
)
LOCAL_IP = Option(
    "LOCAL_IP",
    text(strip=True),
    "",
    "relay address given to LAN peers with --mask; empty: this host's primary IP",
    group=OFFICIAL,
)
ALWAYS_USE_RELAY = Option(
    "ALWAYS_USE_RELAY",
    y_means_yes(),
    "N",
    "Y: every connection goes through the relay (any other value: N)",
    group=OFFICIAL,
)
MAX_DATABASE_CONNECTIONS = Option(
    "MAX_DATABASE_CONNECTIONS", whole_number(1, 64), "1", "database reader threads", group=OFFICIAL
)
TEST_HBBS = Option(
    "TEST_HBBS",
    ValueParser("'no', empty, or IP:port", _test_hbbs),
    "",
    "'no': disable the UDP self-test; or IP:port to send it to. "
    "The self-test exits (status 1) when the UDP socket stops answering for 12 s, so a "
    "supervisor restarts the server",
    group=OFFICIAL,
)
SECURE_TCP = Option(
    "SECURE_TCP",
    yes_no(),
    "Y",
    "Y: offer the encrypted channel (KeyExchange) on TCP P, which logged-in and "
    "TCP-mode clients wait for; N: behave like the official server",
    flags=("--secure-tcp",),
    metavar="Y|N",
)
CONSOLE = Option(
    "CONSOLE",
    yes_no(),
    "Y",
    "Y: serve the admin console to loopback on P-1",
    flags=("--console",),
    metavar="Y|N",
)
MAX_FRAME_SIZE = Option(
    "MAX_FRAME_SIZE",
    whole_number(1024, 64 * 1024 * 1024),
    str(1024 * 1024),
    "largest message accepted on an encrypted TCP connection, in bytes: it bounds the "
    "HTTP tunnel's bodies (other connections and ports: 64 KiB)",
    flags=("--max-frame-size",),
    metavar="BYTES",
)
MAX_CONNECTIONS_PER_IP = Option(
    "MAX_CONNECTIONS_PER_IP",
    whole_number(1, 1 << 24),
    "1000",
    "open TCP/WebSocket connections allowed from one IP (offices behind one NAT need many)",
    flags=("--max-connections-per-ip",),
    metavar="NUMBER",
)
MAX_CONNECTIONS = Option(
    "MAX_CONNECTIONS",
    whole_number(1, 1 << 24),
    "100000",
    "open TCP/WebSocket connections allowed in total",
    flags=("--max-connections",),
    metavar="NUMBER",
)
REGISTER_BURST_PER_IP = Option(
    "REGISTER_BURST_PER_IP",
    whole_number(1, 1 << 30),
    "30",
    "key registrations (RegisterPk) accepted from one IP in a burst before it must "
    "pause 61 s (official: 30)",
    flags=("--register-burst-per-ip",),
    metavar="NUMBER",
)
REGISTER_IDS_PER_IP = Option(
    "REGISTER_IDS_PER_IP",
    whole_number(1, 1 << 30),
    "300",
    "distinct IDs one IP may register per day (official: 300)",
    flags=("--register-ids-per-ip",),
    metavar="NUMBER",
)
API_SERVER = Option(
    "API_SERVER",
    http_url(off_words=("none", "no", "n")),
    "http://127.0.0.1:21114",
    "where the HTTP tunnel of newer clients (HttpProxyRequest, on encrypted TCP only) "
    "forwards API calls; 'none' disables the tunnel",
    flags=("--api-server",),
    metavar="URL",
)
UDP_PUNCH = Option(
    "UDP_PUNCH",
    yes_no(),
    "N",
    "Y: serve UDP hole punching (forward udp_port, accept UDP PunchHoleSent from the "
    "registered peer answering a pending request); clients must enable it too",
    flags=("--udp-punch",),
    metavar="Y|N",
)
ID_CHANGE = Option(
    "ID_CHANGE",
    yes_no(),
    "Y",
    "Y: let clients change their own ID (client menu 'Change ID'); N: answer "
    "'not supported' like the official server",
    flags=("--id-change",),
    metavar="Y|N",
)
MAX_SESSIONS_PER_IP = Option(
    "MAX_SESSIONS_PER_IP",
    whole_number(1, 1 << 24),
    "1000",
    "clients registered over TCP/WebSocket (proxy, WebSocket or no-UDP mode) from one IP",
    flags=("--max-sessions-per-ip",),
    metavar="NUMBER",
)
NEW_PEERS_PER_SECOND = Option(
    "NEW_PEERS_PER_SECOND",
    whole_number(1, 1 << 30),
    "500",
    "brand-new IDs registered per second in total, after a burst of a minute's worth; "
    "each is a database row, so a flood of forged registrations cannot fill the disk",
    flags=("--new-peers-per-second",),
    metavar="NUMBER",
)
MAX_PEERS_IN_MEMORY = Option(
    "MAX_PEERS_IN_MEMORY",
    whole_number(1000, 1 << 31),
    "2000000",
    "peer records kept in memory; long-offline ones are evicted first (they reload "
    "from the database when they return)",
    flags=("--max-peers-in-memory",),
    metavar="NUMBER",
)
METRICS = shared.METRICS.but(
    help=shared.METRICS.help + ". pyhbb run uses 127.0.0.1:9116",
)

ALL_OPTIONS: tuple[Option[Any], ...] = (
    # the official flags, in upstream's order
    PORT,
    KEY,
    RELAY_SERVERS,
    shared.BIND,
    RMEM,
    SERIAL,
    RENDEZVOUS_SERVERS,
    SOFTWARE_URL,
    MASK,
    # the official variables without a flag
    LOCAL_IP,
    ALWAYS_USE_RELAY,
    shared.DB_URL,
    MAX_DATABASE_CONNECTIONS,
    TEST_HBBS,
    shared.RUST_LOG,
    # pyhbb's own
    shared.TRUSTED_PROXIES,
    SECURE_TCP,
    CONSOLE,
    MAX_FRAME_SIZE,
    MAX_CONNECTIONS_PER_IP,
    MAX_CONNECTIONS,
    REGISTER_BURST_PER_IP,
    REGISTER_IDS_PER_IP,
    API_SERVER,
    UDP_PUNCH,
    ID_CHANGE,
    MAX_SESSIONS_PER_IP,
    NEW_PEERS_PER_SECOND,
    MAX_PEERS_IN_MEMORY,
    METRICS,
    # cluster mode (docs/cluster.md)
    CLUSTER,
    NODE_NAME,
)


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
    metrics: tuple[str, int] | None = None
    """Where to serve /metrics and /healthz (None: nowhere)."""
    workdir: Path = field(default_factory=Path.cwd)
    rust_log: str = ""  # RUST_LOG from the inherited environment
    cluster: list[str] = field(default_factory=list)
    """NATS server URLs; empty: a single server."""
    node_name: str = ""
    """This node's name in the cluster (used only with ``cluster``)."""

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

EPILOG = """\
ports (P = --port): UDP+TCP P, TCP P-1, WebSocket P+2; open them in your firewall.
The admin console: printf 'h' | nc 127.0.0.1 <P-1> (from this machine only)."""

SPEC = CommandSpec(prog="hbbs", description=DESCRIPTION, options=ALL_OPTIONS, epilog=EPILOG)


def parse_hbbs_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> HbbsOptions:
    """Parse flags and every configuration source; raises ConfigError with advice."""
    workdir = workdir or Path.cwd()
    v = parse_command(SPEC, argv, os.environ if environ is None else environ, workdir)
    if v[CLUSTER] and not v[RELAY_SERVERS]:
        # Without -r a client relays through the host name it resolved, which may lead
        # the two sides of a pair to two different nodes (docs/cluster.md §0).
        raise v.refuse(
            CLUSTER,
            "needs -r/RELAY_SERVERS",
            "-r naming this node's hbbr by an address only it answers on, with --cluster",
        )
    return HbbsOptions(
        port=v[PORT],
        key=v[KEY],
        relay_servers=v[RELAY_SERVERS],
        bind=v[shared.BIND],
        rmem=v[RMEM],
        serial=v[SERIAL],
        rendezvous_servers=v[RENDEZVOUS_SERVERS],
        software_url=v[SOFTWARE_URL],
        mask=v[MASK],
        local_ip=v[LOCAL_IP],
        always_use_relay=v[ALWAYS_USE_RELAY],
        db_url=v[shared.DB_URL],
        db_readers=v[MAX_DATABASE_CONNECTIONS],
        test_hbbs=v[TEST_HBBS],
        trusted_proxies=v[shared.TRUSTED_PROXIES],
        secure_tcp=v[SECURE_TCP],
        console=v[CONSOLE],
        max_frame=v[MAX_FRAME_SIZE],
        max_connections_per_ip=v[MAX_CONNECTIONS_PER_IP],
        max_connections=v[MAX_CONNECTIONS],
        register_burst_per_ip=v[REGISTER_BURST_PER_IP],
        register_ids_per_ip=v[REGISTER_IDS_PER_IP],
        max_peers=v[MAX_PEERS_IN_MEMORY],
        new_peers_per_second=v[NEW_PEERS_PER_SECOND],
        api_server=v[API_SERVER],
        udp_punch=v[UDP_PUNCH],
        id_change=v[ID_CHANGE],
        max_sessions_per_ip=v[MAX_SESSIONS_PER_IP],
        metrics=v[METRICS],
        workdir=workdir,
        rust_log=v[shared.RUST_LOG],
        cluster=v[CLUSTER],
        node_name=v[NODE_NAME],
    )
