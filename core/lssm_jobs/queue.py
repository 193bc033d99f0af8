"""The user-facing queue: enqueue typed jobs, register handlers, run workers, inspect and replay.

``JobQueue`` wraps any backend; ``open_queue(name, **options)`` finds the backend by its plugin name
(``"memory"``, ``"sqlite"``, ``"redis"``, ...), and ``MemoryJobQueue()`` is the in-process shortcut.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar, overload

import attrs

from lssm_jobs.backends.base import (
    ConsumeOptions,
    DeadLetter,
    QueueBackend,
    WorkerRegistry,
)
from lssm_jobs.cancellation import (
    DEFAULT_CANCEL_POLL_INTERVAL,
    DEFAULT_PROGRESS_INTERVAL,
    CancelResult,
    decode_progress,
)
from lssm_jobs.envelope import Serializer, job_from_envelope
from lssm_jobs.errors import (
    DedupeConflictError,
    JobValidationError,
    LssmJobsError,
    QueueClosedError,
    ResultStoreUnavailableError,
    UnsupportedOptionError,
)
from lssm_jobs.events import EventBus, EventCallback, EventSink, JobCancelled, JobReplayed
from lssm_jobs.jobs import (
    Job,
    JobCatalog,
    JobDetails,
    JobStatus,
    JobType,
    default_catalog,
    set_extra,
)
from lssm_jobs.limits import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PAYLOAD_DEPTH,
    MAX_DELAY_MS,
    MAX_TIMEOUT_MS,
    PayloadLimits,
    check_int,
)
from lssm_jobs.payloads import validate_payload
from lssm_jobs.plugins import PluginRegistry, get_plugins
from lssm_jobs.presence import WorkerPresence
from lssm_jobs.producer import PUSHES_IN_FLIGHT, EnqueueRequest, MetaProvider, Producer
from lssm_jobs.queue_selection import QueueSelection
from lssm_jobs.results.base import ResultStore, StoredResult
from lssm_jobs.results.recording import DEFAULT_RESULT_TTL_MS, ResultRecorder
from lssm_jobs.results.waiting import await_result
from lssm_jobs.signing import SigningKeys, SigningSerializer
from lssm_jobs.worker import Dispatcher, Handler

__all__ = [
    "PUSHES_IN_FLIGHT",
    "QUEUE_OPTIONS",
    "SINKS_ENV",
    "DeadLetters",
    "EnqueueRequest",
    "JobQueue",
    "MemoryJobQueue",
    "MetaProvider",
    "ReplayReport",
    "open_queue",
]

log = logging.getLogger("lssm_jobs.queue")

H = TypeVar("H", bound=Handler)
P = TypeVar("P")
#: A job type's result type (``JobType[P, ResultT]``).
ResultT = TypeVar("ResultT")
R = TypeVar("R")

#: Comma-separated event sink names attached to queues created without ``sinks=``.
SINKS_ENV = "LSSM_JOBS_SINKS"

#: ``open_queue`` options that configure the queue itself; every other keyword goes to the backend factory.
QUEUE_OPTIONS = frozenset(
    {
        "serializer",
        "catalog",
        "concurrency",
        "queues",
        "lease_ms",
        "prefetch",
        "shutdown_timeout",
        "poll_interval",
        "worker_heartbeat",
        "default_timeout_ms",
        "sinks",
        "executor",
        "plugins",
        "max_payload_bytes",
        "max_payload_depth",
        "signing_key",
        "cancel_poll_interval",
        "progress_interval",
        "result_store",
        "result_store_options",
        "result_ttl_ms",
    }
)


@attrs.frozen(kw_only=True)
class ReplayReport:
    """What :meth:`DeadLetters.replay_all` did.

    :param replayed: dead letters put back in their queues.
    :param conflicts: dead letters left in place because a live job holds their dedupe key (each error
        names the dead letter, the key and the live job).
    :param missing: dead letters gone before their turn (purged or replayed by someone else meanwhile).
    """

    replayed: int
    conflicts: tuple[DedupeConflictError, ...] = ()
    missing: int = 0


class DeadLetters:
    """The dead letter queue of a :class:`JobQueue`: ``queue.dead_letters``."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    async def list(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, most recent first, with reason, error, traceback and the envelope kept verbatim."""
        backend = await self._queue._opened()
        return await backend.list_dead(limit=limit, offset=offset)

    async def get(self, job_id: str) -> DeadLetter | None:
        backend = await self._queue._opened()
        return await backend.get_dead(job_id)

    async def replay(self, job_id: str, *, delay_ms: int = 0) -> bool:
        """Put a dead letter back in its queue with its attempts reset (after you fixed the cause). It keeps
        its id, envelope, priority and dedupe key, and is ready ``delay_ms`` from now.

        :returns: False when no dead letter has that id.
        :raises DedupeConflictError: a live job (scheduled, pending or active) holds the dead letter's dedupe
            key now; the dead letter stays where it is (replay it once that job has finished).
        """
        delay = check_int(delay_ms, "delay_ms", 0, MAX_DELAY_MS)
        backend = await self._queue._opened()
        dead = await backend.get_dead(job_id)
        if dead is None:
            return False
        replayed = await backend.replay_dead(job_id, run_at=time.time() + delay / 1000)
        if replayed:
            await self._queue.events.emit(
                JobReplayed(
                    timestamp=time.time(), job_id=job_id, job_type=dead.type, queue=dead.queue, attempt=0
                )
            )
        return replayed

    async def replay_all(self) -> ReplayReport:
        """Replay every dead letter present when the call starts, each exactly once, oldest first.

        The ids are listed first, then replayed: jobs that die again while this runs (workers are running
        and the cause is not fixed) stay in the dead letter queue instead of being replayed again, so the
        call always ends. A dead letter whose dedupe key a live job holds is left in place and reported.
        """
        ids: dict[str, None] = {}  # ordered, and an id listed twice (the list shifted) is kept once
        page = 500
        offset = 0
        while True:
            batch = await self.list(limit=page, offset=offset)
            ids.update((dead.id, None) for dead in batch)
            if len(batch) < page:
                break
            offset += page
        replayed = missing = 0
        conflicts: list[DedupeConflictError] = []
        for job_id in reversed(ids):  # listed most recent first
            try:
                if await self.replay(job_id):
                    replayed += 1
                else:
                    missing += 1
            except DedupeConflictError as conflict:
                conflicts.append(conflict)
        return ReplayReport(replayed=replayed, conflicts=tuple(conflicts), missing=missing)

    async def purge(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete the given dead letters, or all of them. :returns: how many were deleted."""
        backend = await self._queue._opened()
        return await backend.purge_dead(job_ids)


class JobQueue:
    """Enqueue, process and inspect jobs on one backend.

    :param backend: an unopened backend; the queue opens it on first use and closes it in :meth:`close`.
    :param serializer: a serializer name (plugin-provided) or instance; JSON by default.
    :param catalog: resolves job type names to definitions; the global catalog by default.
    :param concurrency: most jobs this process runs at once.
    :param queues: queue names to consume (None: all), or a
        :class:`~lssm_jobs.queue_selection.QueueSelection` (strict order, weights).
    :param lease_ms: visibility timeout; running jobs keep extending it, so it bounds how long a dead worker's
        job waits before running elsewhere, not how long a job may run.
    :param shutdown_timeout: seconds in-flight jobs get to finish on :meth:`stop` before being released.
    :param worker_heartbeat: while processing, the worker announces itself in backends that keep live
        workers (``lssm-jobs workers``) and renews that record every this many seconds; it ages out after
        three missed beats. 0 announces nothing.
    :param default_timeout_ms: timeout for job types without their own ``timeout_ms``.
    :param sinks: event sink names (plugins) or instances; by default the comma-separated names in
        ``LSSM_JOBS_SINKS``, else ``["logging"]``.
    :param executor: thread pool for plain-function handlers; by default the queue makes one with as many
        threads as ``concurrency`` when it starts, and shuts it down on close.
    :param signing_key: sign every envelope with HMAC-SHA256 and run only jobs whose signature verifies
        (one key, or several for rotation: the first signs, any verifies); see :mod:`lssm_jobs.signing`.
    :param max_payload_bytes: most bytes a job's encoded payload may take (the payload's UTF-8 JSON text
        with the default serializer; the whole envelope with another); 1 MiB by default.
    :param max_payload_depth: deepest nesting of lists and objects in a payload; 64 by default, at most
        200 (what every worker can decode and validate again).
    :param cancel_poll_interval: seconds between this worker's checks for cancel requests made in other
        processes, while it runs jobs (1 s by default; see :meth:`cancel`).
    :param progress_interval: shortest time between two stored progress reports of one job (0.5 s by
        default; see :meth:`~lssm_jobs.jobs.Job.progress`).
    :param result_store: where the results of job types with a ``result`` type are kept: a result store's
        name (plugin-provided: ``"memory"``, ``"sqlite"``, ``"redis"``, ...) or instance. By default the
        store registered for this queue's backend; a backend without one (Cloud Tasks, Pub/Sub) keeps no
        results unless given one here.
    :param result_store_options: options for a result store given by name (``{"url": "redis://..."}``).
    :param result_ttl_ms: how long results stay readable, for job types without their own
        ``result_ttl_ms``; 24 hours by default.
    :raises TypeError: an option of the wrong type.
    :raises ValueError: an option out of range.
    """

    def __init__(
        self,
        backend: QueueBackend,
        *,
        serializer: str | Serializer = "json",
        catalog: JobCatalog | None = None,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease_ms: int = 30_000,
        prefetch: int = 0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 1.0,
        worker_heartbeat: float = 5.0,
        default_timeout_ms: int | None = None,
        sinks: Sequence[str | EventSink] | None = None,
        executor: Executor | None = None,
        plugins: PluginRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH,
        signing_key: SigningKeys | None = None,
        cancel_poll_interval: float = DEFAULT_CANCEL_POLL_INTERVAL,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        result_store: str | ResultStore | None = None,
        result_store_options: Mapping[str, Any] | None = None,
        result_ttl_ms: int = DEFAULT_RESULT_TTL_MS,
    ) -> None:
        check_int(concurrency, "concurrency", 1, 1_000_000)
        check_int(result_ttl_ms, "result_ttl_ms", 1, MAX_DELAY_MS)
        for option, value, low in (
            ("cancel_poll_interval", cancel_poll_interval, 0.001),
            ("progress_interval", progress_interval, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{option} must be a number of seconds, got {type(value).__name__}")
            if not (low <= value <= 3600):
                raise ValueError(f"{option} must be from {low} to 3600 seconds, got {value!r}")
        self.cancel_poll_interval = float(cancel_poll_interval)
        self.progress_interval = float(progress_interval)
        check_int(prefetch, "prefetch", 0, 1_000_000)
        check_int(lease_ms, "lease_ms", 1, MAX_TIMEOUT_MS)
        if default_timeout_ms is not None:
            check_int(default_timeout_ms, "default_timeout_ms", 0, MAX_TIMEOUT_MS)
        limits = PayloadLimits(max_payload_bytes, max_payload_depth)
        self.backend = backend
        self.plugins = plugins or get_plugins()
        chosen = self.plugins.serializer(serializer).factory() if isinstance(serializer, str) else serializer
        if signing_key is not None:
            chosen = SigningSerializer(chosen, signing_key)
        self.consume_options = ConsumeOptions(
            queues=(queues if isinstance(queues, QueueSelection) else tuple(queues)) if queues else None,
            concurrency=concurrency,
            lease_ms=lease_ms,
            prefetch=prefetch,
            shutdown_timeout=shutdown_timeout,
            poll_interval=poll_interval,
        )
        if not isinstance(worker_heartbeat, (int, float)) or isinstance(worker_heartbeat, bool):
            raise TypeError(f"worker_heartbeat must be a number of seconds, got {worker_heartbeat!r}")
        if not 0 <= worker_heartbeat <= 3600:
            raise ValueError(f"worker_heartbeat must be between 0 and 3600 seconds, got {worker_heartbeat!r}")
        self.worker_heartbeat = float(worker_heartbeat)
        self._presence: WorkerPresence | None = None
        self.default_timeout_ms = default_timeout_ms
        # Plain-function handlers run in this pool; sized to the concurrency so sync handlers are not
        # capped by the loop's default pool (min(32, cores + 4) threads).
        self._own_executor = executor is None
        self.executor = executor
        self.events = EventBus()
        if sinks is None:
            configured = os.environ.get(SINKS_ENV)
            sinks = (
                [name.strip() for name in configured.split(",") if name.strip()]
                if configured
                else ["logging"]
            )
        for sink in sinks:
            self.events.add_sink(self.plugins.event_sink(sink).factory() if isinstance(sink, str) else sink)
        self.handlers: dict[str, Handler] = {}
        #: Prepares and stores this queue's jobs: ``enqueue``, ``enqueue_many`` and the blocking facade
        #: all go through it (see :mod:`lssm_jobs.producer`).
        self.producer = Producer(
            backend=backend,
            opened=self._opened,
            read=self.get,
            serializer=chosen,
            catalog=catalog if catalog is not None else default_catalog,
            events=self.events,
            limits=limits,
            origin=self,
        )
        self.dead_letters = DeadLetters(self)
        self._open_lock: asyncio.Lock | None = None
        self._state = "new"  # new -> open -> closed
        self.result_store, self._owns_result_store = self._resolve_result_store(
            result_store, result_store_options
        )
        self._result_store_open = False
        self.results = ResultRecorder(self._results_opened, default_ttl_ms=result_ttl_ms)
        self._stopping: asyncio.Event | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._dispatcher: Dispatcher | None = None  # the running worker's

    @property
    def serializer(self) -> Serializer:
        """The serializer that writes and reads this queue's envelopes."""
        return self.producer.serializer

    @serializer.setter
    def serializer(self, serializer: Serializer) -> None:
        self.producer.serializer = serializer

    @property
    def catalog(self) -> JobCatalog:
        """Resolves job type names to definitions."""
        return self.producer.catalog

    @catalog.setter
    def catalog(self, catalog: JobCatalog) -> None:
        self.producer.catalog = catalog

    @property
    def meta_providers(self) -> list[MetaProvider]:
        """Called for every job enqueued through this queue, before it is serialized; each returns meta
        entries to carry with the job (e.g. OpenTelemetry's W3C ``traceparent``). Meta given to ``enqueue``
        wins over provided meta. Consulted only when the list is not empty, so enqueueing costs nothing
        extra without providers. Append to it."""
        return self.producer.meta_providers

    @property
    def max_payload_bytes(self) -> int:
        return self.producer.limits.max_bytes

    @property
    def max_payload_depth(self) -> int:
        return self.producer.limits.max_depth

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the backend (idempotent). Called for you on first use."""
        await self._opened()

    async def _opened(self) -> QueueBackend:
        if self._state == "open":
            return self.backend
        if self._state == "closed":
            raise QueueClosedError("this queue was closed")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state == "new":
                await self.backend.open()
                self._state = "open"
        return self.backend

    def _resolve_result_store(
        self, store: str | ResultStore | None, options: Mapping[str, Any] | None
    ) -> tuple[ResultStore | None, bool]:
        """This queue's result store (unopened) and whether the queue made it (and so closes it).

        :raises PluginNotFoundError: ``store`` names no registered result store.
        :raises TypeError: ``store`` is neither a name nor a ResultStore, or the store rejected an option.
        """
        if isinstance(store, ResultStore):
            return store, False
        backend_name = type(self.backend).name
        if isinstance(store, str):
            spec = self.plugins.result_store(store)
        elif store is None:
            found = self.plugins.result_store_for_backend(backend_name)
            if found is None:
                return None, False
            spec = found
        else:
            raise TypeError(f"result_store must be a result store name or a ResultStore, got {store!r}")
        shared = {"backend": self.backend} if spec.backend == backend_name else {}
        return spec.factory(**shared, **dict(options or {})), True

    async def _results_opened(self) -> ResultStore | None:
        """The result store, opened on first use (after the backend), or None when the queue has none."""
        store = self.result_store
        if store is None or self._result_store_open:
            return store
        await self._opened()
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._result_store_open:
                await store.open()
                self._result_store_open = True
        return store

    async def stored_result(self, job_id: str) -> StoredResult | None:
        """How the job ended, as this queue's result store keeps it (its encoded return value, or its
        failure), without waiting: None when the queue has no result store, the job's type declares no
        result type, the job has not finished, or its result expired. ``lssm-jobs job show`` prints it; to
        wait for a typed result use :meth:`result`.

        :raises ConnectionError: the result store cannot be reached.
        """
        store = await self._results_opened()
        return None if store is None else await store.get(job_id, now=time.time())

    async def close(self) -> None:
        """Stop the worker if running, then close the backend, the result store and the event sinks."""
        if self._state == "closed":
            return
        await self.stop()
        if self._result_store_open and self.result_store is not None and self._owns_result_store:
            self._result_store_open = False
            await self.result_store.close()
        if self._state == "open":
            await self.backend.close()
        await self.events.close()
        if self._own_executor and isinstance(self.executor, ThreadPoolExecutor):
            # Handlers finished or were released by stop(); a timed-out sync handler may still be
            # running in its thread, and is left to finish on its own rather than block the loop.
            self.executor.shutdown(wait=False)
            self.executor = None
        self._state = "closed"

    async def __aenter__(self) -> JobQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- producing ------------------------------------------------------------------------------------------

    @overload
    async def enqueue(
        self,
        job_type: JobType[P, ResultT],
        payload: P,
        *,
        delay_ms: int | None = None,
        run_at: datetime | float | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> Job[P, ResultT]: ...

    @overload
    async def enqueue(
        self,
        job_type: str,
        payload: Any = None,
        *,
        delay_ms: int | None = None,
        run_at: datetime | float | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> Job[Any]: ...

    async def enqueue(
        self,
        job_type: str | JobType[Any],
        payload: Any = None,
        *,
        delay_ms: int | None = None,
        run_at: datetime | float | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> Job[Any]:
        """Validate and store one job.

        :param job_type: a :class:`JobType` or a type name (validated when the catalog knows it). With a
            ``JobType[P]`` the payload must be a ``P`` and the result is a ``Job[P]`` (for type checkers);
            plain data goes with the type's name.
        :param payload: a payload instance or plain data.
        :param delay_ms: run no earlier than this many milliseconds from now (or ``run_at``: an aware
            datetime or epoch seconds).
        :param priority: higher runs first among ready jobs of the same queue.
        :param dedupe_key: while a job with this key is scheduled, pending or active, enqueueing another
            returns that job instead.
        :returns: the stored job (or the live duplicate).
        :raises JobValidationError: the payload does not fit the job type; nothing was stored.
        :raises UnsupportedOptionError: an option the backend cannot honour (its capabilities say so).
        """
        producer = self.producer
        job, encoded = producer.prepare_call(
            job_type,
            payload,
            time.time(),
            delay_ms,
            run_at,
            priority,
            dedupe_key,
            queue,
            max_retries,
            timeout_ms,
            meta,
        )
        jobs = await producer.store([job], [encoded])
        return jobs[0]

    async def enqueue_many(
        self, requests: Iterable[EnqueueRequest | tuple[str | JobType[Any], Any]]
    ) -> list[Job[Any]]:
        """Validate and serialize every job, then store them (pipelined where the backend can).

        Backends that take jobs in batches (``push_batch``) get them one batch at a time, in order, the
        next batch being prepared while the previous one is stored.

        :raises JobValidationError: for the first invalid payload, its paths prefixed with the request's
            ``[index]`` (``[3].email``); nothing was stored.
        :raises TypeError: for the first argument of the wrong type (as ``enqueue`` raises it), the message
            starting with ``enqueue_many request [index]``; nothing was stored.
        :raises ValueError: likewise, for the first argument out of range.
        :raises SerializationError: likewise, for the first payload that cannot be serialized.
        """
        producer = self.producer
        jobs, encodings = producer.prepare_many(list(requests), time.time())
        return await producer.store(jobs, encodings)

    # -- inspecting -----------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job[Any] | None:
        """The job with its current status, or None (unknown, or pruned after its retention).

        :raises SerializationError: the stored envelope cannot be decoded (it is in the dead letter queue's
            care once a worker sees it).
        """
        backend = await self._opened()
        record = await backend.get(job_id)
        if record is None:
            return None
        envelope = self.serializer.loads(record.body)
        payload: Any = envelope.payload
        definition = self.catalog.get(envelope.type)
        if definition is not None and envelope.version == definition.version:
            try:
                _, payload = validate_payload(definition, envelope.payload)
            except JobValidationError:
                payload = envelope.payload
        job = job_from_envelope(
            envelope,
            payload,
            status=record.status,
            attempt=record.attempts,
            run_at=record.run_at,
            last_error=record.last_error,
            origin=self,
        )
        if record.progress is not None or record.cancel_requested:
            details = JobDetails(
                progress=decode_progress(record.progress), cancel_requested=record.cancel_requested
            )
            set_extra(job, details)
        return job

    @overload
    async def result(self, job: Job[Any, R], *, timeout: float | None = None) -> R: ...

    @overload
    async def result(self, job: str, *, timeout: float | None = None) -> Any: ...

    async def result(self, job: str | Job[Any, Any], *, timeout: float | None = None) -> Any:
        """Wait for a job to finish and return what its handler returned, as its job type's ``result``
        type (``Job[P, R]`` gives an ``R``); None for a job type without a result type. ``job.wait()`` is
        the same call.

        The wait uses the result store's notification where it has one (memory, Redis) and a backing-off
        poll where not (sqlite); see :mod:`lssm_jobs.results.waiting`.

        :param job: a job (as ``enqueue`` returned it) or a job id.
        :param timeout: seconds to wait at most; None waits as long as it takes.
        :raises JobFailedError: the job failed for good (dead-lettered), carrying its last error and why.
        :raises ResultTimeoutError: it did not finish within ``timeout`` (a ``TimeoutError``); it may still.
        :raises ResultNotFoundError: unknown job id, or its result or record outlived their retention.
        :raises ResultStoreUnavailableError: the job's type declares a result type but this queue has no
            result store (see ``result_store=``).
        """
        job_id = job if isinstance(job, str) else job.id
        if not isinstance(job_id, str):
            raise TypeError(f"job must be a Job or a job id (str), got {type(job).__name__}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
        backend = await self._opened()
        store = await self._results_opened()
        if store is None and not isinstance(job, str):
            definition = self.catalog.get(job.type)
            if definition is not None and definition.result is not None:
                raise ResultStoreUnavailableError(
                    f"job type {job.type!r} declares a result type, but this queue has no result store: "
                    f"backend {type(backend).name!r} keeps no results; pass result_store= (e.g. 'redis' "
                    "with result_store_options={'url': ...})"
                )
        return await await_result(
            job_id, backend=backend, store=store, catalog=self.catalog, timeout=timeout
        )

    async def cancel(self, job_id: str) -> CancelResult:
        """Cancel a job. A scheduled or pending job is cancelled at once and never runs (``REMOVED``); a
        running job is asked to stop (``REQUESTED``): its async handler is cancelled at its next ``await``,
        its sync handler sees ``job.cancelled`` turn True; the worker learns of it at once when it is this
        queue's worker, else within its ``cancel_poll_interval`` (1 s by default). A job stopped that way is
        ``cancelled``: never retried or dead-lettered. A handler that finishes anyway settles as it ended,
        reported by a ``job.cancel_ignored`` event. Cancelling a finished job changes nothing
        (``FINISHED``); an unknown id gives ``NOT_FOUND``.

        :raises UnsupportedOptionError: the backend cannot cancel jobs (its capabilities say cancel=False).
        :raises TypeError: ``job_id`` is not a string.
        """
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be a string, got {type(job_id).__name__}")
        backend = await self._opened()
        if not backend.capabilities.cancel:
            raise UnsupportedOptionError(
                f"backend {backend.name or type(backend).__name__!r} cannot cancel jobs: its capabilities "
                "declare cancel=False; nothing was changed"
            )
        result = CancelResult(await backend.cancel(job_id))
        if result is CancelResult.REQUESTED:
            dispatcher = self._dispatcher
            if dispatcher is not None and dispatcher.running is not None:
                dispatcher.running.request(job_id)  # running here: no need to wait for the poll
        elif result is CancelResult.REMOVED and self.events.wants(JobCancelled.name):
            record = await backend.get(job_id)
            await self.events.emit(
                JobCancelled(
                    timestamp=time.time(),
                    job_id=job_id,
                    job_type=record.type if record is not None else "?",
                    queue=record.queue if record is not None else "?",
                    attempt=record.attempts if record is not None else 0,
                    running=False,
                )
            )
        return result

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        """Jobs per queue and status."""
        backend = await self._opened()
        return await backend.counts()

    def on(self, event: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` on each lifecycle event named ``event`` (``"*"`` for all).

        :returns: a function that unsubscribes.
        """
        return self.events.on(event, callback)

    # -- consuming ------------------------------------------------------------------------------------------

    @overload
    def register(
        self, job_type: JobType[P, ResultT], handler: Callable[[Job[P, ResultT]], R]
    ) -> Callable[[Job[P, ResultT]], R]: ...

    @overload
    def register(
        self, job_type: JobType[P, ResultT], handler: None = None
    ) -> Callable[[Callable[[Job[P, ResultT]], R]], Callable[[Job[P, ResultT]], R]]: ...

    @overload
    def register(self, job_type: str, handler: H) -> H: ...

    @overload
    def register(self, job_type: str, handler: None = None) -> Callable[[H], H]: ...

    def register(self, job_type: str | JobType[Any], handler: H | None = None) -> H | Callable[[H], H]:
        """Register the handler of a job type; usable as a decorator (``@queue.register("email.send")``).

        Async handlers are awaited on the loop; plain functions run in the thread pool. The handler of a
        ``JobType[P]`` receives a ``Job[P]`` (for type checkers too).
        :raises ValueError: a handler is already registered for that type.
        """
        name = job_type.type if isinstance(job_type, JobType) else job_type
        if isinstance(job_type, JobType):
            self.catalog.add(job_type)

        def add(function: H) -> H:
            if name in self.handlers and self.handlers[name] is not function:
                raise ValueError(f"a handler for job type {name!r} is already registered")
            self.handlers[name] = function
            return function

        return add(handler) if handler is not None else add

    def include(self, handlers: Iterable[tuple[str | JobType[Any], Handler]]) -> None:
        """Register every handler of a :class:`~lssm_jobs.handlers.Handlers` set (or ``(type, handler)`` pairs).

        :raises ValueError: one of the types already has a different handler here.
        """
        for job_type, handler in handlers:
            self.register(job_type, handler)

    @property
    def running(self) -> bool:
        return self._consumer is not None and not self._consumer.done()

    def dispatcher(self) -> Dispatcher:
        """The dispatcher that runs this queue's jobs (push backends call it from their own loop)."""
        if self.executor is None and self._own_executor:
            self.executor = ThreadPoolExecutor(
                max_workers=self.consume_options.concurrency, thread_name_prefix="lssm-jobs-handler"
            )
        return Dispatcher(
            handlers=self.handlers,
            catalog=self.catalog,
            serializer=self.serializer,
            events=self.events,
            executor=self.executor,
            default_timeout_ms=self.default_timeout_ms,
            backend=self.backend,
            cancel_poll_interval=self.cancel_poll_interval,
            progress_interval=self.progress_interval,
            results=self.results,
        )

    async def start(self) -> None:
        """Begin processing in the background. :raises LssmJobsError: already running."""
        if self.running:
            raise LssmJobsError("this queue is already processing")
        backend = await self._opened()
        self._stopping = asyncio.Event()
        dispatcher = self._dispatcher = self.dispatcher()
        if self.worker_heartbeat and backend.capabilities.worker_registry and isinstance(backend, WorkerRegistry):
            options = self.consume_options
            self._presence = WorkerPresence(
                backend,
                dispatcher,
                queues=tuple(options.queues) if options.queues else None,
                concurrency=options.concurrency,
                interval=self.worker_heartbeat,
            )
            self._presence.start()
        self._consumer = asyncio.create_task(
            backend.consume(dispatcher, self.consume_options, self._stopping),
            name=f"lssm-jobs consumer ({type(backend).__name__})",
        )
        self._consumer.add_done_callback(_report_crash)

    @property
    def worker_id(self) -> str | None:
        """This worker's id in its backend's list of live workers, while it processes (else None)."""
        return self._presence.id if self._presence is not None else None

    async def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new leases; in-flight jobs finish within the shutdown timeout or are released
        for another worker. Nothing is lost."""
        if self._consumer is None or self._stopping is None:
            await self._leave()
            return
        self._stopping.set()
        self.backend.wake()
        consumer, self._consumer = self._consumer, None
        wait = None if timeout is None else timeout + 5
        try:
            await asyncio.wait_for(asyncio.shield(consumer), wait)
        except asyncio.TimeoutError:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        except Exception:
            log.exception("the consumer failed")
        finally:
            dispatcher, self._dispatcher = self._dispatcher, None
            if dispatcher is not None:
                await dispatcher.close()
            await self._leave()

    async def _leave(self) -> None:
        """Remove this worker from the backend's live workers (after its jobs finished or were released)."""
        presence, self._presence = self._presence, None
        if presence is not None:
            await presence.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        """Process until ``stopping`` is set, then stop gracefully (what ``lssm-jobs worker`` runs)."""
        await self.start()
        consumer = self._consumer
        assert consumer is not None
        stop_task = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({stop_task, consumer}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        if consumer.done() and consumer.exception() is not None:
            raise consumer.exception()  # type: ignore[misc]
        await self.stop()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the job consumer stopped with an error", exc_info=task.exception())


class MemoryJobQueue(JobQueue):
    """A :class:`JobQueue` on the in-memory backend, for development and tests. Not durable."""

    def __init__(self, **options: Any) -> None:
        from lssm_jobs.backends.memory import MemoryBackend

        store = options.pop("store", None)
        super().__init__(MemoryBackend(store=store), **options)


def open_queue(name: str, **options: Any) -> JobQueue:
    """Open a queue on the backend registered as ``name`` by any installed plugin.

    Queue options (``concurrency``, ``serializer``, ``sinks``, ...; see :class:`JobQueue`) are taken out;
    every other keyword goes to the backend's factory, e.g. ``open_queue("sqlite", path="jobs.db")``.

    :raises BackendNotFoundError: no such backend, or its plugin failed to load (the message says which and
        lists the available backends).
    :raises TypeError: the backend does not accept one of the options.
    """
    plugins = options.get("plugins") or get_plugins()
    spec = plugins.queue_backend(name)
    queue_options = {key: value for key, value in options.items() if key in QUEUE_OPTIONS}
    backend_options = {key: value for key, value in options.items() if key not in QUEUE_OPTIONS}
    try:
        backend = spec.factory(**backend_options)
    except TypeError as error:
        raise TypeError(
            f"backend {name!r} rejected its options {sorted(backend_options)}: {error}"
        ) from error
    return JobQueue(backend, **queue_options)
