"""The reference for bench/api_heartbeat.py: a bare Starlette endpoint that parses the
heartbeat's JSON and answers ``{}``, served exactly as ``pyhbb api`` is (uvicorn, uvloop,
httptools, no access log, same keep-alive), on 127.0.0.1:PORT.

    .venv/bin/python bench/api_reference.py PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pyhbb.api.server import KEEP_ALIVE


async def heartbeat(request: Request) -> JSONResponse:
    json.loads(await request.body())
    return JSONResponse({})


app = Starlette(routes=[Route("/api/heartbeat", heartbeat, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE,
    )
