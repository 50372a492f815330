"""HttpProxyRequest → the API server → HttpProxyResponse (docs/protocol.md §7.6).

Clients tunnel API calls through the rendezvous connection when direct HTTP fails. We
forward to the configured API server only (never to a host named by the client), bound the
body sizes, time out well inside the client's 36 s, and answer with a clear ``error`` when
the API server cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from pyhbb.rendezvous.adapters.io_link import IoLink
from pyhbb.wire import rendezvous_pb2 as pb

log = logging.getLogger("pyhbb.rendezvous")

TIMEOUT = 30.0  # the client gives the whole operation 36 s
MAX_CONCURRENT = 32
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class HttpProxy:
    """Forwards tunnelled HTTP requests to one API server."""

    def __init__(self, api_server: str, max_body: int) -> None:
        self.api_server = api_server.rstrip("/")
        self.max_body = max_body
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def handle(self, link: IoLink, payload: bytes) -> None:
        """Answer one HttpProxyRequest on ``link``, then close it (one request per link)."""
        msg = pb.RendezvousMessage()
        msg.ParseFromString(payload)
        try:
            response = await self._forward(msg.http_proxy_request, link.addr[0])
        except Exception as e:  # the tunnel must answer whatever went wrong
            log.exception("HTTP tunnel failed")
            response = pb.HttpProxyResponse(error=f"internal error in the ID server: {e}")
        link.send_message(pb.RendezvousMessage(http_proxy_response=response).SerializeToString())
        link.close()

    async def _forward(self, req: pb.HttpProxyRequest, client_ip: str) -> pb.HttpProxyResponse:
        if not self.api_server:
            return pb.HttpProxyResponse(error="this ID server has no API server configured")
        method = req.method.upper()
        if method not in METHODS:
            return pb.HttpProxyResponse(error=f"method {req.method!r} is not allowed")
        # An absolute path only: "//host/..." or "http://..." would leave the API server.
        if not req.path.startswith("/") or req.path.startswith("//"):
            return pb.HttpProxyResponse(error="the path must start with a single '/'")
        headers = [(h.name, h.value) for h in req.headers if h.name.lower() not in HOP_BY_HOP]
        headers.append(("X-Forwarded-For", client_ip))
        headers.append(("X-Real-IP", client_ip))
        if self._slots.locked():
            return pb.HttpProxyResponse(error="the ID server is busy; try again")
        async with self._slots:
            client = self._client
            if client is None:
                client = self._client = httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)
            url = self.api_server + req.path
            try:
                async with asyncio.timeout(TIMEOUT):
                    async with client.stream(
                        method, url, headers=headers, content=bytes(req.body)
                    ) as resp:
                        body = bytearray()
                        async for chunk in resp.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_body:
                                return pb.HttpProxyResponse(
                                    error=f"the API server's answer is larger than "
                                    f"{self.max_body} bytes"
                                )
            except TimeoutError:
                return pb.HttpProxyResponse(
                    error=f"the API server {self.api_server} did not answer within {TIMEOUT:g} s"
                )
            except httpx.HTTPError as e:
                why = str(e) or type(e).__name__
                return pb.HttpProxyResponse(
                    error=f"the API server {self.api_server} is not reachable ({why})"
                )
        return pb.HttpProxyResponse(
            status=resp.status_code,
            headers=[pb.HeaderEntry(name=k, value=v) for k, v in resp.headers.multi_items()],
            body=bytes(body),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
