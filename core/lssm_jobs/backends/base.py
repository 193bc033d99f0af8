"""The queue backend contract: a small ABC that stores, leases, delays and settles jobs.

Backends never decide outcomes (retry, backoff, dead-lettering): the shared dispatcher in
:mod:`lssm_jobs.worker` does, for every backend alike. A backend owns its consumption loop because the
three kinds differ in who drives delivery:

* **pull** backends (memory, sqlite, Redis) lease jobs with a visibility timeout; subclass
  :class:`PullBackend` and the shared pull consumer gives you concurrency, heartbeats and graceful stop;
* **push** backends (Cloud Tasks) receive jobs over HTTP and settle by their response;
* **stream** backends (Pub/Sub streaming pull) receive messages with ack deadlines.

All three hand each job to the same ``dispatch(delivery)`` callable and settle it through the
:class:`Delivery` they created.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

import attrs

from lssm_jobs._slots import slot_setters
from lssm_jobs.consumer import run_pull_consumer
from lssm_jobs.jobs import JobStatus

DeliveryKind = Literal["pull", "push", "stream"]

#: What :meth:`QueueBackend.cancel` did: ``removed`` a scheduled or pending job (it never runs),
#: ``requested`` that an active job stop, found no such job (``not_found``), or found it ``finished``
#: already (completed, dead or cancelled).
CancelOutcome = Literal["removed", "requested", "not_found", "finished"]


@attrs.frozen(kw_only=True)
class BackendCapabilities:
    """What a backend supports; the conformance suite skips the tests of what it does not."""

    delivery: DeliveryKind = "pull"
    delay: bool = True  # run_at / delay_ms honoured
    priority: bool = True  # higher priority leased first among ready jobs of a queue
    fifo: bool = True  # ready jobs of one priority are delivered oldest first (enqueue order, then run_at)
    dedupe: bool = True  # a live dedupe_key returns the existing job
    leases: bool = True  # a job whose worker died is delivered again after its lease expires
    native_dlq: bool = False  # the service itself keeps dead letters (e.g. a Pub/Sub dead-letter topic)
    durable: bool = True  # survives a process restart
    shared: bool = True  # several processes can produce and consume on it
    purge_queue: bool = False  # QueueBackend.purge_queue deletes a queue's pending and scheduled jobs
    cancel: bool = (
        False  # QueueBackend.cancel / cancel_requested and Delivery.cancel (lssm_jobs.cancellation)
    )
    progress: bool = False  # QueueBackend.set_progress stores a running job's progress; get returns it
    worker_registry: bool = False  # the backend is a WorkerRegistry: live workers announce themselves in it
    results: bool = False  # its plugin registers a result store for it (lssm_jobs_result_stores, backend=)


@attrs.frozen(kw_only=True)
class OutgoingJob:
    """A job on its way into a backend: routing fields plus the serialized envelope (``body``)."""

    id: str
    type: str
    queue: str
    priority: int
    run_at: float
    created_at: float
    dedupe_key: str | None
    body: bytes


(_set_id, _set_type, _set_queue, _set_priority, _set_run_at, _set_created_at, _set_dedupe_key, _set_body) = (
    slot_setters(OutgoingJob)
)


def new_outgoing_job(
    id: str,
    type: str,
    queue: str,
    priority: int,
    run_at: float,
    created_at: float,
    dedupe_key: str | None,
    body: bytes,
) -> OutgoingJob:
    """``OutgoingJob(...)`` with every field given, in order, at about half the cost (see
    :mod:`lssm_jobs._slots`)."""
    job: OutgoingJob = object.__new__(OutgoingJob)
    _set_id(job, id)
    _set_type(job, type)
    _set_queue(job, queue)
    _set_priority(job, priority)
    _set_run_at(job, run_at)
    _set_created_at(job, created_at)
    _set_dedupe_key(job, dedupe_key)
    _set_body(job, body)
    return job


@attrs.frozen(kw_only=True)
class PushResult:
    """The outcome of pushing one job. ``created`` is False when a live job with the same dedupe key
    existed; then ``id`` is that job's id and nothing new was stored."""

    id: str
    created: bool


_set_result_id, _set_result_created = slot_setters(PushResult)


def new_push_result(id: str, created: bool) -> PushResult:
    """``PushResult(id=..., created=...)`` at about half the cost (see :mod:`lssm_jobs._slots`): backends
    return one per pushed job."""
    result: PushResult = object.__new__(PushResult)
    _set_result_id(result, id)
    _set_result_created(result, created)
    return result


