"""A small HTTP server for probes and scrapes (``/livez``, ``/readyz``, ``/metrics``), on its own thread.

Its own thread, not the worker's event loop, so a probe gets a clear ``503`` naming a stalled loop instead
of a timeout, and a scrape never waits behind jobs. It listens on loopback unless told otherwise: health
and metrics say how busy a system is and which job types it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("lssm_jobs.observability")

#: A route answers ``(status, content type, body)``; it runs on the server's threads.
Route = Callable[[], "tuple[int, str, bytes]"]

DEFAULT_HOST = "127.0.0.1"


class OpsHTTPServer:
    """Serves ``routes`` (path -> :data:`Route`) on ``host:port`` until :meth:`close`.

    :raises OSError: the address cannot be bound (the message names it).
    """

    def __init__(self, host: str, port: int, routes: Mapping[str, Route], *, name: str = "lssm-jobs") -> None:
        self.routes = dict(routes)
        handler = _handler_for(self.routes)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port} for {name}: {error.strerror or error}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"{name} http", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_routes(self, routes: Mapping[str, Route]) -> None:
        self.routes.update(routes)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler_for(routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lssm-jobs"
        protocol_version = "HTTP/1.0"

        def _answer(self, send_body: bool) -> None:
            route = routes.get(self.path.partition("?")[0])
            if route is None:
                known = ", ".join(sorted(routes))
                status, content_type, body = 404, "text/plain; charset=utf-8", f"try {known}\n".encode()
            else:
                try:
                    status, content_type, body = route()
                except Exception as error:  # a failing check answers 500, never kills the server
                    log.exception("answering %s failed", self.path)
                    status, content_type = 500, "text/plain; charset=utf-8"
                    body = f"{type(error).__name__}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
