"""The job ledger contract: the companion store of push and stream backends.

Cloud Tasks and Pub/Sub deliver jobs but keep no history: a task or message is gone once it is answered, so
the service alone cannot say what a job's status is, how often it ran, why it failed, or hold the dead
letter queue. A :class:`JobLedger` keeps exactly that, and nothing about delivery:

* **records**: one per job (status, attempts, last error, body verbatim) so a backend can answer
  ``get(id)`` and ``counts()``;
* **dedupe**: :meth:`JobLedger.record` stores a job unless a live job holds its dedupe key, atomically, and
  names the live job instead (like :class:`~lssm_jobs.backends.base.PushResult`); :meth:`JobLedger.discard`
  undoes a record whose publish to the service failed, freeing the key;
* **claims**: each delivery asks :meth:`JobLedger.begin` whether it may run the job. Only one delivery
  holds a job at a time (a lease with a token, like a pull backend's), so a message or task delivered twice
  (services are at-least-once) runs once and counts once: attempts, dead letters and events stay right;
* **generations**: every task or message that carries a job has a generation number. The ledger records
  which generation is current; a delivery of an older one was superseded (its successor exists) and is
  dropped, a delivery of a newer one arrived before the ledger heard of it and is asked to come back;
* **dead letters**: moved in by the dispatcher's verdict, listed, replayed and purged here.

How a backend uses it (Cloud Tasks, for example)::

    results = await ledger.record(jobs)                  # dedupe decided here, generation 1
    ... create one task per created job; on failure: await ledger.discard(failed_ids)
    # in the worker, per HTTP request carrying (job id, generation):
    claim = await ledger.begin(job_id, generation=g, lease_ms=30_000)
    if claim.outcome is ClaimOutcome.RUN:
        ... dispatch; the delivery settles with complete / reschedule / dead_letter / release(token)

Every method is a coroutine and atomic on its own; implementations must be safe to use from several
processes at once when they are shared (sqlite file, Redis).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence

import attrs

from lssm_jobs.backends.base import DeadLetter, JobRecord, OutgoingJob, PushResult
from lssm_jobs.jobs import JobStatus

#: The generation of the first task or message that carries a job.
FIRST_GENERATION = 1


class ClaimOutcome(str, enum.Enum):
    """What :meth:`JobLedger.begin` decided about one delivery."""

    #: The delivery holds the job now (status active, attempts counted): run it and settle with the token.
    RUN = "run"
    #: The job completed or is dead: this is a duplicate delivery. Acknowledge it; do nothing else.
    FINISHED = "finished"
    #: Another delivery holds a live lease on the job. Ask the service to deliver this one again later.
    BUSY = "busy"
    #: A newer generation carries the job now. Acknowledge this delivery and drop it.
    SUPERSEDED = "superseded"
    #: The delivery's generation is newer than the ledger's (the ledger write naming it has not landed, or
    #: failed). Ask the service to deliver it again later.
    EARLY = "early"
    #: The job is scheduled for later than now (beyond the clock tolerance). Ask again at ``run_at``.
    NOT_DUE = "not_due"
    #: The ledger has no such job (never recorded, discarded after a failed publish, or purged).
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class Claim:
    """The answer of :meth:`JobLedger.begin`.

    :param outcome: what to do with the delivery.
    :param job_id: the job asked about.
    :param attempt: with :attr:`ClaimOutcome.RUN`, this delivery's attempt (1-based, this one included).
    :param token: with RUN, the lease token every settle method needs.
    :param generation: the job's current generation as the ledger knows it (0 when unknown).
    :param next_generation: with RUN, a generation reserved for a successor task or message (a retry):
        issued once, so no two successors ever share a name.
    :param run_at: the job's run_at (with NOT_DUE: when to come back).
    :param queue: the job's queue ("" when unknown).
    :param body: with RUN, the serialized envelope.
    """

    outcome: ClaimOutcome
    job_id: str
    attempt: int = 0
    token: str | None = None
    generation: int = 0
    next_generation: int = 0
    run_at: float = 0.0
    queue: str = ""
    body: bytes = b""


class JobLedger(ABC):
    """Job records and dead letters for a backend whose service keeps no history. See the module docstring.

    A ledger is created by a plugin's factory (hook ``lssm_jobs_job_ledgers``), opened once before use and
    closed once. Methods raise ``ConnectionError`` when the store cannot be reached; a backend then treats
    the operation as failed (a delivery is answered so that the service delivers it again).
    """

    name: str = ""

    async def open(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Connect, create tables or load scripts. Called once before any other method.

        :raises ConnectionError: the store cannot be reached.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Release connections. The ledger is not used afterwards."""

    # -- producing -----------------------------------------------------------------------------------------

    @abstractmethod
    async def record(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store each job as waiting (scheduled or pending by its ``run_at``), with 0 attempts and generation
        :data:`FIRST_GENERATION`, atomically per job; results are in the same order.

        A job whose ``dedupe_key`` is held by a live (scheduled, pending or active) job is not stored: its
        result names the live job (``created=False``). So is a job whose id is already recorded (a retried
        publish), its result naming itself.
        """

    @abstractmethod
    async def discard(self, job_ids: Sequence[str]) -> int:
        """Undo :meth:`record` for jobs whose publish to the service failed: delete each record that was never
        begun (still waiting at generation 1 with no attempt), freeing its dedupe key.

        :returns: how many records were deleted (jobs already running or settled are left alone).
        """

    # -- delivering ----------------------------------------------------------------------------------------

    @abstractmethod
    async def begin(self, job_id: str, *, generation: int, lease_ms: int, tolerance: float = 1.0) -> Claim:
        """Decide whether a delivery of ``job_id`` carried by ``generation`` may run the job, and if so take
        it: status active, attempts + 1, a lease of ``lease_ms`` with a new token, a successor generation
        reserved. In this order:

        * no record: :attr:`~ClaimOutcome.UNKNOWN`;
        * ``generation`` newer than the record's: :attr:`~ClaimOutcome.EARLY` (also for a finished job: a
          replay creates its task before the ledger moves the dead letter back);
        * completed or dead: :attr:`~ClaimOutcome.FINISHED`;
        * ``generation`` older than the record's: :attr:`~ClaimOutcome.SUPERSEDED`;
        * active with an unexpired lease: :attr:`~ClaimOutcome.BUSY` (an active job whose lease expired
          was abandoned by a dead worker, and runs again);
        * scheduled for later than now + ``tolerance`` seconds: :attr:`~ClaimOutcome.NOT_DUE` (services
          deliver on their own clock; the tolerance absorbs clock skew);
        * otherwise :attr:`~ClaimOutcome.RUN`.
        """

    @abstractmethod
    async def extend(self, job_id: str, token: str, *, lease_ms: int) -> bool:
        """Push the lease of a running job to ``lease_ms`` from now.

        :returns: False when ``token`` no longer holds the job (the lease expired and another delivery took
            it, or it was settled).
        """

    @abstractmethod
    async def complete(self, job_id: str, token: str) -> bool:
        """The job succeeded: status completed (kept for the ledger's retention), dedupe key freed.

        :returns: False when ``token`` no longer holds the job (nothing changed).
        """

    @abstractmethod
    async def reschedule(
        self, job_id: str, token: str, *, run_at: float, error: str, generation: int | None
    ) -> bool:
        """The attempt failed and the job runs again at ``run_at``: status scheduled (or pending), attempts
        kept, ``last_error`` set, the lease dropped. ``generation`` names the successor that will deliver
        it (None: the current one delivers it again).

        :returns: False when ``token`` no longer holds the job (nothing changed).
        """

    @abstractmethod
    async def release(self, job_id: str, token: str) -> bool:
        """Give the job back unrun (the worker is stopping): status pending, this attempt not counted,
        generation kept (the same task or message is delivered again).

        :returns: False when ``token`` no longer holds the job (nothing changed).
        """

    @abstractmethod
    async def dead_letter(
        self, job_id: str, token: str, *, reason: str, error: str | None, traceback: str | None
    ) -> bool:
        """Move the job to the dead letter queue with why, its body verbatim; its dedupe key is freed.

        :returns: False when ``token`` no longer holds the job (nothing changed).
        """

    # -- inspecting ------------------------------------------------------------------------------------------

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record (dead letters with status :attr:`~lssm_jobs.jobs.JobStatus.DEAD`; waiting jobs
        scheduled or pending by their ``run_at`` now), or None when unknown or pruned after its retention."""

    @abstractmethod
    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        """Number of jobs per queue and status, dead letters included."""

    @abstractmethod
    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, most recent first."""

    @abstractmethod
    async def get_dead(self, job_id: str) -> DeadLetter | None:
        """One dead letter, or None."""

    # -- dead letters ----------------------------------------------------------------------------------------

    @abstractmethod
    async def reserve_generation(self, job_id: str) -> int | None:
        """Issue a new generation for the job (live or dead) that no task or message has carried: for a
        replay, which creates its task before the ledger moves the dead letter back.

        :returns: None when the ledger has no such job.
        """

    @abstractmethod
    async def replay_dead(self, job_id: str, *, run_at: float, generation: int) -> bool:
        """Move a dead letter back to waiting at ``run_at`` with 0 attempts, carried by ``generation``, its
        dedupe key kept.

        :returns: False when there is no such dead letter.
        :raises lssm_jobs.errors.DedupeConflictError: another live job holds its dedupe key now; the dead
            letter stays where it is.
        """

    @abstractmethod
    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete the given dead letters (all when None). :returns: how many were deleted."""
