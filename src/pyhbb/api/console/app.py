"""The console's route table, mounted at ``/`` by the API app beside ``/api/``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pyhbb.api.console.routes import account, books, devices, groups, logs, server, users
from pyhbb.api.console.web import Console
from pyhbb.api.options import ApiOptions


def console_routes(options: ApiOptions) -> list[BaseRoute]:
    console = Console(options)

    async def static(request: Request) -> Response:
        found = console.static.get(str(request.path_params["name"]))
        if found is None:
            return console.error(request, None, 404, "No such file.")
        body, media_type = found
        # URLs carry the content's hash (?v=), so a browser may keep them.
        return Response(
            body,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    routes: list[BaseRoute] = [Route("/static/{name}", static, methods=["GET"])]
    for area in (account, devices, users, groups, books, logs, server):
        routes += area.routes(console)
    return routes
