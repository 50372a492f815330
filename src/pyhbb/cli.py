"""The ``pyhbb`` command: ``pyhbb run`` starts hbbs, hbbr and the API server together."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyhbb.config import hbbr, hbbs
from pyhbb.config.options import flag_values, host_port, parse_argument, parse_command
from pyhbb.config.sources import ConfigError, Source
from pyhbb.net.hostport import format_addr
from pyhbb.observability.logs import setup_logging
from pyhbb.wire.keys import KeyError_, load_or_generate

RUN_HELP = """\
Start the ID/rendezvous server (hbbs), the relay server (hbbr) and the API server
(pyhbb api) together, each in its own process (so both CPU cores work), in the current
directory: key files and database are created there when missing. Options after -- go
to hbbs, e.g.
  pyhbb run -- -r relay.example.com
Environment variables, .env and the -c file apply to all. hbbr listens on P+1 and P+3
(P = the hbbs port, 21116 by default) and enforces the same key as hbbs (-k -), so only
clients configured with your key can relay. The API server listens on P-2 (21114), where
clients look for it, and hbbs tunnels API calls to it. When one service exits, the
others are stopped too. SIGUSR2 is passed to hbbs: it restarts in place (new code and
configuration, same sockets and peers; see README, "Upgrading without dropping peers").
Monitoring (Prometheus /metrics and /healthz) is on by default, on loopback only:
hbbs at 127.0.0.1:9116, hbbr at 127.0.0.1:9117, the API server at 127.0.0.1:9114. Give
hbbs --metrics HOST:PORT to move them all (hbbr takes PORT+1, the API PORT-2), or
--metrics off to turn them off."""
DEFAULT_METRICS = ("127.0.0.1", 9116)  # hbbs; hbbr takes the port plus 1, the API minus 2


def _hbbr_args(hbbs_args: list[str], hbbr_args: list[str]) -> list[str]:
    """hbbr follows hbbs: port P+1 (the official PORT+1 rule), the same bind address and
    the same -c file, unless given explicitly with --hbbr-arg. Both command lines are
    checked here, so a bad value stops ``pyhbb run`` before either service starts."""
    opts = hbbs.parse_hbbs_options(hbbs_args)
    config = flag_values(hbbs.SPEC, hbbs_args).get("config")
    given = flag_values(hbbr.SPEC, hbbr_args)
    derived = ["-k", "-"]
    if "PORT" not in given:
        derived += ["-p", str(opts.port + 1)]
    if opts.bind and "BIND" not in given:
        derived += ["-b", opts.bind]
    if config is not None and "config" not in given:
        derived += ["-c", config]
    if "METRICS" not in given:  # a METRICS variable is hbbs's: hbbr takes port + 1 anyway
        derived += ["--metrics", _derived_metrics(_metrics_args(hbbs_args)[1], 1)]
    args = derived + hbbr_args
    hbbr.parse_options(args, os.environ, Path.cwd())
    return args


def _metrics_args(hbbs_args: list[str]) -> tuple[list[str], tuple[str, int] | None]:
    """hbbs's metrics address under ``pyhbb run``: as the admin set it (flag, -c file,
    .env or environment), else :data:`DEFAULT_METRICS`. Returns the extra hbbs arguments
    and the address the other services derive theirs from (None: monitoring off)."""
    values = parse_command(hbbs.SPEC, hbbs_args, os.environ, Path.cwd())
    if values.source(hbbs.METRICS) is not Source.DEFAULT:
        return [], values[hbbs.METRICS]
    host, port = DEFAULT_METRICS
    return ["--metrics", f"{host}:{port}"], DEFAULT_METRICS


def _derived_metrics(base: tuple[str, int] | None, offset: int) -> str:
    """Another service's metrics address beside hbbs's (``off`` when hbbs has none)."""
    if base is None:
        return "off"
    host, port = base
    return format_addr((host, port + offset)) if 0 < port + offset < 65536 else "off"


def _api_args(hbbs_args: list[str], api_args: list[str]) -> tuple[list[str], list[str]]:
    """The API follows hbbs: port P-2, hbbs's bind address and -c file, asking hbbs on P-1
    which devices are online (and hbbr on P+1, for the console); hbbs's tunnel goes to it
    unless API_SERVER was set. Returns the API's arguments and the extra ones for hbbs."""
    from pyhbb.api import options as api

    opts = hbbs.parse_hbbs_options(hbbs_args)
    config = flag_values(hbbs.SPEC, hbbs_args).get("config")
    given = flag_values(api.SPEC, api_args)
    host = opts.bind or "127.0.0.1"
    url_host = f"[{host}]" if ":" in host else host
    derived = []
    if "API_HBBS" not in given:
        derived += ["--hbbs", f"{url_host}:{opts.nat_port}"]
    if "API_HBBR" not in given:  # the web console talks to hbbr's console on P+1
        derived += ["--hbbr", f"{url_host}:{opts.port + 1}"]
    if "API_PORT" not in given:
        derived += ["-p", str(opts.port - 2)]
    if opts.bind and "BIND" not in given:
        derived += ["-b", opts.bind]
    if config is not None and "config" not in given:
        derived += ["-c", config]
    values = parse_command(api.SPEC, api_args, os.environ, Path.cwd())
    if values.source(api.API_METRICS) is Source.DEFAULT:  # not set by the admin
        derived += ["--metrics", _derived_metrics(_metrics_args(hbbs_args)[1], -2)]
    args = derived + api_args
    api_opts = api.parse_api_options(args, os.environ, Path.cwd())
    hbbs_extra: list[str] = []
    if opts.api_server == hbbs.HbbsOptions().api_server and api_opts.port != api.DEFAULT_PORT:
        hbbs_extra = ["--api-server", f"http://{url_host}:{api_opts.port}"]
    return args, hbbs_extra