@attrs.frozen(kw_only=True)
class JobRecord:
    """What a backend knows about a job. ``attempts`` counts deliveries so far (leases included)."""

    id: str
    type: str
    queue: str
    status: JobStatus
    attempts: int
    priority: int
    run_at: float
    created_at: float
    updated_at: float
    dedupe_key: str | None
    last_error: str | None
    body: bytes
    #: The last progress a handler stored (``set_progress``'s JSON text), or None; backends without the
    #: ``progress`` capability leave it None.
    progress: str | None = None
    #: Whether a cancel request waits for the active job's worker (backends with ``cancel``).
    cancel_requested: bool = False


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A job in the dead letter queue, with why it is there. ``body`` is kept verbatim, even when it could
    not be decoded, so nothing is lost and it can be inspected or replayed after a fix."""

    id: str
    type: str
    queue: str
    reason: str
    error: str | None
    traceback: str | None
    attempts: int
    failed_at: float
    body: bytes


class Delivery(ABC):
    """One job handed to the dispatcher. The dispatcher calls exactly one of ``ack``, ``retry``,
    ``dead_letter`` or ``release``; until then it may call ``extend`` to keep the lease.

    ``attempt`` is 1-based and counts this delivery, so a job whose worker was killed comes back with a
    higher attempt. ``lease_ms`` is None for deliveries without a lease to extend.

    The base class has no constructor: a backend's subclass sets the five attributes in its own
    ``__init__`` (one delivery is made per job, so it stays a plain object), and keeps what proves its
    lease (a lease token) to check on every settle.

    **Lease tokens.** Every lease carries a token no earlier lease of the job had. ``ack``, ``retry``,
    ``dead_letter``, ``release`` and ``extend`` apply only while this delivery's lease is the job's latest
    and the job was not settled since; otherwise they change nothing (``extend`` returns False). A settle
    after the lease expired may still apply until the job is leased again.

    **Concurrency.** ``extend`` may run at the same time as a settle of the same delivery (the heartbeat
    does not wait for the handler); whichever runs last, a settled job stays settled. Settles and extends
    of different deliveries may run concurrently with each other and with a ``lease`` in progress.
    """

    id: str
    attempt: int
    body: bytes
    queue: str
    lease_ms: int | None = None

    @abstractmethod
    async def ack(self) -> None:
        """The job completed: it is ``completed`` (readable with ``get`` for the backend's retention, if
        any; a backend configured to keep no completed jobs deletes it) and its dedupe key is free."""

    @abstractmethod
    async def retry(self, *, run_at: float, error: str) -> None:
        """Schedule the job to run again at ``run_at`` (epoch seconds), keeping its attempt count and
        storing ``error`` as its ``last_error``. It stays live (``scheduled``), so it keeps its dedupe key."""

    @abstractmethod
    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        """Move the job to the dead letter queue, keeping its body verbatim; its dedupe key is free."""

    @abstractmethod
    async def release(self) -> None:
        """Give the job back unrun (graceful stop): ready again at once, this delivery not counted."""

    async def extend(self, lease_ms: int) -> bool:
        """Push the lease expiry to ``lease_ms`` from now.

        :returns: False when the lease was already lost (the job was leased again or settled since): then
            nothing changed. The default (for deliveries without a lease) returns True.
        """
        return True

    async def cancel(self) -> None:
        """The job stopped on a cancel request: it is ``cancelled`` (kept for the completed-job retention,
        like ``ack``), its dedupe key is free, it is neither retried nor dead-lettered. Backends with the
        ``cancel`` capability implement it; the dispatcher calls it only on those.

        :raises NotImplementedError: the backend cannot cancel jobs (the default).
        """
        raise NotImplementedError("this backend cannot cancel jobs")


class LeaseGuard(Delivery):
    """A delivery whose lease extensions and settling never overlap.

    A heartbeat that extends a lease while the job's own ack, retry, dead-letter or release is under way
    finds the job no longer held, and would report the lease lost although nothing was. So: once settling
    starts, no extension starts any more and :meth:`extend` answers True without asking the backend
    (nothing is left to keep); an extension already under way finishes before the settle starts. The
    heartbeat reports a lost lease only when the backend says the lease was really lost.

    The pull consumer wraps every delivery in one; backends that run their own consumption loop and call
    :func:`lssm_jobs.consumer.keep_leases_alive` should wrap theirs too, and hand the same guard to the
    dispatcher.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.id = delivery.id
        self.attempt = delivery.attempt
        self.body = delivery.body
        self.queue = delivery.queue
        self.lease_ms = delivery.lease_ms
        self._settling = False
        self._extending: asyncio.Event | None = None  # set while no extension is under way

    @property
    def settling(self) -> bool:
        """Whether settling has started (no extension starts any more)."""
        return self._settling

    def begin_extend(self) -> bool:
        """Start an extension (the heartbeat's batch path). :returns: False when settling started."""
        if self._settling:
            return False
        if self._extending is None:  # made by the first extension: most jobs never need one
            self._extending = asyncio.Event()
        self._extending.clear()
        return True

    def end_extend(self) -> None:
        if self._extending is not None:
            self._extending.set()

    async def extend(self, lease_ms: int) -> bool:
        if not self.begin_extend():
            return True
        try:
            return await self.delivery.extend(lease_ms)
        finally:
            self.end_extend()

    async def _settle_alone(self) -> None:
        """No extension starts from now on; wait for one under way to finish."""
        self._settling = True
        if self._extending is not None:
            await self._extending.wait()

    async def ack(self) -> None:
        await self._settle_alone()
        await self.delivery.ack()

    async def retry(self, *, run_at: float, error: str) -> None:
        await self._settle_alone()
        await self.delivery.retry(run_at=run_at, error=error)

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        await self._settle_alone()
        await self.delivery.dead_letter(reason=reason, error=error, traceback=traceback)

    async def release(self) -> None:
        await self._settle_alone()
        await self.delivery.release()

    async def cancel(self) -> None:
        await self._settle_alone()
        await self.delivery.cancel()


