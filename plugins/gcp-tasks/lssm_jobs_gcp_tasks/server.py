"""The standalone worker server (``lssm-jobs worker APP -b gcp-tasks``): HTTP/1.1 with keep-alive on asyncio,
parsed by h11, serving one :class:`~lssm_jobs_gcp_tasks.endpoint.TaskEndpoint` on every path.

It binds with ``SO_REUSEPORT`` where the OS has it, so several worker processes can share one port. Bodies
are limited to 2 MiB (Cloud Tasks tasks are at most 1 MiB). On stop it closes the listening socket, answers
503 to requests arriving on open connections, and lets running requests finish within the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import h11

from lssm_jobs_gcp_tasks.endpoint import Response, TaskEndpoint, lower_headers

log = logging.getLogger("lssm_jobs_gcp_tasks.server")

MAX_BODY = 2 * 1024 * 1024
IDLE_TIMEOUT = 75.0  # longer than Google front ends keep idle connections (60 s)
_READ = 65536


async def _send(writer: asyncio.StreamWriter, connection: h11.Connection, response: Response) -> None:
    headers = [*response.headers, ("content-length", str(len(response.body)))]
    data = connection.send(h11.Response(status_code=response.status, headers=headers))
    data += connection.send(h11.Data(data=response.body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


async def _serve_connection(
    endpoint: TaskEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, busy: set[object]
) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=32 * 1024)
    peer = writer.get_extra_info("peername")
    client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
    try:
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(
                        reader.read(_READ), IDLE_TIMEOUT if request is None else 30.0
                    )
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        await _send(writer, connection, Response(status=413, body=b"body too large\n"))
                        return
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert request is not None
            busy.add(writer)
            try:
                response = await endpoint.handle(
                    request.method.decode("ascii", "replace"),
                    lower_headers(request.headers),
                    bytes(body),
                    client=client,
                )
                await _send(writer, connection, response)
            finally:
                busy.discard(writer)
            if connection.our_state is h11.MUST_CLOSE or endpoint.stopping:
                return
            connection.start_next_cycle()
    except (asyncio.TimeoutError, ConnectionError, h11.RemoteProtocolError):
        pass
    except h11.LocalProtocolError as error:
        log.warning("HTTP protocol error with %s: %s", client, error)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(
    endpoint: TaskEndpoint,
    host: str,
    port: int,
    stopping: asyncio.Event,
    *,
    shutdown_timeout: float,
    started: asyncio.Future[int] | None = None,
) -> None:
    """Serve ``endpoint`` on ``host:port`` until ``stopping`` is set, then drain it.

    :param started: resolved with the bound port once listening (port 0 picks a free one).
    """
    connections: set[asyncio.Task[None]] = set()
    busy: set[object] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _serve_connection(endpoint, reader, writer, busy)
        finally:
            connections.discard(task)

    reuse_port = hasattr(socket, "SO_REUSEPORT")
    server = await asyncio.start_server(accept, host, port, reuse_port=reuse_port, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    endpoint.start()
    log.info("Cloud Tasks worker endpoint listening on http://%s:%d/", host, bound)
    if started is not None and not started.done():
        started.set_result(bound)
    try:
        await stopping.wait()
    finally:
        server.close()
        await endpoint.drain(shutdown_timeout)
        # Let the last answers go out (their jobs are settled), then close idle keep-alive connections.
        for _ in range(100):
            if not busy:
                break
            await asyncio.sleep(0.02)
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()
