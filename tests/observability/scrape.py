"""Reading /metrics and /healthz over real HTTP, as Prometheus and a probe do.

The endpoint answers from its own thread but reads the loop's counters on the loop, so
tests running on that loop fetch from a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def fetch(address: tuple[str, int], path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    host, port = address
    where = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{where}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class Scrape:
    """One scrape: every sample by (name, sorted labels), and the family types."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    types: dict[str, str]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        return self.get(name, **labels) - before.get(name, **labels)


def parse(text: str) -> Scrape:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return Scrape(samples, types)


def scrape_sync(address: tuple[str, int]) -> Scrape:
    status, body = fetch(address, "/metrics")
    assert status == 200, body
    return parse(body.decode())


async def scrape(address: tuple[str, int]) -> Scrape:
    return await asyncio.to_thread(scrape_sync, address)


async def health(address: tuple[str, int]) -> tuple[int, dict[str, Any]]:
    status, body = await asyncio.to_thread(fetch, address, "/healthz")
    return status, json.loads(body)


def check_conventions(result: Scrape, forbidden_label_values: set[str]) -> None:
    """Prometheus naming: valid names, ``_total`` counters, base units, bounded labels
    (no id or address among the label values)."""
    for family in result.types:
        assert NAME.fullmatch(family), family
        if family.startswith("pyhbb_"):
            assert not family.endswith(("_ms", "_milliseconds", "_kb", "_mb")), family
    for name, labels in result.samples:
        assert NAME.fullmatch(name), name
        for label, value in labels:
            assert LABEL.fullmatch(label), (name, label)
            assert value not in forbidden_label_values, (name, label, value)
            assert "127.0." not in value and "::1" not in value, (name, label, value)
        if name.startswith("pyhbb_") and result.types.get(name.removesuffix("_total")) == "counter":
            assert name.endswith("_total"), name
