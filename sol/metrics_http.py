"""The Prometheus endpoint: ``GET /metrics`` (and ``GET /healthz``) on loopback.

The daemon's registry is its own (``RuntimeMetrics``), never the global one. One thread
serves one request at a time with a short socket timeout, so a slow or stuck client delays a
scrape at most by that timeout and can never hold the daemon. ``/healthz`` answers 200 while
every agent loop is alive and 503 otherwise, for supervisors other than systemd.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer", "is_loopback"]

#: Seconds a client may take to send its request or read the reply.
CLIENT_TIMEOUT = 5.0


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Server(HTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: MetricsServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.timeout = CLIENT_TIMEOUT


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT
    server_version = "sol"
    sys_version = ""

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = generate_latest(owner.registry)
            except Exception as exc:  # a collector bug: say so, keep serving
                self._send(500, f"collecting metrics failed: {type(exc).__name__}: {exc}\n".encode())
                return
            self._send(200, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, detail = owner.health()
            self._send(200 if ok else 503, (detail + "\n").encode())
        else:
            self._send(404, b"see /metrics and /healthz\n")

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes every 15 s would drown the journal


class MetricsServer:
    """Serves ``registry`` on ``address:port`` (port 0: any free port, see ``port``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        health: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.registry = registry
        self.address = address
        self.requested_port = port
        self.health = health or (lambda: (True, "ok"))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

    def start(self) -> None:
        self._server = _Server((self.address, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._serve, args=(self._server,), name="sol-metrics", daemon=True
        )
        self._thread.start()

    def _serve(self, server: _Server) -> None:
        # Sleeps until a client connects or close() wakes it: no polling while idle.
        with selectors.DefaultSelector() as sel:
            sel.register(server.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select():
                    if key.fileobj is server.socket and not self._closed.is_set():
                        server.handle_request()

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(CLIENT_TIMEOUT + 1.0)
            self._thread = None
        if self._server is not None:
            self._server.server_close()
            self._server = None
        self._wake_r.close()
        self._wake_w.close()
