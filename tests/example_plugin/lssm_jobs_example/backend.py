"""An HTTP push backend: a "push service" holds the jobs and POSTs each due one to a worker's HTTP endpoint,
the way Google Cloud Tasks dispatches tasks to an HTTP target. The worker settles the job through the
delivery while handling the request; a request that fails or outlives its dispatch deadline is delivered
again.

The service lives in this process (a stand-in for the managed service), so this backend is not durable; it
exists to show that the backend contract fits push delivery, and it passes the conformance suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from typing import Any

import attrs
from lssm_jobs.backends.base import (
    BackendCapabilities,
    ConsumeOptions,
    DeadLetter,
    Delivery,
    Dispatch,
    JobRecord,
    LeaseGuard,
    OutgoingJob,
    PushResult,
    QueueBackend,
)
from lssm_jobs.consumer import cancel_for_stop, keep_leases_alive
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import LIVE_STATUSES, JobStatus


@attrs.define(kw_only=True)
class _Task:
    job: OutgoingJob
    status: JobStatus = JobStatus.PENDING
    run_at: float = 0.0
    attempts: int = 0
    token: int = 0
    deadline: float = 0.0
    updated_at: float = 0.0
    last_error: str | None = None
    reason: str | None = None
    traceback: str | None = None
    failed_at: float = 0.0


@attrs.define(kw_only=True)
class _Endpoint:
    host: str
    port: int
    queues: frozenset[str] | None
    capacity: int
    in_flight: int = 0


class PushService:
    """The stand-in for the managed service: stores tasks and dispatches due ones over HTTP."""

    _named: dict[str, PushService] = {}

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.endpoints: list[_Endpoint] = []
        self.tokens = itertools.count(1)
        self.changed = asyncio.Event()
        self.dispatcher: asyncio.Task[None] | None = None

    @classmethod
    def named(cls, namespace: str) -> PushService:
        return cls._named.setdefault(namespace, cls())

    def poke(self) -> None:
        self.changed.set()

    # -- dispatching ---------------------------------------------------------------------------------------

    def _due(self, now: float) -> list[_Task]:
        due = []
        for task in self.tasks.values():
            if task.status is JobStatus.ACTIVE and task.deadline <= now:
                task.status = JobStatus.PENDING  # dispatch deadline passed: the worker is gone
            if task.status in (JobStatus.PENDING, JobStatus.SCHEDULED) and task.run_at <= now:
                due.append(task)
        due.sort(key=lambda task: (-task.job.priority, task.run_at))
        return due

    def _next_wakeup(self) -> float | None:
        times = [
            t.run_at for t in self.tasks.values() if t.status in (JobStatus.PENDING, JobStatus.SCHEDULED)
        ]
        times += [t.deadline for t in self.tasks.values() if t.status is JobStatus.ACTIVE]
        return min(times) if times else None

    async def _dispatch_loop(self, lease_ms: int) -> None:
        requests: set[asyncio.Task[None]] = set()
        while self.endpoints:
            self.changed.clear()
            now = time.time()
            for task in self._due(now):
                endpoint = next(
                    (
                        e
                        for e in self.endpoints
                        if e.in_flight < e.capacity and (e.queues is None or task.job.queue in e.queues)
                    ),
                    None,
                )
                if endpoint is None:
                    continue
                task.status = JobStatus.ACTIVE
                task.attempts += 1
                task.token = next(self.tokens)
                task.deadline = now + lease_ms / 1000
                endpoint.in_flight += 1
                request = asyncio.create_task(self._post(endpoint, task, task.token))
                requests.add(request)
                request.add_done_callback(requests.discard)
            wakeup = self._next_wakeup()
            timeout = 1.0 if wakeup is None else min(max(wakeup - time.time(), 0.001), 1.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)
        for request in requests:
            request.cancel()

    async def _post(self, endpoint: _Endpoint, task: _Task, token: int) -> None:
        headers = (
            f"POST /jobs HTTP/1.1\r\nHost: {endpoint.host}:{endpoint.port}\r\n"
            f"X-Job-Id: {task.job.id}\r\nX-Job-Queue: {task.job.queue}\r\nX-Attempt: {task.attempts}\r\n"
            f"X-Token: {token}\r\nContent-Length: {len(task.job.body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            try:
                writer.write(headers.encode() + task.job.body)
                await writer.drain()
                await reader.readline()  # the status line; the delivery settled the task already
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except OSError:
            pass  # the task stays active until its dispatch deadline, then it is dispatched again
        finally:
            endpoint.in_flight -= 1
            self.poke()

    def attach(self, endpoint: _Endpoint, lease_ms: int) -> None:
        self.endpoints.append(endpoint)
        if self.dispatcher is None or self.dispatcher.done():
            self.dispatcher = asyncio.create_task(self._dispatch_loop(lease_ms))
        self.poke()

    async def detach(self, endpoint: _Endpoint) -> None:
        self.endpoints.remove(endpoint)
        self.poke()
        if not self.endpoints and self.dispatcher is not None:
            dispatcher, self.dispatcher = self.dispatcher, None
            await asyncio.gather(dispatcher, return_exceptions=True)


class _PushDelivery(Delivery):
    def __init__(self, service: PushService, task: _Task, token: int, lease_ms: int) -> None:
        self.service, self.task, self.token = service, task, token
        self.id, self.queue, self.body = task.job.id, task.job.queue, task.job.body
        self.attempt = task.attempts
        self.lease_ms = lease_ms

    def _take(self) -> bool:
        if self.task.status is not JobStatus.ACTIVE or self.task.token != self.token:
            return False
        self.task.token = 0
        self.task.updated_at = time.time()
        self.service.poke()
        return True

    async def ack(self) -> None:
        if self._take():
            self.task.status = JobStatus.COMPLETED

    async def retry(self, *, run_at: float, error: str) -> None:
        if self._take():
            self.task.status = JobStatus.SCHEDULED
            self.task.run_at, self.task.last_error = run_at, error

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        if self._take():
            self.task.status = JobStatus.DEAD
            self.task.reason, self.task.last_error, self.task.traceback = reason, error, traceback
            self.task.failed_at = time.time()

    async def release(self) -> None:
        if self._take():
            self.task.status = JobStatus.PENDING
            self.task.attempts -= 1

    async def extend(self, lease_ms: int) -> bool:
        if self.task.status is not JobStatus.ACTIVE or self.task.token != self.token:
            return False
        self.task.deadline = time.time() + lease_ms / 1000
        return True


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    await reader.readline()  # request line
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


class HttpPushBackend(QueueBackend):
    """Push delivery over HTTP: ``consume`` serves an endpoint on 127.0.0.1 and the service POSTs jobs to it."""

    name = "example-push"
    capabilities = BackendCapabilities(delivery="push", durable=False, shared=False)

    def __init__(self, service: PushService | None = None) -> None:
        self.service = service or PushService()

    @classmethod
    def from_options(cls, namespace: str = "default", **_: Any) -> HttpPushBackend:
        return cls(PushService.named(namespace))

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = []
        for job in jobs:
            duplicate = self._live_holder(job.dedupe_key)
            if duplicate is not None:
                results.append(PushResult(id=duplicate.job.id, created=False))
                continue
            if job.id in self.service.tasks:  # pushed before (a retried push): keep what is stored
                results.append(PushResult(id=job.id, created=False))
                continue
            status = JobStatus.SCHEDULED if job.run_at > time.time() else JobStatus.PENDING
            self.service.tasks[job.id] = _Task(
                job=job, status=status, run_at=job.run_at, updated_at=time.time()
            )
            results.append(PushResult(id=job.id, created=True))
        self.service.poke()
        return results

    def _live_holder(self, dedupe_key: str | None) -> _Task | None:
        """The live task holding ``dedupe_key``, if any."""
        if dedupe_key is None:
            return None
        return next(
            (
                t
                for t in self.service.tasks.values()
                if t.job.dedupe_key == dedupe_key and t.status in LIVE_STATUSES
            ),
            None,
        )

    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        in_flight: dict[asyncio.Task[Any], Delivery] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                headers, _ = await _read_request(reader)
                task = self.service.tasks.get(headers.get("x-job-id", ""))
                token = int(headers.get("x-token", "0"))
                if task is None or task.token != token:
                    writer.write(b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n")
                    return
                # Guarded, so the heartbeat never extends the lease while the job settles (LeaseGuard).
                delivery = LeaseGuard(_PushDelivery(self.service, task, token, options.lease_ms))
                current = asyncio.current_task()
                assert current is not None
                in_flight[current] = delivery
                try:
                    await dispatch(delivery)
                finally:
                    in_flight.pop(current, None)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        endpoint = _Endpoint(
            host="127.0.0.1",
            port=port,
            capacity=options.concurrency,
            queues=frozenset(options.queues) if options.queues else None,
        )
        heartbeat = asyncio.create_task(keep_leases_alive(in_flight, options.lease_ms, self))
        self.service.attach(endpoint, options.lease_ms)
        try:
            await stopping.wait()
        finally:
            await self.service.detach(endpoint)  # no new pushes to this worker
            server.close()
            if in_flight:
                _, late = await asyncio.wait(set(in_flight), timeout=options.shutdown_timeout)
                for task in late:
                    cancel_for_stop(task)  # the dispatcher releases the delivery
                await asyncio.gather(*late, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def get(self, job_id: str) -> JobRecord | None:
        task = self.service.tasks.get(job_id)
        if task is None:
            return None
        status = task.status
        if status is JobStatus.SCHEDULED and task.run_at <= time.time():
            status = JobStatus.PENDING
        return JobRecord(
            id=job_id,
            type=task.job.type,
            queue=task.job.queue,
            status=status,
            attempts=task.attempts,
            priority=task.job.priority,
            run_at=task.run_at,
            created_at=task.job.created_at,
            updated_at=task.updated_at,
            dedupe_key=task.job.dedupe_key,
            last_error=task.last_error,
            body=task.job.body,
        )

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        for task in self.service.tasks.values():
            record = await self.get(task.job.id)
            assert record is not None
            per = counts.setdefault(task.job.queue, {})
            per[record.status] = per.get(record.status, 0) + 1
        return counts

    def _dead(self) -> list[_Task]:
        dead = [t for t in self.service.tasks.values() if t.status is JobStatus.DEAD]
        return sorted(dead, key=lambda t: t.failed_at, reverse=True)

    @staticmethod
    def _letter(task: _Task) -> DeadLetter:
        return DeadLetter(
            id=task.job.id,
            type=task.job.type,
            queue=task.job.queue,
            reason=task.reason or "",
            error=task.last_error,
            traceback=task.traceback,
            attempts=task.attempts,
            failed_at=task.failed_at,
            body=task.job.body,
        )

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return [self._letter(t) for t in self._dead()[offset : offset + limit]]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        task = self.service.tasks.get(job_id)
        return self._letter(task) if task is not None and task.status is JobStatus.DEAD else None

    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        task = self.service.tasks.get(job_id)
        if task is None or task.status is not JobStatus.DEAD:
            return False
        key = task.job.dedupe_key
        holder = self._live_holder(key)
        if key is not None and holder is not None:
            raise DedupeConflictError(job_id, key, holder.job.id)
        task.status, task.attempts, task.run_at = JobStatus.SCHEDULED, 0, run_at
        self.service.poke()
        return True

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        targets = [t.job.id for t in self._dead()] if job_ids is None else list(job_ids)
        purged = 0
        for job_id in targets:
            task = self.service.tasks.get(job_id)
            if task is not None and task.status is JobStatus.DEAD:
                del self.service.tasks[job_id]
                purged += 1
        return purged