def _run(hbbs_args: list[str], hbbr_args: list[str], api_args: list[str] | None) -> int:
    try:
        hbbr_args = _hbbr_args(hbbs_args, hbbr_args)
        if api_args is not None:
            api_args, hbbs_extra = _api_args(hbbs_args, api_args)
            hbbs_args = hbbs_args + hbbs_extra
        hbbs_args = hbbs_args + _metrics_args(hbbs_args)[0]
        setup_logging(os.environ.get("RUST_LOG"))
        # Create the key pair once, before either child could race to generate it.
        load_or_generate(Path.cwd())
    except (ConfigError, KeyError_) as e:
        print(f"pyhbb: {e}", file=sys.stderr)
        return 2
    python = sys.executable
    children = [
        subprocess.Popen([python, "-m", "pyhbb.rendezvous.cli", *hbbs_args]),
        subprocess.Popen([python, "-m", "pyhbb.relay.cli", *hbbr_args]),
    ]
    if api_args is not None:
        children.append(subprocess.Popen([python, "-m", "pyhbb.api.cli", *api_args]))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def restart_hbbs(_signum: int, _frame: object) -> None:
        # SIGUSR2 = hbbs's restart in place; hbbr and the API would die of it
        if children[0].poll() is None:
            children[0].send_signal(signal.SIGUSR2)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR2, restart_hbbs)
    status = 0
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is not None and child.returncode:
            status = status or child.returncode
    forward(signal.SIGTERM, None)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyhbb", description="pyhbb: RustDesk server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run hbbs, hbbr and the API server together",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--hbbr-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to hbbr (repeatable), e.g. --hbbr-arg=--port=21117",
    )
    run.add_argument(
        "--api-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to the API server (repeatable), e.g. --api-arg=--max-peer-one-ab=500",
    )
    run.add_argument(
        "--no-api",
        action="store_true",
        help="do not start the API server (e.g. when another one serves port P-2)",
    )
    run.add_argument("hbbs_args", nargs="*", help="arguments for hbbs (after --)")
    check = sub.add_parser(
        "check",
        help="test a running server from outside, port by port, as clients use it",
        description="Connect to every port a RustDesk client uses (UDP and TCP P, TCP P-1, "
        "WebSocket P+2, relay TCP R and WebSocket R+2) with the client's own first message, "
        "and tell which ones fail and why. Exit status 1 when a check fails.",
    )
    check.add_argument("server", metavar="HOST[:PORT]", help="the ID server (port 21116)")
    check.add_argument(
        "--key",
        default="",
        help="the key clients are configured with (content of id_ed25519.pub): verifies the "
        "server's signature and lets the relay check pass when it enforces the key",
    )
    check.add_argument(
        "--relay", metavar="HOST[:PORT]", help="relay server (default: the ID server, port P+1)"
    )
    check.add_argument(
        "--health",
        "--metrics",
        action="append",
        default=[],
        metavar="HOST:PORT|URL",
        help="also ask a service's health endpoint (its --metrics address, or the full "
        "/healthz URL), repeatable: with pyhbb run's defaults, on the server: "
        "--health 127.0.0.1:9116 --health 127.0.0.1:9117 --health 127.0.0.1:9114",
    )
    sub.add_parser("hbbs", help="run hbbs only (same as the hbbs command)", add_help=False)
    sub.add_parser("hbbr", help="run hbbr only (same as the hbbr command)", add_help=False)
    sub.add_parser("api", help="run the API server only (pyhbb api --help)", add_help=False)
    from pyhbb.api.admin import build_parsers
    from pyhbb.cluster.cli import build_parser as build_cluster_parser

    build_parsers(sub)
    build_cluster_parser(sub)
    args, rest = parser.parse_known_args(argv)
    if args.command == "hbbs":
        from pyhbb.rendezvous.cli import main as hbbs_main

        return hbbs_main(rest)
    if args.command == "hbbr":
        from pyhbb.relay.cli import main as hbbr_main

        return hbbr_main(rest)
    if args.command == "api":
        from pyhbb.api.cli import main as api_main

        return api_main(rest)
    if rest:
        parser.error(f"unknown arguments {rest}; put hbbs arguments after --")
    if args.command == "check":
        from pyhbb.doctor import main as check_main

        try:
            parse_argument("HOST[:PORT]", host_port(hbbs.DEFAULT_PORT), args.server)
            if args.relay is not None:
                parse_argument("--relay", host_port(hbbr.DEFAULT_PORT), args.relay)
        except ConfigError as e:
            print(f"pyhbb check: {e}", file=sys.stderr)
            return 2
        return check_main(args.server, args.key, args.relay, args.health)
    if args.command == "cluster":
        from pyhbb.cluster.cli import main as cluster_main

        return cluster_main(args)
    if args.command in ("user", "ab", "group"):
        from pyhbb.api.admin import main as admin_main

        return admin_main(args)
    return _run(args.hbbs_args, args.hbbr_arg, None if args.no_api else args.api_arg)


if __name__ == "__main__":
    sys.exit(main())
