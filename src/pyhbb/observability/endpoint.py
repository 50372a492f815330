"""The HTTP endpoint beside each service: ``/metrics`` (Prometheus) and ``/healthz``.

It runs in its own threads, not on the service's event loop: a loop that is wedged
cannot answer anything, while this endpoint still answers ``/healthz`` with 503 (the
loop check sees the loop's lag timer overdue) and still serves the metrics that do not
need the loop. Metrics owned by the loop are read on the loop (see
:class:`~pyhbb.observability.metrics.LoopReader`).

Every input is bounded: at most :data:`MAX_CLIENTS` requests are served at once (more
connections are closed at once), a client has :data:`CLIENT_TIMEOUT` seconds to send
its request, and the standard library caps the request line and headers. Serve it on
loopback or a private network: it has no authentication.
"""

from __future__ import annotations

import gzip
import http.server
import logging
import socket
import threading
from typing import Any

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from pyhbb.net.sockets import BindError, tcp_listener
from pyhbb.observability.health import Health

log = logging.getLogger(__name__)

MAX_CLIENTS = 8
CLIENT_TIMEOUT = 5.0
INDEX = b"pyhbb monitoring: /metrics (Prometheus), /healthz (JSON; 503 when unhealthy)\n"


def metrics_socket(address: tuple[str, int]) -> socket.socket:
    """Listen on ``address`` (host, port); BindError names it and says what to change."""
    host, port = address
    try:
        return tcp_listener(host, port)
    except BindError as e:
        raise BindError(f"metrics endpoint: {e}; choose another --metrics HOST:PORT") from None
    except OSError as e:  # e.g. a host name that does not resolve
        raise BindError(
            f"metrics endpoint: cannot listen on {host} port {port}: {e}; "
            "choose another --metrics HOST:PORT"
        ) from None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, endpoint: MetricsEndpoint) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        sock.setblocking(True)
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.endpoint.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"  # one request per connection: nothing kept open
    server_version = "pyhbb"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        try:
            status, content_type, body, headers = self._response()
        except Exception:  # a bug in a collector or a check: say so, keep serving
            log.exception("metrics endpoint: answering %s failed", self.path[:100])
            status, content_type, headers = 500, "text/plain", []
            body = b"internal error: see the service's log\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _response(self) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        endpoint = self.server.endpoint
        path = self.path.split("?", 1)[0]
        headers: list[tuple[str, str]] = []
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(endpoint.registry)
            if gzip_accepted(self.headers.get("Accept-Encoding", "")):
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            status = 200
        elif path == "/healthz":
            report = endpoint.health.report()
            status, body, content_type = report.http_status, report.to_json(), "application/json"
            headers.append(("Cache-Control", "no-store"))
        elif path == "/":
            status, body, content_type = 200, INDEX, "text/plain; charset=utf-8"
        else:
            status, body, content_type = 404, b"not found: try /metrics or /healthz\n", "text/plain"
        return status, content_type, body, headers

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics endpoint: %s - %s", self.address_string(), format % args)


class MetricsEndpoint:
    """Serves ``registry`` at /metrics and ``health`` at /healthz on a listening socket."""

    def __init__(self, sock: socket.socket, registry: CollectorRegistry, health: Health) -> None:
        self.registry = registry
        self.health = health
        self.refused = 0
        """Connections closed unanswered because MAX_CLIENTS were being served."""
        self._server = _Server(sock, self)
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name=f"metrics-{health.service}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the socket (blocks up to a quarter of a second)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
