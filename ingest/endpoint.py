"""The operations endpoint: /metrics (Prometheus exposition), /healthz (alive) and /readyz (connected).

A standard-library HTTP server on a thread of its own: three read-only paths do not earn a web framework.
A check is a function returning the problems it sees; none means 200, any means 503 with one per line.
"""

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], list[str]]


class OpsEndpoint:
    def __init__(self, host: str, port: int, *, live: Check, ready: Check,
                 registry: CollectorRegistry = REGISTRY) -> None:
        checks = {"/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches on
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in checks:
                    try:
                        problems = checks[path]()
                    except Exception as exc:  # a failing check is a problem to report, not a 500
                        problems = [f"check failed: {exc}"]
                    body = ("\n".join(problems) if problems else "ok") + "\n"
                    self._reply(503 if problems else 200, body.encode(), "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise SystemExit(f"CITYKPI_METRICS_PORT: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="citykpi-ops", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "OpsEndpoint":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
