"""The producer path shared by every way of enqueueing: :meth:`JobQueue.enqueue
<lssm_jobs.queue.JobQueue.enqueue>`, :meth:`JobQueue.enqueue_many <lssm_jobs.queue.JobQueue.enqueue_many>`
and the blocking facade (:mod:`lssm_jobs.blocking`).

A job is produced in two stages. **Preparing** checks every argument, validates the payload against its
job type and encodes it (the serializer's :meth:`~lssm_jobs.envelope.Serializer.encode_job`): whatever can
fail fails here, before anything is stored, so a bulk enqueue with one bad request stores nothing. A
prepared job is its :class:`~lssm_jobs.jobs.Job` (what ``enqueue`` returns) and the serializer's encoding,
kept as a pair or, for many jobs, as two parallel lists (no record of its own per job). **Storing** turns
prepared jobs into :class:`~lssm_jobs.backends.base.OutgoingJob` records (the serializer's
:meth:`~lssm_jobs.envelope.Serializer.job_bytes`, which cannot fail) and pushes them, a batch at a time
for backends that take batches, resolving deduplicated jobs to their live duplicates.

The queue owns one :class:`Producer`; the blocking facade uses the same one, pushing from the calling
thread through the backend's blocking pusher.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from lssm_jobs.backends.base import OutgoingJob, PushResult, QueueBackend, new_outgoing_job
from lssm_jobs.envelope import Serializer
from lssm_jobs.errors import (
    FieldError,
    JobValidationError,
    LssmJobsError,
    SerializationError,
    UnsupportedOptionError,
)
from lssm_jobs.events import EventBus, JobEnqueued
from lssm_jobs.job_ids import new_job_id, new_job_ids
from lssm_jobs.jobs import DEFAULT_OPTIONS, Job, JobCatalog, JobOptions, JobStatus, JobType, new_job
from lssm_jobs.limits import (
    MAX_DEDUPE_KEY_BYTES,
    MAX_DELAY_MS,
    MAX_RETRIES,
    MAX_TIMEOUT_MS,
    PayloadLimits,
    check_int,
    check_meta,
    check_name,
    check_priority,
    check_run_at,
    check_text,
)
from lssm_jobs.payloads import validate_payload

#: Batches of a large ``enqueue_many`` sent to a backend with ``push_batch`` before awaiting the oldest.
PUSHES_IN_FLIGHT = 2

#: ``provider(job_id, job_type, queue) -> extra meta`` (strings): see :attr:`JobQueue.meta_providers
#: <lssm_jobs.queue.JobQueue.meta_providers>`.
MetaProvider = Callable[[str, str, str], Mapping[str, str]]

_NO_META: Mapping[str, str] = MappingProxyType({})


@attrs.frozen(kw_only=True)
class EnqueueRequest:
    """One job for :meth:`JobQueue.enqueue_many <lssm_jobs.queue.JobQueue.enqueue_many>`; the fields mean
    what ``enqueue``'s arguments mean."""

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


