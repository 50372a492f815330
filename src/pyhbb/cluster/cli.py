"""``pyhbb cluster …``: move a database into the cluster and back, print a NATS config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pyhbb.cluster.nats_config import NatsMember, render
from pyhbb.cluster.options import CLUSTER
from pyhbb.config.options import parse_argument
from pyhbb.config.sources import ConfigError

HELP = """\
Cluster mode tools (docs/cluster-deployment.md).
  pyhbb cluster import db_v2.sqlite3 --cluster URLS   copy a single server's peers into
                                                      the cluster directory
  pyhbb cluster export db_v2.sqlite3 --cluster URLS   write the directory into a database
                                                      (the way back to a single server)
  pyhbb cluster nats-config NAME HOST --routes H2,H3   a nats-server config for one host
The NATS URLs come from --cluster or the CLUSTER variable."""


def build_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = sub.add_parser(
        "cluster",
        help="cluster mode: import/export the peer directory, NATS config",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    for name, what in (
        ("import", "copy the peers of a db_v2.sqlite3 into the cluster directory"),
        ("export", "write the cluster directory into a db_v2.sqlite3 (created if missing)"),
    ):
        p = actions.add_parser(name, help=what, description=what)
        p.add_argument("database", type=Path, metavar="DB_FILE")
        p.add_argument("--cluster", metavar="URLS", help="NATS servers (default: $CLUSTER)")
    conf = actions.add_parser(
        "nats-config",
        help="print the nats-server configuration of one cluster host",
        description="Print the nats-server configuration for one host of the cluster: "
        "JetStream on, a 2 s ping, routes to the other hosts on port 6222.",
    )
    conf.add_argument("name", help="this server's name, e.g. the node name")
    conf.add_argument("host", help="the address this host listens on")
    conf.add_argument("--routes", required=True, help="the other hosts, comma-separated")
    conf.add_argument("--store-dir", default="/var/lib/nats", help="JetStream storage")


def main(args: argparse.Namespace) -> int:
    if args.cluster_command == "nats-config":
        member = NatsMember(args.name, args.host, 4222, 6222, args.store_dir)
        routes = [f"{h.strip()}:6222" for h in args.routes.split(",") if h.strip()]
        print(render(member, routes), end="")
        return 0
    try:
        text = args.cluster or os.environ.get("CLUSTER", "")
        urls = parse_argument("--cluster", CLUSTER.parser, text)
        if not urls:
            raise ConfigError("--cluster or CLUSTER must name the NATS servers")
    except ConfigError as e:
        print(f"pyhbb cluster: {e}", file=sys.stderr)
        return 2
    from pyhbb.rendezvous.adapters.cluster import transfer  # nats only here

    try:
        if args.cluster_command == "import":
            imported, present = asyncio.run(transfer.import_db(args.database, urls))
            print(f"{imported} peers imported, {present} already in the directory")
        else:
            written = asyncio.run(transfer.export_db(args.database, urls))
            print(f"{written} peers written to {args.database}")
    except Exception as e:  # unreachable servers, unreadable file: one line, status 1
        print(f"pyhbb cluster {args.cluster_command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
