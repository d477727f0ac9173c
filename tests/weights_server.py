"""A tiny HTTP server on 127.0.0.1 that serves bytes the tests generate.

Why: the build machines cannot reach GitHub, yet the real download code (urllib,
redirect-free streaming, Content-Length checks, timeouts) must be exercised.  The
server can also misbehave on purpose: cut a body short or stall in the middle.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes
    #: "ok", "truncate" (announce the full length, send half, close) or "stall"
    #: (send half, then sleep ``stall_s`` before closing)
    mode: str = "ok"
    stall_s: float = 3.0


@dataclass
class WeightsServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes, mode: str = "ok", stall_s: float = 3.0) -> str:
        self.routes["/" + path.lstrip("/")] = Route(body, mode, stall_s)
        return self.url(path)

    def start(self) -> WeightsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "no such weights")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.mode == "ok":
                    self.wfile.write(route.body)
                    return
                self.wfile.write(route.body[: len(route.body) // 2])
                self.wfile.flush()
                if route.mode == "stall":
                    time.sleep(route.stall_s)
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def dead_url(path: str = "weights.bin") -> str:
    """A URL on a local port nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"