class Producer:
    """Prepares and stores the jobs of one queue (see the module docstring).

    :param backend: the queue's backend; ``opened()`` returns it opened.
    :param read: the queue's ``get``, to read back the live duplicate of a deduplicated job.
    :param events: the queue's event bus (``job.enqueued`` is emitted after storing).
    :param origin: what the jobs it returns name as their queue (``job.wait()`` asks it for the result).
    """

    def __init__(
        self,
        *,
        backend: QueueBackend,
        opened: Callable[[], Awaitable[QueueBackend]],
        read: Callable[[str], Awaitable[Job[Any] | None]],
        serializer: Serializer,
        catalog: JobCatalog,
        events: EventBus,
        limits: PayloadLimits,
        origin: Any = None,
    ) -> None:
        self.backend = backend
        self.origin = origin
        self.serializer = serializer
        self.catalog = catalog
        self.events = events
        self.limits = limits
        #: See :attr:`JobQueue.meta_providers <lssm_jobs.queue.JobQueue.meta_providers>` (the same list).
        self.meta_providers: list[MetaProvider] = []
        self._opened = opened
        self._read = read
        self._checked_names: set[str] = set()  # job type names not in the catalog, found valid
        # enqueue options the backend declares it cannot honour (checked only when one is missing)
        capabilities = backend.capabilities
        self._lacking = frozenset(
            name for name in ("delay", "priority", "dedupe") if not getattr(capabilities, name)
        )

    # -- preparing ------------------------------------------------------------------------------------------

    def prepare_call(
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
        /,
    ) -> tuple[Job[Any], Any]:
        """:meth:`prepare` for ``enqueue``'s arguments, in the order of its signature (no request object when
        they are all defaults). Positional: passing ten keywords costs about half a microsecond per call
        on the benchmark machine, 4% of an enqueue; ``tests/test_producer.py`` gives every argument a
        value no other has, through ``enqueue`` and the blocking facade, so a swapped one shows."""
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
            return self.prepare(job_type, payload, now)
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
        return self.prepare(job_type, payload, now, request)

    def prepare(
        self,
        job_type: str | JobType[Any],
        payload: Any,
        now: float,
        request: EnqueueRequest | None = None,
        job_id: str | None = None,
    ) -> tuple[Job[Any], Any]:
        """Check and encode one job: its :class:`Job` and the serializer's encoding of it. ``request``
        carries the optional settings (None: all defaults, the common case, checked without building a
        request); ``job_id`` is a new random id when None.

        :raises TypeError: an argument of the wrong type (naming it).
        :raises ValueError: an argument out of range (naming it; see :mod:`lssm_jobs.limits`).
        :raises JobValidationError: the payload does not fit the job type.
        :raises SerializationError: the payload cannot be serialized, or is larger or deeper than the
            queue's ``max_payload_bytes`` / ``max_payload_depth``.
        :raises UnsupportedOptionError: an option the backend's capabilities say it cannot honour.
        """
        name, version, definition, options = self.resolve(job_type)
        if request is None:
            if definition is None or definition.payload is None:  # (inline: the hot path)
                data = typed = payload
            else:
                data, typed = validate_payload(definition, payload)
            return self._encoded(
                job_id, name, version, data, typed, options.queue, options.priority, options, None, now, now
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
        return self._encoded(
            job_id, name, version, data, typed, queue, priority, options, dedupe_key, now, run_at, meta
        )

    def prepare_many(
        self, requests: Sequence[EnqueueRequest | tuple[str | JobType[Any], Any]], now: float
    ) -> tuple[list[Job[Any]], list[Any]]:
        """:meth:`prepare` for every request of an ``enqueue_many``: the jobs and their encodings, as two
        parallel lists.

        :raises JobValidationError: for the first invalid payload, its paths prefixed with the request's
            ``[index]``.
        :raises TypeError: for the first argument of the wrong type, the message starting with
            ``enqueue_many request [index]`` (likewise ValueError, SerializationError).
        """
        # The ids of all jobs from one read of the system's random source (one system call instead of one
        # per job).
        ids = new_job_ids(len(requests), now)
        jobs: list[Job[Any]] = []
        encodings: list[Any] = []
        prepare = self.prepare
        # The common case, (type, payload) pairs and no meta providers, is prepared inline: this loop runs
        # before anything is stored, so each step here delays the first push (what prepare does, with the
        # type resolved once per run of jobs of one type).
        inline = not self.meta_providers
        encode_job = self.serializer.encode_job
        encode_payload = self.serializer.payload_encoder(now, now)
        limits = self.limits
        last_type: Any = None
        resolved: tuple[str, int, JobType[Any] | None, JobOptions] = ("", 0, None, DEFAULT_OPTIONS)
        for index, request in enumerate(requests):
            job_id = ids[index]
            try:
                if isinstance(request, EnqueueRequest):
                    job, encoded = prepare(request.job_type, request.payload, now, request, job_id)
                elif not inline:
                    job, encoded = prepare(*_pair(request, index), now, None, job_id)
                else:
                    job_type, payload = _pair(request, index)
                    if job_type is not last_type:
                        resolved = self.resolve(job_type)
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
                        self.origin,
                    )
                    if encode_payload is not None:
                        encoded = encode_payload(data, limits)
                    else:
                        encoded = encode_job(job, data, limits)
            except JobValidationError as error:
                raise JobValidationError(
                    error.job_type,
                    [FieldError(path=f"[{index}]{e.path[1:]}", message=e.message) for e in error.errors],
                ) from error
            except (TypeError, ValueError, SerializationError) as error:
                raise _at_index(error, index) from error
            jobs.append(job)
            encodings.append(encoded)
        return jobs, encodings

    def resolve(self, job_type: str | JobType[Any]) -> tuple[str, int, JobType[Any] | None, JobOptions]:
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
            return self.resolve(str.__str__(job_type))
        raise TypeError(
            f"job_type must be a JobType or a job type name (str), got {type(job_type).__name__} {job_type!r}"
        )

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

    def _provided_meta(
        self, job_id: str, name: str, queue: str, meta: Mapping[str, str]
    ) -> Mapping[str, str]:
        provided: dict[str, str] = {}
        for provider in self.meta_providers:
            provided.update(provider(job_id, name, queue))
        provided.update(meta)
        return MappingProxyType(provided)

    def _encoded(
        self,
        job_id: str | None,
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
        meta: Mapping[str, str] = _NO_META,
    ) -> tuple[Job[Any], Any]:
        """The job with these (checked) fields and its encoding."""
        if job_id is None:
            job_id = new_job_id(created_at)
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
            self.origin,
        )
        return job, self.serializer.encode_job(job, data, self.limits)

    # -- storing --------------------------------------------------------------------------------------------

    def outgoing(self, job: Job[Any], encoded: Any) -> OutgoingJob:
        """What the backend stores for a prepared job (``encoded``: what :meth:`prepare` returned with it)."""
        return new_outgoing_job(
            job.id,
            job.type,
            job.queue,
            job.priority,
            job.run_at,
            job.created_at,
            job.dedupe_key,
            self.serializer.job_bytes(job, encoded),
        )

    async def store(self, jobs: list[Job[Any]], encodings: Sequence[Any]) -> list[Job[Any]]:
        """Push prepared jobs (``jobs[i]`` with its ``encodings[i]``) and return them, a deduplicated job
        replaced by the live duplicate (in ``jobs`` itself); then emit ``job.enqueued`` for each when
        anyone listens."""
        if not jobs:
            return jobs
        now = jobs[0].created_at  # the jobs of one call share their creation time
        backend = await self._opened()
        batch = backend.push_batch or len(jobs)
        # Only results that stored nothing (dedupe) are kept: the rest are dropped batch by batch, which
        # spares the garbage collector tens of thousands of live objects in a big enqueue_many.
        not_created: list[tuple[int, PushResult]] = []
        outgoing = self.outgoing
        if len(jobs) <= batch:  # one call, awaited directly: no task for a single enqueue
            pushed = [outgoing(job, encoded) for job, encoded in zip(jobs, encodings, strict=True)]
            _keep_not_created(not_created, 0, await backend.push(pushed))
        else:
            # Up to PUSHES_IN_FLIGHT batches are sent before the first reply is awaited, so the backend is
            # never idle between batches; the next batch is built meanwhile.
            in_flight: deque[tuple[int, asyncio.Future[list[PushResult]]]] = deque()
            try:
                for start in range(0, len(jobs), batch):
                    end = start + batch
                    part = [
                        outgoing(job, encoded)
                        for job, encoded in zip(jobs[start:end], encodings[start:end], strict=True)
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
            jobs[index], result = await self.live_duplicate(jobs[index], encodings[index], result)
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

    async def live_duplicate(
        self, job: Job[Any], encoded: Any, result: PushResult
    ) -> tuple[Job[Any], PushResult]:
        """The job holding a deduplicated job's key (``result`` is the push's). When that job is gone before
        it can be read back (finished and pruned in between), its key is free again: push ours once more.

        :returns: the live job (or ours, stored now) and the last push result.
        """
        backend = await self._opened()
        for _ in range(10):
            existing = await self._read(result.id)
            if existing is not None:
                return existing, result
            (result,) = await backend.push([self.outgoing(job, encoded)])
            if result.created:
                return job, result
        raise LssmJobsError(
            f"dedupe key {job.dedupe_key!r} kept pointing at jobs that vanished before they could be read"
        )
