"""The worker endpoint as a WSGI application, for Flask or Django services::

    tasks_app = CloudTasksWSGIApp(queue)
    # Flask: app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/_tasks": tasks_app})
    # Django: route the path to tasks_app in your WSGI module

lssm-jobs runs on asyncio, so the adapter keeps one event loop in a background thread: the queue is opened
there, handlers run there (plain-function handlers in its thread pool), and each WSGI request, on whatever
thread the WSGI server gives it, waits for its answer. :meth:`close` drains running jobs and stops the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lssm_jobs.queue import JobQueue

from lssm_jobs_gcp_tasks.asgi import endpoint_for
from lssm_jobs_gcp_tasks.endpoint import TaskEndpoint

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    421: "Misdirected Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]


class CloudTasksWSGIApp:
    """WSGI application serving the Cloud Tasks worker endpoint of ``queue`` (see the module docstring)."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: TaskEndpoint | None = None
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="lssm-jobs-gcp-tasks-wsgi", daemon=True
                )
                thread.start()

                async def ready() -> TaskEndpoint:
                    await self.queue.open()
                    return endpoint_for(self.queue)

                self._endpoint = asyncio.run_coroutine_threadsafe(ready(), loop).result()
                self._loop, self._thread = loop, thread
            return self._loop

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        loop = self._start()
        assert self._endpoint is not None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        client = environ.get("REMOTE_ADDR")
        response = asyncio.run_coroutine_threadsafe(
            self._endpoint.handle(environ.get("REQUEST_METHOD", "GET"), headers, body, client=client), loop
        ).result()
        status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
        start_response(status, [*response.headers, ("Content-Length", str(len(response.body)))])
        return [response.body]

    def close(self) -> None:
        """Drain running jobs (``shutdown_timeout``), close the queue and stop the loop thread."""
        with self._lock:
            loop, thread, endpoint = self._loop, self._thread, self._endpoint
            self._loop = self._thread = self._endpoint = None
        if loop is None or thread is None:
            return

        async def stop() -> None:
            if endpoint is not None:
                await endpoint.drain(self.queue.consume_options.shutdown_timeout)
            await self.queue.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
