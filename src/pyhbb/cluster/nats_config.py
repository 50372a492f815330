"""The nats-server configuration of one cluster member (docs/cluster-deployment.md).

``pyhbb cluster nats-config`` prints it; the tests start their servers with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NatsMember:
    name: str
    host: str
    client_port: int
    route_port: int
    store_dir: str
    monitor_port: int = 0
    """HTTP monitoring (/varz) on ``host``; 0: off."""


def render(member: NatsMember, routes: list[str], cluster_name: str = "pyhbb") -> str:
    """Config text: JetStream on, a 2 s ping so a vanished node's subscriptions go within
    seconds (docs/cluster.md §1.5), routes to the other members."""
    route_lines = "\n".join(f"    nats-route://{r}" for r in routes)
    monitor = f"http: {member.host}:{member.monitor_port}\n" if member.monitor_port else ""
    return f"""# pyhbb cluster member {member.name}
server_name: {member.name}
listen: {member.host}:{member.client_port}
ping_interval: "2s"
ping_max: 2
max_payload: 1MB
{monitor}
jetstream {{
  store_dir: "{member.store_dir}"
  max_memory_store: 1GB
  max_file_store: 20GB
}}

cluster {{
  name: {cluster_name}
  listen: {member.host}:{member.route_port}
  routes: [
{route_lines}
  ]
}}
"""
