"""Placeholder."""

from __future__ import annotations

from starlette.routing import Route

from pyhbb.api.console.web import Console


def routes(console: Console) -> list[Route]:
    return []
