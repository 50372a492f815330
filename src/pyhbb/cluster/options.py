"""The cluster options of hbbs (docs/cluster.md, docs/cluster-deployment.md).

``--cluster URLS`` switches cluster mode on; ``--node-name`` names this node. Declared
like every other option (flag, ``-c`` file, ``.env``, environment).
"""

from __future__ import annotations

import re
import socket

from pyhbb.cluster.messages import NODE_NAME as NODE_NAME_RE
from pyhbb.config.options import BadValue, Option, ValueParser, split_host_port
from pyhbb.config.sources import show

DEFAULT_NATS_PORT = 4222
CLUSTER_GROUP = "cluster mode (docs/cluster-deployment.md)"


def nats_url(text: str) -> str:
    """``nats://host[:port]`` (port 4222 when omitted), returned normalised."""
    value = text.strip()
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "nats", value
    if scheme.lower() not in ("nats", "tls"):
        raise BadValue(f"has {show(value)}, which is not a nats:// URL")
    host, port = split_host_port(rest.rstrip("/"), DEFAULT_NATS_PORT)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme.lower()}://{host}:{port}"


def _nats_urls(value: str) -> list[str]:
    return [nats_url(entry) for entry in value.split(",") if entry.strip()]


def default_node_name() -> str:
    """The host name's first label, with anything a NATS subject token cannot hold
    replaced by '-' (so ``db-1.example.com`` gives ``db-1``)."""
    label = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", label)[:64]
    return name or "node"


def _node_name(value: str) -> str:
    value = value.strip()
    if not value:
        return ""  # the host name, resolved when the node starts
    if not NODE_NAME_RE.fullmatch(value):
        raise BadValue("is not a node name")
    return value


CLUSTER = Option(
    "CLUSTER",
    ValueParser("comma-separated nats://host:port URLs of the NATS servers", _nats_urls),
    "",
    "cluster mode: the NATS servers (comma-separated nats://host:port) shared by every "
    "node of the cluster; peers, routing and online status are then shared through them. "
    "Empty: a single server on its SQLite database",
    flags=("--cluster",),
    metavar="URLS",
    group=CLUSTER_GROUP,
)
NODE_NAME = Option(
    "NODE_NAME",
    ValueParser("1 to 64 letters, digits, '-' or '_'", _node_name),
    "",
    "this node's name in the cluster, unique among the nodes (letters, digits, '-', "
    "'_'); empty: the host name's first label",
    flags=("--node-name",),
    metavar="NAME",
    group=CLUSTER_GROUP,
)
