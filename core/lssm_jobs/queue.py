"""The user-facing queue: enqueue typed jobs, register handlers, run workers, inspect and replay.

``JobQueue`` wraps any backend; ``open_queue(name, **options)`` finds the backend by its plugin name
(``"memory"``, ``"sqlite"``, ``"redis"``, ...), and ``MemoryJobQueue()`` is the in-process shortcut.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar, cast, overload

import attrs

from lssm_jobs.backends.base import (
    ConsumeOptions,
    DeadLetter,
    OutgoingJob,
    PushResult,
    QueueBackend,
    new_outgoing_job,
)
from lssm_jobs.errors import (
    DedupeConflictError,
    FieldError,
    JobValidationError,
    LssmJobsError,
    QueueClosedError,
    ResultStoreUnavailableError,
    SerializationError,
    UnsupportedOptionError,
)
from lssm_jobs.events import EventBus, EventCallback, EventSink, JobEnqueued, JobReplayed
from lssm_jobs.jobs import (
    DEFAULT_OPTIONS,
    Job,
    JobCatalog,
    JobOptions,
    JobStatus,
    JobType,
    default_catalog,
    new_job,
)
from lssm_jobs.limits import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PAYLOAD_DEPTH,
    MAX_DEDUPE_KEY_BYTES,
    MAX_DELAY_MS,
    MAX_RETRIES,
    MAX_TIMEOUT_MS,
    check_int,
    check_meta,
    check_name,
    check_payload_limits,
    check_priority,
    check_run_at,
    check_text,
    depth_exceeds,
    json_depth_exceeds,
    unencodable_path,
)
from lssm_jobs.plugins import PluginRegistry, get_plugins
from lssm_jobs.queue_selection import QueueSelection
from lssm_jobs.results.base import ResultStore
from lssm_jobs.results.recording import DEFAULT_RESULT_TTL_MS, ResultRecorder
from lssm_jobs.results.waiting import await_result
from lssm_jobs.serialization import (
    Envelope,
    JsonSerializer,
    Serializer,
    job_from_envelope,
    validate_payload,
)
from lssm_jobs.signing import SigningKeys, SigningSerializer
from lssm_jobs.worker import Dispatcher, Handler

log = logging.getLogger("lssm_jobs.queue")

H = TypeVar("H", bound=Handler)
P = TypeVar("P")
#: A job type's result type (``JobType[P, ResultT]``).
ResultT = TypeVar("ResultT")
R = TypeVar("R")

#: Comma-separated event sink names attached to queues created without ``sinks=``.
SINKS_ENV = "LSSM_JOBS_SINKS"

#: Batches of a large ``enqueue_many`` sent to a backend with ``push_batch`` before awaiting the oldest.
PUSHES_IN_FLIGHT = 2

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
        "default_timeout_ms",
        "sinks",
        "executor",
        "plugins",
        "max_payload_bytes",
        "max_payload_depth",
        "signing_key",
        "result_store",
        "result_store_options",
        "result_ttl_ms",
    }
)


_NO_META: Mapping[str, str] = MappingProxyType({})

#: ``provider(job_id, job_type, queue) -> extra meta`` (strings): see :attr:`JobQueue.meta_providers`.
MetaProvider = Callable[[str, str, str], Mapping[str, str]]


# A prepared job's body: the serialized envelope, or (JSON) only the encoded payload, the envelope being
# assembled around it when the job is sent. A prepared job is its Job (what enqueue returns) and its body,
# kept as a pair or, for many jobs, as two parallel lists: no record of its own per job.
Body = bytes | str


def _pair(request: Any, index: int) -> tuple[str | JobType[Any], Any]:
    """An enqueue_many request that is not an EnqueueRequest, as its (type, payload) pair.

    :raises TypeError: it is not a pair (naming its place in the requests).
    """
    try:
        job_type, payload = request
    except (TypeError, ValueError):
        raise TypeError(
            f"enqueue_many request [{index}] must be an EnqueueRequest or a (type, payload) pair, "
            f"got {type(request).__name__}"
        ) from None
    return job_type, payload


@functools.lru_cache(maxsize=1024)
def _overridden(options: JobOptions, max_retries: int, timeout_ms: int | None) -> JobOptions:
    """``options`` with a job's own ``max_retries`` and ``timeout_ms`` (checked by the caller). Call sites
    repeat the same overrides, so each combination is built (and validated) once."""
    return attrs.evolve(options, max_retries=max_retries, timeout_ms=timeout_ms)


def _at_index(error: Exception, index: int) -> Exception:
    """``error`` (a TypeError, ValueError or SerializationError) with the enqueue_many request's index in
    front of its message; other exception types, and messages already naming the index, are kept as they
    are."""
    prefix = f"enqueue_many request [{index}]"
    if type(error) not in (TypeError, ValueError, SerializationError) or str(error).startswith(prefix):
        return error
    return type(error)(f"{prefix}: {error}")


def _keep_not_created(kept: list[tuple[int, PushResult]], offset: int, results: list[PushResult]) -> None:
    """Add to ``kept`` the results (with their index) of a push starting at ``offset`` that stored nothing."""
    for index, result in enumerate(results):
        if not result.created:
            kept.append((offset + index, result))


@attrs.frozen(kw_only=True)
class EnqueueRequest:
    """One job for :meth:`JobQueue.enqueue_many`; the fields mean what ``enqueue``'s arguments mean."""

    job_type: str | JobType[Any]
    payload: Any = None
    delay_ms: int | None = None
    run_at: datetime | float | None = None
    priority: int | None = None
    dedupe_key: str | None = None
    queue: str | None = None
    max_retries: int | None = None
    timeout_ms: int | None = None
    meta: Mapping[str, str] | None = None


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
        default_timeout_ms: int | None = None,
        sinks: Sequence[str | EventSink] | None = None,
        executor: Executor | None = None,
        plugins: PluginRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH,
        signing_key: SigningKeys | None = None,
        result_store: str | ResultStore | None = None,
        result_store_options: Mapping[str, Any] | None = None,
        result_ttl_ms: int = DEFAULT_RESULT_TTL_MS,
    ) -> None:
        check_int(concurrency, "concurrency", 1, 1_000_000)
        check_int(result_ttl_ms, "result_ttl_ms", 1, MAX_DELAY_MS)
        check_int(prefetch, "prefetch", 0, 1_000_000)
        check_int(lease_ms, "lease_ms", 1, MAX_TIMEOUT_MS)
        if default_timeout_ms is not None:
            check_int(default_timeout_ms, "default_timeout_ms", 0, MAX_TIMEOUT_MS)
        self.max_payload_bytes, self.max_payload_depth = check_payload_limits(
            max_payload_bytes, max_payload_depth
        )
        self._depth_gate = 2 * self.max_payload_depth
        self._checked_names: set[str] = set()  # job type names not in the catalog, found valid
        self.backend = backend
        self.plugins = plugins or get_plugins()
        self.serializer = (
            self.plugins.serializer(serializer).factory() if isinstance(serializer, str) else serializer
        )
        if signing_key is not None:
            self.serializer = SigningSerializer(self.serializer, signing_key)
        self.catalog = catalog if catalog is not None else default_catalog
        self.consume_options = ConsumeOptions(
            queues=(queues if isinstance(queues, QueueSelection) else tuple(queues)) if queues else None,
            concurrency=concurrency,
            lease_ms=lease_ms,
            prefetch=prefetch,
            shutdown_timeout=shutdown_timeout,
            poll_interval=poll_interval,
        )
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
        #: Called for every job enqueued through this queue, before it is serialized; each returns meta
        #: entries to carry with the job (e.g. OpenTelemetry's W3C ``traceparent``). Meta given to
        #: ``enqueue`` wins over provided meta. Consulted only when the list is not empty, so enqueueing
        #: costs nothing extra without providers.
        self.meta_providers: list[MetaProvider] = []
        self.dead_letters = DeadLetters(self)
        # enqueue options the backend declares it cannot honour (checked only when one is missing)
        capabilities = backend.capabilities
        self._lacking = frozenset(
            name for name in ("delay", "priority", "dedupe") if not getattr(capabilities, name)
        )
        self._open_lock: asyncio.Lock | None = None
        self._state = "new"  # new -> open -> closed
        self.result_store, self._owns_result_store = self._resolve_result_store(
            result_store, result_store_options
        )
        self._result_store_open = False
        self.results = ResultRecorder(self._results_opened, default_ttl_ms=result_ttl_ms)
        self._stopping: asyncio.Event | None = None
        self._consumer: asyncio.Task[None] | None = None

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

    def _prepare(
        self,
        job_type: str | JobType[Any],
        payload: Any,
        now: float,
        request: EnqueueRequest | None = None,
        job_id: str | None = None,
    ) -> tuple[Job[Any], Body]:
        """Check and serialize one job: its :class:`Job` and its body. ``request`` carries the optional
        settings (None: all defaults, the common case, checked without building a request); ``job_id`` is
        a new random id when None.

        :raises TypeError: an argument of the wrong type (naming it).
        :raises ValueError: an argument out of range (naming it; see :mod:`lssm_jobs.limits`).
        :raises JobValidationError: the payload does not fit the job type.
        :raises SerializationError: the payload cannot be serialized, or is larger or deeper than this
            queue's ``max_payload_bytes`` / ``max_payload_depth``.
        """
        name, version, definition, options = self._resolve(job_type)
        if request is None:
            if definition is None or definition.payload is None:  # (inline: the hot path)
                data = typed = payload
            else:
                data, typed = validate_payload(definition, payload)
            return self._prepared(
                name,
                version,
                data,
                typed,
                options.queue,
                options.priority,
                options,
                None,
                now,
                now,
                _NO_META,
                job_id,
            )
        # Every setting is checked before the payload: cheap type tests, each naming its argument.
        queue = options.queue if request.queue is None else check_name(request.queue, "queue")
        priority = options.priority if request.priority is None else check_priority(request.priority)
        dedupe_key = (
            None
            if request.dedupe_key is None
            else check_text(request.dedupe_key, "dedupe_key", MAX_DEDUPE_KEY_BYTES)
        )
        if request.max_retries is not None or request.timeout_ms is not None:
            options = _overridden(
                options,
                options.max_retries
                if request.max_retries is None
                else check_int(request.max_retries, "max_retries", 0, MAX_RETRIES),
                options.timeout_ms
                if request.timeout_ms is None
                else check_int(request.timeout_ms, "timeout_ms", 0, MAX_TIMEOUT_MS),
            )
        meta = _NO_META if request.meta is None else check_meta(request.meta) or _NO_META
        if request.delay_ms is not None:
            if request.run_at is not None:
                raise ValueError("pass delay_ms or run_at, not both")
            run_at = now + check_int(request.delay_ms, "delay_ms", 0, MAX_DELAY_MS) / 1000
        elif request.run_at is not None:
            run_at = check_run_at(request.run_at, now)
        else:
            run_at = now
        if self._lacking:
            self._check_supported(request, delayed=run_at > now)
        if definition is None or definition.payload is None:
            data = typed = payload
        else:
            data, typed = validate_payload(definition, payload)
        return self._prepared(
            name,
            version,
            data,
            typed,
            queue,
            priority,
            options,
            dedupe_key,
            now,
            run_at,
            meta,
            job_id,
        )

    def _provided_meta(
        self, job_id: str, name: str, queue: str, meta: Mapping[str, str]
    ) -> Mapping[str, str]:
        provided: dict[str, str] = {}
        for provider in self.meta_providers:
            provided.update(provider(job_id, name, queue))
        provided.update(meta)
        return MappingProxyType(provided)

    def _check_supported(self, request: EnqueueRequest, *, delayed: bool) -> None:
        """:raises UnsupportedOptionError: the request needs a capability the backend does not declare."""
        wanted = (
            ("delay", "a delayed job (delay_ms / run_at in the future)", delayed),
            ("priority", "a priority", request.priority is not None),
            ("dedupe", "a dedupe key", request.dedupe_key is not None),
        )
        for capability, what, asked in wanted:
            if asked and capability in self._lacking:
                raise UnsupportedOptionError(
                    f"backend {type(self.backend).name or type(self.backend).__name__!r} cannot store "
                    f"{what}: its capabilities declare {capability}=False; nothing was stored"
                )

    def _resolve(self, job_type: str | JobType[Any]) -> tuple[str, int, JobType[Any] | None, JobOptions]:
        """Name, version, definition (None when the catalog does not know the name) and options.

        :raises TypeError: ``job_type`` is neither a :class:`JobType` nor a string.
        :raises ValueError: an unknown name that is not a valid job type name.
        """
        if isinstance(job_type, JobType):
            return job_type.type, job_type.version, job_type, job_type.options
        if type(job_type) is str:
            definition = self.catalog.get(job_type)
            if definition is not None:  # names in the catalog were checked when their type was defined
                return job_type, definition.version, definition, definition.options
            if job_type not in self._checked_names:
                check_name(job_type, "job_type")
                if len(self._checked_names) < 1024:
                    self._checked_names.add(job_type)
            return job_type, 1, None, DEFAULT_OPTIONS
        if isinstance(job_type, str):  # a str subclass (a StrEnum member): its text
            return self._resolve(str.__str__(job_type))
        raise TypeError(
            f"job_type must be a JobType or a job type name (str), got {type(job_type).__name__} {job_type!r}"
        )

    def _encode_payload(self, data: Any) -> str:
        """A payload's JSON text (the default serializer), checked against this queue's limits.

        The checks cost a flag test and a comparison for the usual small ASCII payload: the UTF-8 encoding
        only runs for non-ASCII text (where it also finds lone surrogates), and the depth is measured on
        the text (see :func:`~lssm_jobs.limits.json_depth_exceeds`).

        :raises SerializationError: not serializable, not valid Unicode, too large or too deep.
        """
        try:
            text: str = self.serializer.encode_value(data)  # type: ignore[attr-defined]  # (JSON: no cast() call)
        except SerializationError as error:
            if isinstance(error.__cause__, RecursionError):
                raise self._too_deep() from error
            raise
        if text.isascii():
            size = len(text)
        else:
            try:
                size = len(text.encode())
            except UnicodeEncodeError:
                raise SerializationError(
                    f"payload is not valid Unicode: the string at {unencodable_path(data)} holds a lone "
                    "surrogate"
                ) from None
        if size > self.max_payload_bytes:
            raise self._too_large(size)
        # A text of up to 2 * depth characters cannot nest deeper than depth: no call for small payloads.
        if size > self._depth_gate and json_depth_exceeds(text, data, self.max_payload_depth):
            raise self._too_deep()
        return text

    def _check_encoded(self, data: Any, body: bytes) -> None:
        """The limits, for a body made by a serializer other than the default (the whole envelope)."""
        if len(body) > self.max_payload_bytes:
            raise self._too_large(len(body))
        if depth_exceeds(data, self.max_payload_depth):
            raise self._too_deep()

    def _too_large(self, size: int) -> SerializationError:
        return SerializationError(
            f"payload is {size} bytes encoded, more than this queue's max_payload_bytes "
            f"({self.max_payload_bytes}); store large data elsewhere and enqueue a reference to it"
        )

    def _too_deep(self) -> SerializationError:
        return SerializationError(
            f"payload nests lists and objects more than this queue's max_payload_depth "
            f"({self.max_payload_depth}) levels deep"
        )

    def _prepared(
        self,
        name: str,
        version: int,
        data: Any,
        typed: Any,
        queue: str,
        priority: int,
        options: JobOptions,
        dedupe_key: str | None,
        created_at: float,
        run_at: float,
        meta: Mapping[str, str],
        job_id: str | None,
    ) -> tuple[Job[Any], Body]:
        if job_id is None:
            job_id = os.urandom(16).hex()  # 128 random bits, as uuid4 has, at half the cost
        if self.meta_providers:  # checked like enqueue's own meta: a provider's bug fails here, not later
            meta = check_meta(self._provided_meta(job_id, name, queue, meta))
        job = new_job(
            job_id,
            name,
            version,
            typed,
            queue,
            JobStatus.SCHEDULED if run_at > created_at else JobStatus.PENDING,
            0,
            options.max_retries,
            priority,
            run_at,
            created_at,
            dedupe_key,
            None,
            options,
            meta,
            self,
        )
        serializer = self.serializer
        if isinstance(serializer, JsonSerializer) and serializer.assembles(created_at, run_at):
            # The default: only the payload is encoded now (the part that can fail); the envelope is
            # assembled around it when the job is sent (see _outgoing), overlapping the backend's work.
            return job, self._encode_payload(data)
        try:
            body = serializer.dumps(
                Envelope(
                    id=job_id,
                    type=name,
                    version=version,
                    payload=data,
                    queue=queue,
                    priority=priority,
                    options=options,
                    dedupe_key=dedupe_key,
                    created_at=created_at,
                    run_at=run_at,
                    meta=meta,
                )
            )
        except (UnicodeError, RecursionError) as error:  # a serializer that lets them through
            raise SerializationError(
                f"payload cannot be serialized: {type(error).__name__}: {error}"
            ) from error
        self._check_encoded(data, body)
        return job, body

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
        now = time.time()
        prepared = self._prepare_call(
            job_type,
            payload,
            now,
            delay_ms,
            run_at,
            priority,
            dedupe_key,
            queue,
            max_retries,
            timeout_ms,
            meta,
        )
        jobs = await self._store([prepared[0]], [prepared[1]])
        return jobs[0]

    def _prepare_call(
        self,
        job_type: str | JobType[Any],
        payload: Any,
        now: float,
        delay_ms: int | None,
        run_at: datetime | float | None,
        priority: int | None,
        dedupe_key: str | None,
        queue: str | None,
        max_retries: int | None,
        timeout_ms: int | None,
        meta: Mapping[str, str] | None,
    ) -> tuple[Job[Any], Body]:
        """``_prepare`` for ``enqueue``'s arguments (no request object when they are all defaults)."""
        if (
            delay_ms is None
            and run_at is None
            and priority is None
            and dedupe_key is None
            and queue is None
            and max_retries is None
            and timeout_ms is None
            and not meta
        ):
            return self._prepare(job_type, payload, now)
        request = EnqueueRequest(
            job_type=job_type,
            payload=payload,
            delay_ms=delay_ms,
            run_at=run_at,
            priority=priority,
            dedupe_key=dedupe_key,
            queue=queue,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            meta=meta,
        )
        return self._prepare(job_type, payload, now, request)

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
        now = time.time()
        requests = list(requests)
        # The ids of all jobs from one read of the system's random source (one system call instead of one
        # per job): 32 hex digits (128 random bits) each.
        ids = os.urandom(16 * len(requests)).hex()
        jobs: list[Job[Any]] = []
        bodies: list[Body] = []
        prepare = self._prepare
        # The common case, (type, payload) pairs with the default JSON serializer, is prepared inline: this
        # loop runs before anything is stored, so each step here delays the first push (what _prepare does,
        # with the type resolved once per run of jobs of one type).
        serializer = self.serializer
        encode = (
            self._encode_payload
            if isinstance(serializer, JsonSerializer)
            and serializer.assembles(now, now)
            and not self.meta_providers
            else None
        )
        last_type: Any = None
        resolved: tuple[str, int, JobType[Any] | None, JobOptions] = ("", 0, None, DEFAULT_OPTIONS)
        for index, request in enumerate(requests):
            job_id = ids[32 * index : 32 * index + 32]
            try:
                if isinstance(request, EnqueueRequest):
                    job, body = prepare(request.job_type, request.payload, now, request, job_id)
                elif encode is None:
                    job, body = prepare(*_pair(request, index), now, None, job_id)
                else:
                    job_type, payload = _pair(request, index)
                    if job_type is not last_type:
                        resolved = self._resolve(job_type)
                        last_type = job_type
                    name, version, definition, options = resolved
                    if definition is None or definition.payload is None:
                        data = typed = payload
                    else:
                        data, typed = validate_payload(definition, payload)
                    job = new_job(
                        job_id,
                        name,
                        version,
                        typed,
                        options.queue,
                        JobStatus.PENDING,
                        0,
                        options.max_retries,
                        options.priority,
                        now,
                        now,
                        None,
                        None,
                        options,
                        _NO_META,
                        self,
                    )
                    body = encode(data)
            except JobValidationError as error:
                raise JobValidationError(
                    error.job_type,
                    [FieldError(path=f"[{index}]{e.path[1:]}", message=e.message) for e in error.errors],
                ) from error
            except (TypeError, ValueError, SerializationError) as error:
                raise _at_index(error, index) from error
            jobs.append(job)
            bodies.append(body)
        return await self._store(jobs, bodies)

    async def _store(self, jobs: list[Job[Any]], bodies: Sequence[Body]) -> list[Job[Any]]:
        """Push prepared jobs (``jobs[i]`` with its ``bodies[i]``) and return them, a deduplicated job replaced
        by the live duplicate (in ``jobs`` itself)."""
        if not jobs:
            return jobs
        now = jobs[0].created_at  # the jobs of one call share their creation time
        backend = await self._opened()
        batch = backend.push_batch or len(jobs)
        # Only results that stored nothing (dedupe) are kept: the rest are dropped batch by batch, which
        # spares the garbage collector tens of thousands of live objects in a big enqueue_many.
        not_created: list[tuple[int, PushResult]] = []
        outgoing = self._outgoing
        if len(jobs) <= batch:  # one call, awaited directly: no task for a single enqueue
            pushed = [outgoing(job, body) for job, body in zip(jobs, bodies, strict=True)]
            _keep_not_created(not_created, 0, await backend.push(pushed))
        else:
            # Up to PUSHES_IN_FLIGHT batches are sent before the first reply is awaited, so the backend is
            # never idle between batches; the queue builds the next batch meanwhile.
            in_flight: deque[tuple[int, asyncio.Future[list[PushResult]]]] = deque()
            try:
                for start in range(0, len(jobs), batch):
                    end = start + batch
                    part = [
                        outgoing(job, body)
                        for job, body in zip(jobs[start:end], bodies[start:end], strict=True)
                    ]
                    if len(in_flight) >= PUSHES_IN_FLIGHT:
                        offset, push = in_flight.popleft()
                        _keep_not_created(not_created, offset, await push)
                    in_flight.append((start, asyncio.ensure_future(backend.push(part))))
                    await asyncio.sleep(0)  # let the push go out before building more
                while in_flight:
                    offset, push = in_flight[0]
                    _keep_not_created(not_created, offset, await push)
                    in_flight.popleft()
            finally:
                for _, pending in in_flight:
                    pending.cancel()
        deduplicated: set[int] = set()
        for index, result in not_created:
            jobs[index], result = await self._live_duplicate(jobs[index], bodies[index], result)
            if not result.created:
                deduplicated.add(index)
        if self.events.wants(JobEnqueued.name):
            for index, job in enumerate(jobs):
                await self.events.emit(
                    JobEnqueued(
                        timestamp=now,
                        job_id=job.id,
                        job_type=job.type,
                        queue=job.queue,
                        attempt=0,
                        run_at=job.run_at,
                        priority=job.priority,
                        deduplicated=index in deduplicated,
                    )
                )
        return jobs

    def _outgoing(self, job: Job[Any], body: Body) -> OutgoingJob:
        if type(body) is str:
            body = cast(JsonSerializer, self.serializer).assemble(
                job.id,
                job.type,
                job.version,
                body,
                job.queue,
                job.priority,
                job.options,
                job.dedupe_key,
                job.created_at,
                job.run_at,
                job.meta,
            )
        return new_outgoing_job(
            job.id,
            job.type,
            job.queue,
            job.priority,
            job.run_at,
            job.created_at,
            job.dedupe_key,
            cast(bytes, body),
        )

    async def _live_duplicate(
        self, job: Job[Any], body: Body, result: PushResult
    ) -> tuple[Job[Any], PushResult]:
        """The job holding a deduplicated job's key. When that job is gone before it can be read back
        (finished and pruned in between), its key is free again: push ours once more."""
        backend = await self._opened()
        for _ in range(10):
            existing = await self.get(result.id)
            if existing is not None:
                return existing, result
            (result,) = await backend.push([self._outgoing(job, body)])
            if result.created:
                return job, result
        raise LssmJobsError(
            f"dedupe key {job.dedupe_key!r} kept pointing at jobs that vanished before they could be read"
        )

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
        return job_from_envelope(
            envelope,
            payload,
            status=record.status,
            attempt=record.attempts,
            run_at=record.run_at,
            last_error=record.last_error,
            origin=self,
        )

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
            results=self.results,
        )

    async def start(self) -> None:
        """Begin processing in the background. :raises LssmJobsError: already running."""
        if self.running:
            raise LssmJobsError("this queue is already processing")
        backend = await self._opened()
        self._stopping = asyncio.Event()
        self._consumer = asyncio.create_task(
            backend.consume(self.dispatcher(), self.consume_options, self._stopping),
            name=f"lssm-jobs consumer ({type(backend).__name__})",
        )
        self._consumer.add_done_callback(_report_crash)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new leases; in-flight jobs finish within the shutdown timeout or are released
        for another worker. Nothing is lost."""
        if self._consumer is None or self._stopping is None:
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
