"""The worker endpoint as an ASGI application, to mount in an existing service (FastAPI, Starlette, ...)::

    queue = open_queue("gcp-tasks", project=..., location=..., url="https://svc.example/_tasks",
                       ledger="redis://10.0.0.3:6379/0", oidc_service_account="tasks@p.iam.gserviceaccount.com")
    queue.include(handlers)
    app.mount("/_tasks", CloudTasksASGIApp(queue))

The queue is opened on the first request (or at ASGI lifespan startup when the app runs on its own); at
lifespan shutdown, or when you ``await tasks_app.shutdown()`` from your framework's shutdown hook (mounted
sub-apps get no lifespan events), new requests get 503 and running jobs finish within the queue's
``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from lssm_jobs.queue import JobQueue

from lssm_jobs_gcp_tasks.endpoint import TaskEndpoint, lower_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def endpoint_for(queue: JobQueue) -> TaskEndpoint:
    """The request handler of ``queue`` (which must be on the gcp-tasks backend, and opened)."""
    from lssm_jobs_gcp_tasks.backend import CloudTasksBackend

    backend = queue.backend
    if not isinstance(backend, CloudTasksBackend):
        raise TypeError(f"the queue's backend is {type(backend).__name__}, not the gcp-tasks backend")
    endpoint = backend.endpoint(queue.dispatcher(), queue.consume_options)
    endpoint.start()
    return endpoint


class CloudTasksASGIApp:
    """ASGI 3 application serving the Cloud Tasks worker endpoint of ``queue`` (see the module docstring)."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._endpoint: TaskEndpoint | None = None
        self._lock: asyncio.Lock | None = None

    async def _ready(self) -> TaskEndpoint:
        if self._endpoint is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._endpoint is None:
                    await self.queue.open()
                    self._endpoint = endpoint_for(self.queue)
        return self._endpoint

    async def shutdown(self) -> None:
        """Refuse new requests, let running jobs finish (``shutdown_timeout``), close the queue."""
        endpoint = self._endpoint
        if endpoint is not None:
            await endpoint.drain(self.queue.consume_options.shutdown_timeout)
        await self.queue.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        endpoint = await self._ready()
        client = scope.get("client")
        response = await endpoint.handle(
            scope["method"],
            lower_headers(scope.get("headers", [])),
            bytes(body),
            client=f"{client[0]}:{client[1]}" if client else None,
        )
        headers = [(name.encode(), value.encode()) for name, value in response.headers]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._ready()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
