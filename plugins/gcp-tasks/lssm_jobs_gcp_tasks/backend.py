"""The Google Cloud Tasks backend: each job is an HTTP task whose body is the job's envelope, dispatched by
Cloud Tasks to the worker endpoint; job records and dead letters live in a job ledger.

Semantics are lssm-jobs', not the queue's retry configuration:

* **enqueue**: the ledger records the job first (dedupe decided there, atomically), then one task is
  created, named ``<job id>-g1`` (see :mod:`lssm_jobs_gcp_tasks.naming`), scheduled at ``run_at``. A task
  that cannot be created (after a few tries on transient errors) has its record discarded, and the call
  raises :class:`EnqueueError` naming which jobs were stored;
* **every attempt answers 2xx**: success, failure and dead-lettering are decided by the shared dispatcher.
  A retry creates the **next task** (the job's next generation) with ``schedule_time`` at the backoff time
  (jitter and cap included), and the current request is answered 200. Cloud Tasks retries a task only when
  the worker could not answer (down, killed, overloaded, stopping), so a failing handler is never retried
  blindly, and the queue's own retry settings only pace redelivery to an unreachable worker;
* **at-least-once**: a task delivered twice, or a task whose earlier request is still running, is sorted out
  by the ledger's claim (one delivery holds a job at a time; duplicates of finished jobs are dropped), so
  attempts, dead letters and events count each run once. A worker killed mid-job: Cloud Tasks delivers the
  task again, and once the dead worker's ledger lease expires the job runs again with the next attempt;
  after ``max_retries + 1 + 2`` such deliveries it is dead-lettered as a poison job.

Priority and order: Cloud Tasks has no priorities and promises no execution order (a task only never runs
before its ``schedule_time``), so the backend declares ``priority=False`` (an enqueue asking for a
priority is refused) and ``fifo=False``; route urgent work to its own queue, which Cloud Tasks dispatches
independently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import grpc
from google.api_core import exceptions as api_exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks import CloudTasksAsyncClient
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcAsyncIOTransport
from google.protobuf import duration_pb2
from lssm_jobs.backends.base import (
    ConsumeOptions,
    Dispatch,
    OutgoingJob,
    PushResult,
)
from lssm_jobs.errors import DedupeConflictError, LssmJobsError
from lssm_jobs.ledger import FIRST_GENERATION, JobLedger
from lssm_jobs.ledger.backing import LedgerBackedBackend, ledger_from

from lssm_jobs_gcp_tasks.auth import GOOGLE_CERTS_URL, GOOGLE_ISSUERS, SECRET_HEADER, RequestVerifier
from lssm_jobs_gcp_tasks.endpoint import GENERATION_HEADER, JOB_ID_HEADER, QUEUE_HEADER, TaskEndpoint
from lssm_jobs_gcp_tasks.naming import QueueNames, task_id
from lssm_jobs_gcp_tasks.options import CAPABILITIES, OPTIONS_HELP

log = logging.getLogger("lssm_jobs_gcp_tasks")

#: gRPC errors worth another try when creating a task (its deterministic name makes the retry safe).
TRANSIENT = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.Aborted,
)
_CREATE_DELAYS = (0.1, 0.3, 1.0, 2.0)


class EnqueueError(LssmJobsError):
    """Some jobs of an enqueue could not be handed to Cloud Tasks; nothing of them was kept.

    ``results[i]`` is the :class:`~lssm_jobs.backends.base.PushResult` of job ``i`` when it was stored (or
    deduplicated), or the exception that kept it out.
    """

    def __init__(self, results: list[PushResult | BaseException]) -> None:
        self.results = results
        failed = [r for r in results if isinstance(r, BaseException)]
        first = failed[0]
        super().__init__(
            f"{len(failed)} of {len(results)} jobs could not be enqueued on Cloud Tasks "
            f"({type(first).__name__}: {str(first).splitlines()[0][:200] if str(first) else ''}); "
            f"the other {len(results) - len(failed)} were"
        )


class CloudTasksBackend(LedgerBackedBackend):
    """Jobs as Google Cloud Tasks HTTP tasks (see the module docstring and ``docs/gcp-tasks.md``).

    Connection: Application Default Credentials by default; ``client`` (a ``CloudTasksAsyncClient`` you
    own), ``channel`` (a ``grpc.aio`` channel, or a function making one in the running loop) or
    ``api_endpoint`` with ``insecure=True`` (an emulator) instead. The client reads no emulator variable.
    """

    name = "gcp-tasks"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        project: str,
        location: str,
        ledger: str | JobLedger,
        ledger_options: Mapping[str, Any] | None = None,
        url: str | None = None,
        queue_urls: Mapping[str, str] | None = None,
        queue_prefix: str = "",
        queue_map: Mapping[str, str] | None = None,
        create_queues: bool = False,
        max_concurrent_dispatches: int = 100,
        oidc_service_account: str | None = None,
        oidc_audience: str | None = None,
        oidc_issuers: Sequence[str] = GOOGLE_ISSUERS,
        oidc_certs_url: str = GOOGLE_CERTS_URL,
        shared_secret: str | None = None,
        secret_header: str = SECRET_HEADER,
        allow_unauthenticated: bool = False,
        client: CloudTasksAsyncClient | None = None,
        channel: grpc.aio.Channel | Callable[[], grpc.aio.Channel] | None = None,
        api_endpoint: str | None = None,
        insecure: bool = False,
        credentials: Any = None,
        bind: str = "127.0.0.1",
        port: int = 8080,
        enqueue_concurrency: int = 32,
        dispatch_deadline: float | None = 600.0,
        request_timeout: float = 30.0,
        clock_tolerance: float = 1.0,
    ) -> None:
        if not project or not location:
            raise ValueError("the gcp-tasks backend needs project= and location=")
        if sum(option is not None for option in (client, channel, api_endpoint)) > 1:
            raise ValueError("pass at most one of client=, channel= and api_endpoint=")
        if insecure and api_endpoint is None:
            raise ValueError("insecure=True needs api_endpoint= (an emulator's host:port)")
        if enqueue_concurrency < 1 or max_concurrent_dispatches < 1:
            raise ValueError("enqueue_concurrency and max_concurrent_dispatches must be >= 1")
        if dispatch_deadline is not None and not 15 <= dispatch_deadline <= 1800:
            raise ValueError("dispatch_deadline must be between 15 and 1800 seconds (Cloud Tasks' limits)")
        self.project, self.location = project, location
        self.ledger = ledger_from(ledger, ledger_options, backend="gcp-tasks")
        self.url = url
        self.queue_urls = dict(queue_urls or {})
        self.names = QueueNames(project, location, prefix=queue_prefix, overrides=queue_map)
        self.create_queues = create_queues
        self.max_concurrent_dispatches = max_concurrent_dispatches
        self.oidc_service_account = oidc_service_account
        self.oidc_audience = oidc_audience
        self.oidc_issuers = tuple(oidc_issuers)
        self.oidc_certs_url = oidc_certs_url
        self.shared_secret = shared_secret
        self.secret_header = secret_header
        self.allow_unauthenticated = allow_unauthenticated
        self.bind, self.port = bind, int(port)
        self.enqueue_concurrency = enqueue_concurrency
        self.dispatch_deadline = dispatch_deadline
        self.request_timeout = request_timeout
        self.clock_tolerance = clock_tolerance
        self._given_client = client
        self._channel = channel
        self._api_endpoint = api_endpoint
        self._insecure = insecure
        self._credentials = credentials
        self._client: CloudTasksAsyncClient | None = None
        self._own_channel: grpc.aio.Channel | None = None
        self._known_queues: set[str] = set()
        self._queue_lock: asyncio.Lock | None = None

    @classmethod
    def from_options(cls, **options: Any) -> CloudTasksBackend:
        """The plugin factory: ``open_queue("gcp-tasks", project=..., location=..., url=..., ledger=...)``."""
        return cls(**options)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.ledger.open()
        if self._given_client is not None:
            self._client = self._given_client
            return
        channel: grpc.aio.Channel | None = None
        if self._api_endpoint is not None:
            if not self._insecure:
                raise ValueError(
                    "api_endpoint= without insecure=True: use client_options via client= for TLS"
                )
            channel = self._own_channel = grpc.aio.insecure_channel(self._api_endpoint)
        elif self._channel is not None:
            channel = self._channel() if callable(self._channel) else self._channel
        if channel is not None:
            self._client = CloudTasksAsyncClient(transport=CloudTasksGrpcAsyncIOTransport(channel=channel))
        else:
            self._client = CloudTasksAsyncClient(credentials=self._credentials)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client is not self._given_client:
            await client.transport.close()  # type: ignore[no-untyped-call]
        self._own_channel = None
        await self.ledger.close()

    @property
    def client(self) -> CloudTasksAsyncClient:
        if self._client is None:
            raise RuntimeError("the gcp-tasks backend is not open")
        return self._client

    # -- queues -----------------------------------------------------------------------------------------------

    def queue_path(self, queue: str) -> str:
        """The full Cloud Tasks queue path of lssm-jobs queue ``queue`` (see :mod:`~lssm_jobs_gcp_tasks.naming`)."""
        return self.names.path(queue)

    async def ensure_queue(self, queue: str) -> str:
        """Create the Cloud Tasks queue of ``queue`` if missing, set up for lssm-jobs: unlimited attempts
        (lssm-jobs decides retries; Cloud Tasks only redelivers what a worker could not answer), backoff
        0.1 s to 60 s, ``max_concurrent_dispatches``. :returns: its path."""
        path = self.queue_path(queue)
        if path in self._known_queues:
            return path
        if self._queue_lock is None:
            self._queue_lock = asyncio.Lock()
        async with self._queue_lock:
            if path in self._known_queues:
                return path
            definition = tasks_v2.Queue(
                name=path,
                retry_config=tasks_v2.RetryConfig(
                    max_attempts=-1,
                    min_backoff=duration_pb2.Duration(nanos=100_000_000),
                    max_backoff=duration_pb2.Duration(seconds=60),
                ),
                rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=self.max_concurrent_dispatches),
            )
            try:
                await self.client.create_queue(
                    parent=path.rsplit("/queues/", 1)[0], queue=definition, timeout=self.request_timeout
                )
                log.info("created Cloud Tasks queue %s", path)
            except api_exceptions.AlreadyExists:
                pass
            self._known_queues.add(path)
        return path

    # -- tasks ------------------------------------------------------------------------------------------------

    def build_task(
        self, job_id: str, queue: str, body: bytes, run_at: float, generation: int
    ) -> tasks_v2.Task:
        """The HTTP task carrying ``job_id`` at ``generation``: POST of the envelope to the queue's endpoint,
        with the job's routing headers, the OIDC token or shared secret, and ``schedule_time`` when later than
        now."""
        url = self.queue_urls.get(queue) or self.url
        if not url:
            raise ValueError(
                "the gcp-tasks backend needs url= (the worker endpoint Cloud Tasks calls) to enqueue"
            )
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Lssm-Job-Id": job_id,
            "X-Lssm-Job-Generation": str(generation),
            "X-Lssm-Job-Queue": queue,
        }
        if self.shared_secret is not None:
            headers[self.secret_header] = self.shared_secret
        request = tasks_v2.HttpRequest(
            url=url, http_method=tasks_v2.HttpMethod.POST, headers=headers, body=body
        )
        if self.oidc_service_account is not None:
            request.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.oidc_service_account, audience=self.oidc_audience or url
            )
        task = tasks_v2.Task(
            name=f"{self.queue_path(queue)}/tasks/{task_id(job_id, generation)}", http_request=request
        )
        if run_at > time.time():
            task.schedule_time = datetime.fromtimestamp(run_at, timezone.utc)
        if self.dispatch_deadline is not None:
            task.dispatch_deadline = duration_pb2.Duration(seconds=int(self.dispatch_deadline))
        return task

    async def create_task(self, job_id: str, queue: str, body: bytes, run_at: float, generation: int) -> None:
        """Create one task, retrying transient errors; ALREADY_EXISTS means an earlier try created it.

        :raises google.api_core.exceptions.GoogleAPICallError: it could not be created.
        """
        task = self.build_task(job_id, queue, body, run_at, generation)
        parent = self.queue_path(queue)
        if self.create_queues:
            await self.ensure_queue(queue)
        for delay in (*_CREATE_DELAYS, None):
            try:
                await self.client.create_task(parent=parent, task=task, timeout=self.request_timeout)
                return
            except api_exceptions.AlreadyExists:
                return
            except TRANSIENT:
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def create_successor(
        self, job_id: str, queue: str, body: bytes, run_at: float, generation: int
    ) -> None:
        """The task of a retry: the job's next generation, due at ``run_at``."""
        await self.create_task(job_id, queue, body, run_at, generation)

    async def delete_task(self, job_id: str, queue: str, generation: int) -> None:
        """Best effort: delete a task this backend created but the ledger never adopted."""
        name = f"{self.queue_path(queue)}/tasks/{task_id(job_id, generation)}"
        try:
            await self.client.delete_task(name=name, timeout=self.request_timeout)
        except Exception as error:  # it may have run or be running; the ledger drops its delivery
            log.info("could not delete task %s: %s", name, type(error).__name__)

    # -- producing --------------------------------------------------------------------------------------------

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        if not jobs:
            return []
        for job in jobs:  # fail before anything is stored
            if not (self.queue_urls.get(job.queue) or self.url):
                raise ValueError("the gcp-tasks backend needs url= (the worker endpoint Cloud Tasks calls)")
        results = await self.ledger.record(jobs)
        created = [index for index, result in enumerate(results) if result.created]
        if not created:
            return results
        limit = asyncio.Semaphore(self.enqueue_concurrency)

        async def create(index: int) -> BaseException | None:
            job = jobs[index]
            async with limit:
                try:
                    await self.create_task(job.id, job.queue, job.body, job.run_at, FIRST_GENERATION)
                except Exception as error:
                    return error
            return None

        errors = await asyncio.gather(*(create(index) for index in created))
        failed = {index: error for index, error in zip(created, errors, strict=True) if error is not None}
        if not failed:
            return results
        await self.ledger.discard([jobs[index].id for index in failed])
        await asyncio.gather(
            *(self.delete_task(jobs[index].id, jobs[index].queue, FIRST_GENERATION) for index in failed)
        )
        raise EnqueueError([failed.get(index, result) for index, result in enumerate(results)])

    # -- consuming --------------------------------------------------------------------------------------------

    def verifier(self) -> RequestVerifier:
        """How the worker endpoint checks callers (from the backend's OIDC / shared-secret options)."""
        audience = self.oidc_audience or (self.url if self.oidc_service_account is not None else None)
        return RequestVerifier(
            audience=audience,
            service_account=self.oidc_service_account,
            issuers=self.oidc_issuers,
            certs_url=self.oidc_certs_url,
            shared_secret=self.shared_secret,
            secret_header=self.secret_header,
            allow_unauthenticated=self.allow_unauthenticated,
        )

    def endpoint(self, dispatch: Dispatch, options: ConsumeOptions) -> TaskEndpoint:
        """The request handler for a worker running ``dispatch`` (what the ASGI and WSGI apps serve)."""
        return TaskEndpoint(self, dispatch, options, self.verifier())

    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        """Serve the standalone worker endpoint on ``bind``:``port`` until ``stopping``, then stop taking
        requests and let running ones finish (``options.shutdown_timeout``)."""
        from lssm_jobs_gcp_tasks.server import serve

        endpoint = self.endpoint(dispatch, options)
        await serve(endpoint, self.bind, self.port, stopping, shutdown_timeout=options.shutdown_timeout)

    # -- inspecting (the ledger) ---------------------------------------------------------------------------------





    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        """Create the job's task at a new generation, then move the dead letter back in the ledger (a
        delivery arriving before that is asked to come back). A replay the ledger refuses deletes the task.

        :raises DedupeConflictError: a live job holds the dead letter's dedupe key.
        """
        dead = await self.ledger.get_dead(job_id)
        if dead is None:
            return False
        generation = await self.ledger.reserve_generation(job_id)
        if generation is None:
            return False
        await self.create_task(job_id, dead.queue, dead.body, run_at, generation)
        try:
            replayed = await self.ledger.replay_dead(job_id, run_at=run_at, generation=generation)
        except DedupeConflictError:
            await self.delete_task(job_id, dead.queue, generation)
            raise
        if not replayed:
            await self.delete_task(job_id, dead.queue, generation)
        return replayed



__all__ = [
    "GENERATION_HEADER",
    "JOB_ID_HEADER",
    "OPTIONS_HELP",
    "QUEUE_HEADER",
    "CloudTasksBackend",
    "EnqueueError",
]
