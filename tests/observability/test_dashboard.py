"""contrib/grafana/pyhbb.json: every metric its panels query is one the services really
export (checked against scrapes of running servers after some traffic)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.relay.server import RelayServer
from pyhbb.wire import rendezvous_pb2 as pb
from tests.api.support import running_api
from tests.observability.free import free_port
from tests.observability.scrape import scrape
from tests.relay.clients import tcp_relay_client
from tests.support.hbbs_server import running_hbbs
from tests.support.ports import free_base_port
from tests.support.rdclient import Msg, TcpClient, UdpPeer

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "pyhbb.json"
METRIC = re.compile(r"\b((?:pyhbb|process)_[a-zA-Z0-9_]+)")


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def queried_metrics() -> dict[str, str]:
    """Metric name → the title of a panel that queries it."""
    dashboard = json.loads(DASHBOARD.read_text())
    names: dict[str, str] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name in METRIC.findall(target["expr"]):
                names.setdefault(name, panel["title"])
    return names


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    all_panels = panels(dashboard)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    graphs = [p for p in all_panels if p["type"] != "row"]
    assert len(graphs) >= 25
    for panel in graphs:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job"}


async def test_every_queried_metric_is_exported(tmp_path: Path) -> None:
    hbbs_where = ("127.0.0.1", free_port())
    api_where = ("127.0.0.1", free_port())
    hbbr_where = ("127.0.0.1", free_port())
    relay_opts = dataclasses.replace(
        HbbrOptions(), port=free_base_port((0, 2)), workdir=tmp_path, metrics=hbbr_where
    )
    relay = RelayServer(relay_opts, "")
    await relay.start()
    try:
        async with (
            running_hbbs(tmp_path, metrics=hbbs_where) as hbbs,
            running_api(tmp_path, hbbs_port=hbbs.opts.nat_port, metrics=api_where) as api,
        ):
            # a little of everything, so that the labelled series exist
            peer = await UdpPeer.open(hbbs.udp, "127.0.0.2")
            await peer.register("dash-peer-1")
            a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            a.send(
                Msg(
                    punch_hole_request=pb.PunchHoleRequest(
                        id="dash-peer-1", licence_key=hbbs.public_key
                    )
                )
            )
            await peer.recv_kind("punch_hole")
            a.send(Msg(request_relay=pb.RequestRelay(id="dash-peer-1", uuid="x")))
            await peer.recv_kind("request_relay")
            a.close()
            peer.close()
            device = api.client("dash-peer-1")
            await device.device_call("/api/heartbeat")
            await device.device_call("/api/audit/conn", {"conn_id": 1, "action": "new"})
            await api.add_user("dash")
            await device.login("dash")
            await api.ctx.presence.online(["dash-peer-1"])
            _, first = await tcp_relay_client(relay_opts.port, "dash-uuid", "127.0.0.4")
            _, second = await tcp_relay_client(relay_opts.port, "dash-uuid", "127.0.0.5")
            exported = set()
            for where in (hbbs_where, api_where, hbbr_where):
                exported |= (await scrape(where)).names()
            first.close()
            second.close()
    finally:
        await relay.close()
    missing = {
        name: title
        for name, title in queried_metrics().items()
        if name not in exported and f"{name}_total" not in exported
    }
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    assert len(queried_metrics()) >= 40
    assert any(name.startswith("pyhbb_hbbr_") for name in queried_metrics())