Dispatch = Callable[[Delivery], Awaitable[None]]


@attrs.frozen(kw_only=True)
class ConsumeOptions:
    """How a worker consumes.

    :param queues: queue names to consume, or None for every queue.
    :param concurrency: most jobs run at once by this worker.
    :param lease_ms: visibility timeout of a lease; running jobs extend it every ``lease_ms / 3``.
    :param prefetch: most jobs a pull backend may lease ahead of free slots (0: lease only for free slots).
    :param shutdown_timeout: on stop, how long in-flight jobs may finish before being released.
    :param poll_interval: longest a pull backend waits for work before checking again (backends with a
        notification mechanism wake earlier).
    """

    queues: Sequence[str] | None = None
    concurrency: int = 10
    lease_ms: int = 30_000
    prefetch: int = 0
    shutdown_timeout: float = 30.0
    poll_interval: float = 1.0


class QueueBackend(ABC):
    """Stores, leases, delays and settles jobs. Created by a plugin's factory, opened once, closed once.

    All methods are coroutines and must not block the event loop (run blocking drivers in a thread).
    Every method may be called while others are in progress (producers, inspection and settles run
    concurrently with a consumer), except that one instance runs at most one :meth:`consume` or
    :meth:`PullBackend.lease` call at a time.

    **Clocks.** ``run_at`` and ``created_at`` are epoch seconds on the producer's clock. A backend decides
    when a job is due and when a lease expires with one clock of its own: a service's clock where there
    is a server (Redis uses the server's ``TIME``, shifting ``run_at`` by the producer's offset), the local
    clock for an embedded store (sqlite, memory). ``lease_ms`` is a duration.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities()
    #: Most jobs per :meth:`push` call for a large ``enqueue_many``: the queue then pushes batches one at
    #: a time, in order, preparing the next while the backend stores the previous. None (the default):
    #: every job in one call, so a transactional backend can store them all or none.
    push_batch: int | None = None

    async def open(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Connect and create what the backend needs. Called once before any other method.

        :raises ConnectionError: the service cannot be reached.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Release connections. The backend is not used afterwards."""

    @abstractmethod
    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store ``jobs`` (ready at their ``run_at``), atomically per job; results are in the same order.

        A job whose ``dedupe_key`` matches a live (scheduled, pending or active) job is not stored; its
        result names the live job (``created=False``). A job whose ``id`` is stored already (live, finished
        or dead) is not stored again and the stored job is left as it is; its result names that id
        (``created`` False, or True where the backend cannot tell it from a retried push of the same job).
        A batch need not be all-or-nothing: when ``push`` raises, some of the jobs may be stored, and
        pushing the same jobs again is safe.
        """

    def blocking_pusher(self) -> Callable[[Sequence[OutgoingJob]], list[PushResult]] | None:
        """Optional: a function doing what :meth:`push` does, callable from synchronous code on any thread
        while the backend is open, without the event loop (``lssm_jobs.blocking`` enqueues through it
        directly). None (the default): blocking callers go through the queue's event loop.

        Example: the Redis backend returns a pusher with one connection per calling thread.
        """
        return None

    @abstractmethod
    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        """Deliver jobs to ``dispatch`` until ``stopping`` is set, then return once every delivery in
        flight has been settled or released (within ``options.shutdown_timeout``)."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when unknown (or pruned after its retention).

        A scheduled job whose ``run_at`` has passed is reported ``pending``; a leased job is ``active``,
        also after its lease expired, until a lease call makes it ready again or takes it; a dead-lettered
        job is ``dead``, with its attempts and the dead letter's error as ``last_error``.
        """

    @abstractmethod
    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        """Number of jobs per queue and status, with the statuses :meth:`get` reports (dead letters under
        :attr:`JobStatus.DEAD`, completed jobs while they are kept). Statuses without jobs may be left out."""

    @abstractmethod
    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, most recent ``failed_at`` first: ``limit`` of them after skipping ``offset``."""

    @abstractmethod
    async def get_dead(self, job_id: str) -> DeadLetter | None:
        """One dead letter, or None (also for a job that is not dead)."""

    @abstractmethod
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        """Move a dead letter back into its queue, ready at ``run_at``, with its attempts reset to 0 and
        its dedupe key kept.

        :returns: False when there is no such dead letter.
        :raises DedupeConflictError: another live job holds its dedupe key now; the dead letter stays.
        """

    @abstractmethod
    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete the given dead letters (all when None), ignoring ids that are not dead letters.

        :returns: how many were deleted.
        """

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack several deliveries of this backend at once: what ``ack`` does for each, in as few round
        trips as the backend can (the default calls each one's ``ack``, one after another). A delivery whose
        lease was lost changes nothing, as with ``ack``.

        :raises ConnectionError: the service is unreachable (some may have been acked; acking again is safe).
        """
        for delivery in deliveries:
            await delivery.ack()

    async def extend_many(self, deliveries: Sequence[Delivery], lease_ms: int) -> list[bool]:
        """Extend the leases of several deliveries of this backend at once: what ``extend`` does for each,
        in as few round trips as the backend can (the default calls each one's ``extend``, concurrently).
        The shared heartbeat (:func:`lssm_jobs.consumer.keep_leases_alive`) calls it every ``lease_ms / 3``.

        :returns: per delivery, in order, False where the lease was lost.
        :raises ConnectionError: the service is unreachable (some may have been extended).
        """
        return list(await asyncio.gather(*(delivery.extend(lease_ms) for delivery in deliveries)))

    async def purge_queue(self, queue: str) -> int:
        """Delete every pending and scheduled job of ``queue`` (retries waiting for their time included),
        releasing their dedupe keys: they never run and ``get`` no longer finds them. Active (leased) jobs,
        completed jobs, dead letters and other queues are left alone. Optional: backends that implement it
        declare ``BackendCapabilities(purge_queue=True)``; large queues may be deleted in several steps.

        :returns: how many jobs were deleted (0 for an unknown or empty queue).
        :raises NotImplementedError: the backend cannot purge queues (the default).
        """
        raise NotImplementedError(f"the {self.name or type(self).__name__} backend cannot purge queues")

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job, atomically. A ``scheduled`` or ``pending`` job becomes ``cancelled`` at once: it is
        never delivered, its dedupe key is free, ``get`` reports it ``cancelled`` for the completed-job
        retention and ``counts`` counts it under :attr:`JobStatus.CANCELLED` (``removed``). An ``active`` job
        is marked: ``cancel_requested`` answers True for it and ``get`` reports ``cancel_requested``
        until it settles; a ``retry`` or ``release`` of a marked job settles it ``cancelled`` instead
        (``requested``). Optional: backends that implement it, :meth:`cancel_requested` and
        :meth:`Delivery.cancel` declare ``BackendCapabilities(cancel=True)``.

        :returns: ``removed``, ``requested``, ``not_found``, or ``finished`` (completed, dead, cancelled).
        :raises NotImplementedError: the backend cannot cancel jobs (the default).
        """
        raise NotImplementedError(f"the {self.name or type(self).__name__} backend cannot cancel jobs")

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` have a cancel request waiting (:meth:`cancel` of an active job), read in as
        few round trips as the backend can. A worker asks it for its running jobs every
        ``cancel_poll_interval``: that is how a request made in another process reaches it.

        :raises NotImplementedError: the backend cannot cancel jobs (the default).
        """
        raise NotImplementedError(f"the {self.name or type(self).__name__} backend cannot cancel jobs")

    async def set_progress(self, job_id: str, progress: str) -> bool:
        """Store ``progress`` (JSON text) as the job's progress, replacing the previous one; ``get`` returns
        it in :attr:`JobRecord.progress`. Applies while the job is stored and not finished (a report that
        arrives after its settle changes nothing). Optional: ``BackendCapabilities(progress=True)``.

        :returns: False when the job is unknown or finished (nothing stored).
        :raises NotImplementedError: the backend cannot store progress (the default).
        """
        raise NotImplementedError(f"the {self.name or type(self).__name__} backend cannot store job progress")

    def wake(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Interrupt any wait for work, so a stop is prompt. Called from the event loop."""


class PullBackend(QueueBackend):
    """A backend consumed by leasing. Implement :meth:`lease`; the shared pull consumer does the rest."""

    @abstractmethod
    async def lease(
        self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready jobs of ``queues`` (every queue when None): highest priority first,
        then, within a priority, first ready first: jobs pushed to run now in the order they were pushed,
        scheduled jobs in the order of their ``run_at`` (ordering every ready job by ``run_at``, as memory
        and sqlite do, meets this).

        Atomically marks each active with a lease expiring ``lease_ms`` from now, counts the attempt and
        gives the lease a new token; no other lease of the job, from any instance or process, overlaps it.
        Jobs whose lease expired are ready again. When none is ready, waits up to ``wait`` seconds for one,
        returning early on :meth:`QueueBackend.wake`, on a push in this process, and when a scheduled job
        or a lease comes due, without polling faster meanwhile; it may then return an empty list.
        """

    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        await run_pull_consumer(self, dispatch, options, stopping, guard=LeaseGuard)


# -- live workers (optional: BackendCapabilities.worker_registry) -----------------------------------------------


@attrs.frozen(kw_only=True)
class WorkerInfo:
    """A running worker as it announces itself in its backend (``lssm-jobs workers`` lists them).

    :param id: unique per worker run (host, process id and a random part).
    :param host: the machine's host name.
    :param pid: the worker's process id on that host.
    :param queues: the queues it consumes, in its order; None for every queue.
    :param concurrency: most jobs it runs at once.
    :param started_at: epoch seconds (the worker's clock) when it started consuming.
    :param last_seen: epoch seconds (the worker's clock) of its latest heartbeat.
    :param jobs_done: deliveries it took to an outcome so far (completed, retried or dead-lettered).
    :param current_jobs: ids of the jobs it runs now (at most :data:`MAX_LISTED_JOBS` of them).
    :param in_flight: how many jobs it runs now (also those past ``current_jobs``).
    """

    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    started_at: float
    last_seen: float
    jobs_done: int = 0
    current_jobs: tuple[str, ...] = ()
    in_flight: int = 0

    def to_json(self) -> str:
        """The record as a JSON object (how backends store it)."""
        data: dict[str, Any] = attrs.asdict(self)
        data["queues"] = None if self.queues is None else list(self.queues)
        data["current_jobs"] = list(self.current_jobs)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        """A record stored by :meth:`to_json`.

        :raises ValueError: the text is not such a record.
        """
        try:
            data = json.loads(text)
            queues = data["queues"]
            return cls(
                id=str(data["id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                queues=None if queues is None else tuple(str(name) for name in queues),
                concurrency=int(data["concurrency"]),
                started_at=float(data["started_at"]),
                last_seen=float(data["last_seen"]),
                jobs_done=int(data.get("jobs_done", 0)),
                current_jobs=tuple(str(job_id) for job_id in data.get("current_jobs", ())),
                in_flight=int(data.get("in_flight", 0)),
            )
        except (TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"not a worker record: {error!r}") from None


#: Most job ids a worker lists in :attr:`WorkerInfo.current_jobs` (its record stays small at any concurrency).
MAX_LISTED_JOBS = 100


class WorkerRegistry(ABC):
    """Live workers in a backend: each worker registers on start, renews its record every heartbeat, and
    removes it on a graceful stop; a worker that stops renewing (killed, frozen, cut off) ages out.

    Optional: a backend that implements it subclasses it next to :class:`QueueBackend` and declares
    ``BackendCapabilities(worker_registry=True)``. Expiry uses the backend's own clock (as leases do), so
    workers with skewed clocks still age out on time; ``WorkerInfo``'s times are only shown.
    """

    @abstractmethod
    async def register_worker(self, worker: WorkerInfo, ttl_ms: int) -> None:
        """Store ``worker`` (replacing a record of the same id), live until ``ttl_ms`` from now."""

    @abstractmethod
    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        """Replace the live record of ``worker.id`` with ``worker`` and keep it live ``ttl_ms`` from now.

        :returns: False when no live record has that id (it aged out or was unregistered): then nothing is
            stored, and the worker registers again.
        """

    @abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's record at once (graceful stop); an unknown id is ignored."""

    @abstractmethod
    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers, oldest ``started_at`` first (then by id); records whose time to live passed
        are never listed (and may be deleted meanwhile)."""
