"""Deliberately broken variants of the memory and sqlite backends, one defect each, the kind a backend
author could get wrong. ``test_conformance_mutants.py`` runs the conformance tests named by each mutant
over it and requires every one of them to fail: a suite that passes a broken backend proves nothing.

A mutant is a subclass changing one thing: a method of the memory backend, its store or its deliveries;
for sqlite, usually one fragment of one SQL statement (:class:`_RewritingConnection`), which keeps each
mutant to a line and fails loudly (``test_sql_fragments_exist``) when the backend's SQL changes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from lssm_jobs.backends.base import Delivery, JobRecord, OutgoingJob, PushResult, QueueBackend, WorkerInfo
from lssm_jobs.backends.memory import MemoryBackend, MemoryStore, _MemoryDelivery, _StoredJob
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.jobs import JobStatus

BackendFactory = Callable[[], QueueBackend]

# -- the catalogue's record ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Mutant:
    """One broken backend: what is wrong, which conformance tests must fail over it, and how to make it
    (``make(directory)`` returns a ``lssm_jobs_backend_factory`` whose instances share storage)."""

    name: str
    kind: str
    defect: str
    caught_by: tuple[str, ...]
    make: Callable[[Path], BackendFactory]
    #: Runs for about the suite's ``slow_poll_interval`` (a worker that reacts only when it polls again).
    slow: bool = False


def memory(backend: type[MemoryBackend] = MemoryBackend, store: type[MemoryStore] = MemoryStore) -> Any:
    def make(directory: Path) -> BackendFactory:
        shared = store()
        return lambda: backend(store=shared)

    return make


def sqlite(backend: type[SqliteBackend] = SqliteBackend) -> Any:
    def make(directory: Path) -> BackendFactory:
        return lambda: backend(path=directory / "jobs.db")

    return make


# -- memory: deliveries ------------------------------------------------------------------------------------------


class _WithDelivery(MemoryBackend):
    """Hands out deliveries of ``delivery`` (a :class:`_MemoryDelivery` with one method broken)."""

    delivery: ClassVar[type[_MemoryDelivery]]

    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            leased.__class__ = self.delivery
        return deliveries


def with_delivery(broken: type[_MemoryDelivery]) -> Any:
    return memory(type(f"With{broken.__name__}", (_WithDelivery,), {"delivery": broken}))


class _AdoptsToken(_MemoryDelivery):
    """Settles as if its token were the job's current one: no token check."""

    def _adopt(self) -> None:
        self.token = self.job.lease_token


class AckIgnoresToken(_AdoptsToken):
    async def ack(self) -> None:
        self._adopt()
        await super().ack()


class RetryIgnoresToken(_AdoptsToken):
    async def retry(self, *, run_at: float, error: str) -> None:
        self._adopt()
        await super().retry(run_at=run_at, error=error)


class DeadLetterIgnoresToken(_AdoptsToken):
    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        self._adopt()
        await super().dead_letter(reason=reason, error=error, traceback=traceback)


class ReleaseIgnoresToken(_AdoptsToken):
    async def release(self) -> None:
        self._adopt()
        await super().release()


class ExtendIgnoresToken(_AdoptsToken):
    async def extend(self, lease_ms: int) -> bool:
        self._adopt()
        return await super().extend(lease_ms)


class ExtendAlwaysTrue(_MemoryDelivery):
    async def extend(self, lease_ms: int) -> bool:
        await super().extend(lease_ms)
        return True


class ExtendDoesNothing(_MemoryDelivery):
    async def extend(self, lease_ms: int) -> bool:
        return self._held()


class ExtendRevivesSettledJob(_MemoryDelivery):
    async def extend(self, lease_ms: int) -> bool:
        self.job.status = JobStatus.ACTIVE
        self.job.lease_token = self.token
        self.store.active.add(self.job.id)
        return await super().extend(lease_ms)


class RetryForgetsError(_MemoryDelivery):
    async def retry(self, *, run_at: float, error: str) -> None:
        await super().retry(run_at=run_at, error=error)
        self.job.last_error = None


class RetryIgnoresRunAt(_MemoryDelivery):
    async def retry(self, *, run_at: float, error: str) -> None:
        await super().retry(run_at=time.time(), error=error)


class RetryFreesDedupeKey(_MemoryDelivery):
    async def retry(self, *, run_at: float, error: str) -> None:
        await super().retry(run_at=run_at, error=error)
        self.store.release_dedupe(self.job)


class DeadLetterKeepsDedupeKey(_MemoryDelivery):
    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        key = self.job.dedupe_key
        await super().dead_letter(reason=reason, error=error, traceback=traceback)
        if key is not None:
            self.store.dedupe[key] = self.job.id


class DeadLetterDropsError(_MemoryDelivery):
    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        await super().dead_letter(reason=f"{reason}: {error}", error=None, traceback=traceback)


class DeadLetterMangledBody(_MemoryDelivery):
    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        await super().dead_letter(reason=reason, error=error, traceback=traceback)
        self.job.body = self.job.body.decode("utf-8", "replace").encode()


class AckKeepsDedupeKey(_MemoryDelivery):
    async def ack(self) -> None:
        key = self.job.dedupe_key
        await super().ack()
        if key is not None:
            self.store.dedupe[key] = self.job.id


class AckDeletesJob(_MemoryDelivery):
    async def ack(self) -> None:
        await super().ack()
        self.store.jobs.pop(self.job.id, None)


class ReleaseCountsAttempt(_MemoryDelivery):
    async def release(self) -> None:
        await super().release()
        self.job.attempts += 1


class ReleaseLeavesJobActive(_MemoryDelivery):
    async def release(self) -> None:
        if self._held():
            self.job.attempts -= 1
            self.job.lease_token = 0  # forgot to make it ready: it waits for its lease to expire


# -- memory: leasing -------------------------------------------------------------------------------------------


class LeaseNeverWaits(MemoryBackend):
    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        await asyncio.sleep(0)
        return await super().lease(queues=queues, limit=limit, lease_ms=lease_ms, wait=0)


class LeasePollsEvery10ms(MemoryBackend):
    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        deadline = time.monotonic() + wait
        while True:
            deliveries = await super().lease(queues=queues, limit=limit, lease_ms=lease_ms, wait=0)
            if deliveries or time.monotonic() >= deadline or self._wakeup.is_set():
                self._wakeup.clear()
                return deliveries
            await asyncio.sleep(0.01)


class LeaseIgnoresWake(MemoryBackend):
    def wake(self) -> None:
        pass


class StoreNeverNotifies(MemoryStore):
    """Pushes (and releases) do not wake waiting leases."""

    def notify(self) -> None:
        pass


class StoreForgetsDueTimes(MemoryStore):
    """Waiting leases do not wake for the next scheduled job or lease expiry."""

    def next_wakeup(self) -> float | None:
        return None


class LeaseIgnoresLimit(MemoryBackend):
    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        return await super().lease(queues=queues, limit=limit + 100, lease_ms=lease_ms, wait=wait)


class LeaseIgnoresQueues(MemoryBackend):
    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        return await super().lease(queues=None, limit=limit, lease_ms=lease_ms, wait=wait)


class LeaseDoesNotCountAttempts(MemoryBackend):
    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            assert isinstance(leased, _MemoryDelivery)
            leased.job.attempts -= 1
            leased.attempt -= 1
        return deliveries


class TokenIsTheAttempt(MemoryBackend):
    """Tokens numbered by attempt: a release and a new lease reuse the released lease's token."""

    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            assert isinstance(leased, _MemoryDelivery)
            leased.job.lease_token = leased.token = leased.job.attempts
        return deliveries


class TokenPerWorker(MemoryBackend):
    """One token per backend instance (a worker id) instead of one per lease."""

    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            assert isinstance(leased, _MemoryDelivery)
            leased.job.lease_token = leased.token = id(self)
        return deliveries


class LeaseLooksThenTakes(MemoryBackend):
    """Reads the best ready jobs, awaits (a round trip between reading and writing), then takes them
    without checking that they are still ready: no lock."""

    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        store = self.store
        store.promote_and_reclaim(store.clock())
        names = list(store.ready) if queues is None else [name for name in queues if name in store.ready]
        best = heapq.nsmallest(limit, itertools.chain.from_iterable(store.ready[name] for name in names))
        seen = [store.jobs[entry[3]] for entry in best if store.jobs[entry[3]].status is JobStatus.PENDING]
        await asyncio.sleep(0)
        if not seen:
            return await super().lease(queues=queues, limit=limit, lease_ms=lease_ms, wait=wait)
        now = store.clock()
        deliveries: list[Delivery] = []
        for job in seen:
            job.status = JobStatus.ACTIVE
            job.attempts += 1
            job.lease_token = next(store.tokens)
            job.lease_until = now + lease_ms / 1000
            store.active.add(job.id)
            deliveries.append(_MemoryDelivery(store, job, lease_ms))
        return deliveries


class LeaseFreesDedupeKey(MemoryBackend):
    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            assert isinstance(leased, _MemoryDelivery)
            self.store.release_dedupe(leased.job)
        return deliveries


class NewestFirst(MemoryStore):
    def make_ready(self, job: _StoredJob) -> None:
        job.status = JobStatus.PENDING
        heapq.heappush(
            self.ready.setdefault(job.queue, []), (-job.priority, -job.run_at, -next(self.seq), job.id)
        )


class LastPushedFirstAmongEquals(MemoryStore):
    """Orders by run_at, but breaks ties (one enqueue_many) newest first."""

    def make_ready(self, job: _StoredJob) -> None:
        job.status = JobStatus.PENDING
        heapq.heappush(
            self.ready.setdefault(job.queue, []), (-job.priority, job.run_at, -next(self.seq), job.id)
        )


class PriorityIgnored(MemoryStore):
    def make_ready(self, job: _StoredJob) -> None:
        job.status = JobStatus.PENDING
        heapq.heappush(self.ready.setdefault(job.queue, []), (0, job.run_at, next(self.seq), job.id))


class QueuesDrainedInOrder(MemoryStore):
    """Takes from the first queue that has work, whatever the priorities in the others."""

    def pop_ready(self, queues: Sequence[str] | None) -> _StoredJob | None:
        for name in list(self.ready) if queues is None else queues:
            job = super().pop_ready([name])
            if job is not None:
                return job
        return None


class DelayIgnored(MemoryStore):
    def schedule(self, job: _StoredJob) -> None:
        self.make_ready(job)
        self.notify()


class ExpiredLeasesNeverReclaimed(MemoryStore):
    def promote_and_reclaim(self, now: float) -> None:
        active, self.active = self.active, set()
        try:
            super().promote_and_reclaim(now)
        finally:
            self.active = active | self.active


# -- memory: producing, reporting, dead letters ---------------------------------------------------------------------


class PushResultsCreatedFirst(MemoryBackend):
    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = await super().push(jobs)
        return [result for result in results if result.created] + [r for r in results if not r.created]


class PushOverwritesStoredId(MemoryBackend):
    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        for job in jobs:
            stored = self.store.jobs.get(job.id)
            if stored is not None and stored.dedupe_key is None:
                del self.store.jobs[job.id]
        return await super().push(jobs)


class PushChecksThenInserts(MemoryBackend):
    """Looks up the dedupe keys, awaits (a round trip), then inserts without looking again."""

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        free = {job.dedupe_key for job in jobs if job.dedupe_key and job.dedupe_key not in self.store.dedupe}
        await asyncio.sleep(0)
        results = []
        for job in jobs:
            if job.dedupe_key in free:
                self.store.dedupe.pop(job.dedupe_key, None)  # inserted as if the key were still free
            results.extend(await super().push([job]))
        return results


class DedupeKeyKeptBy(MemoryBackend):
    """Pushes treat any job still registered under a dedupe key as its holder, whatever its status; the
    deliveries (class attribute ``delivery``) forget to free the key."""

    delivery: ClassVar[type[_MemoryDelivery]]

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = []
        for job in jobs:
            holder = self.store.dedupe.get(job.dedupe_key) if job.dedupe_key is not None else None
            if holder is not None and holder in self.store.jobs:
                results.append(PushResult(id=holder, created=False))
            else:
                results.extend(await super().push([job]))
        return results

    async def lease(self, **arguments: Any) -> list[Delivery]:
        deliveries = await super().lease(**arguments)
        for leased in deliveries:
            leased.__class__ = self.delivery
        return deliveries


def dedupe_key_kept_by(delivery: type[_MemoryDelivery]) -> Any:
    return memory(type(f"KeyKeptBy{delivery.__name__}", (DedupeKeyKeptBy,), {"delivery": delivery}))


class GetShowsStoredStatus(MemoryBackend):
    """``get`` reports the stored status: an overdue scheduled job shows as scheduled."""

    async def get(self, job_id: str) -> JobRecord | None:
        record = await super().get(job_id)
        job = self.store.jobs.get(job_id)
        return attrs.evolve(record, status=job.status) if record is not None and job is not None else record


class CountsShowStoredStatus(MemoryBackend):
    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        for job in self.store.jobs.values():
            per_queue = counts.setdefault(job.queue, {})
            per_queue[job.status] = per_queue.get(job.status, 0) + 1
        return counts


def counts_without(status: JobStatus) -> type[MemoryBackend]:
    async def counts(self: MemoryBackend) -> dict[str, dict[JobStatus, int]]:
        counts = await MemoryBackend.counts(self)
        for per_queue in counts.values():
            per_queue.pop(status, None)
        return counts

    return type(f"CountsWithout{status.name.title()}", (MemoryBackend,), {"counts": counts})


class GetShowsExpiredLeaseAsPending(MemoryBackend):
    async def get(self, job_id: str) -> JobRecord | None:
        record = await super().get(job_id)
        job = self.store.jobs.get(job_id)
        expired = job is not None and job.status is JobStatus.ACTIVE and job.lease_until <= self.store.clock()
        return attrs.evolve(record, status=JobStatus.PENDING) if record is not None and expired else record


class GetIgnoresDeadJobs(MemoryBackend):
    async def get(self, job_id: str) -> JobRecord | None:
        record = await super().get(job_id)
        return None if record is not None and record.status is JobStatus.DEAD else record


class GetDeadReturnsAnyJob(MemoryBackend):
    async def get_dead(self, job_id: str) -> Any:
        job = self.store.jobs.get(job_id)
        return self._dead_letter(job) if job is not None else None


class DeadListedOldestFirst(MemoryBackend):
    def _dead(self) -> list[_StoredJob]:
        return list(reversed(super()._dead()))


class DeadListIgnoresOffset(MemoryBackend):
    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[Any]:
        return await super().list_dead(limit=limit, offset=0)


class DeadListIgnoresLimit(MemoryBackend):
    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[Any]:
        return await super().list_dead(limit=100, offset=offset)


class PurgeOfIdsPurgesAll(MemoryBackend):
    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        return await super().purge_dead(None)


class PurgeDeletesLiveJobs(MemoryBackend):
    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        purged = await super().purge_dead(job_ids)
        for job_id in job_ids or ():
            if self.store.jobs.pop(job_id, None) is not None:
                purged += 1
        return purged


class PurgeCountsIdsGiven(MemoryBackend):
    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        purged = await super().purge_dead(job_ids)
        return purged if job_ids is None else len(job_ids)


class ReplayIgnoresRunAt(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        return await super().replay_dead(job_id, run_at=self.store.clock())


class ReplayDropsDedupeKey(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        job = self.store.jobs.get(job_id)
        if job is not None and job.status is JobStatus.DEAD:
            job.dedupe_key = None
        return await super().replay_dead(job_id, run_at=run_at)


class ReplayTakesHeldDedupeKey(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        job = self.store.jobs.get(job_id)
        if job is not None and job.dedupe_key is not None:
            self.store.dedupe.pop(job.dedupe_key, None)
        return await super().replay_dead(job_id, run_at=run_at)


class ReplayConflictLosesDeadLetter(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        job = self.store.jobs.get(job_id)
        try:
            return await super().replay_dead(job_id, run_at=run_at)
        except Exception:
            if job is not None:
                job.status = JobStatus.SCHEDULED
            raise


class ReplayKeepsAttempts(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        job = self.store.jobs.get(job_id)
        attempts = job.attempts if job is not None else 0
        replayed = await super().replay_dead(job_id, run_at=run_at)
        if replayed and job is not None:
            job.attempts = attempts
        return replayed


class ReplayResetsLiveJobs(MemoryBackend):
    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        job = self.store.jobs.get(job_id)
        if job is not None and job.status is not JobStatus.DEAD:
            job.attempts = 0
            return True
        return await super().replay_dead(job_id, run_at=run_at)


# -- memory: batch settling --------------------------------------------------------------------------------------


class ExtendManyAlwaysTrue(MemoryBackend):
    async def extend_many(self, deliveries: Sequence[Delivery], lease_ms: int) -> list[bool]:
        await super().extend_many(deliveries, lease_ms)
        return [True] * len(deliveries)


class ExtendManyReversed(MemoryBackend):
    async def extend_many(self, deliveries: Sequence[Delivery], lease_ms: int) -> list[bool]:
        return list(reversed(await super().extend_many(deliveries, lease_ms)))


class AckManyAcksTheFirst(MemoryBackend):
    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        await super().ack_many(deliveries[:1])


# -- memory: cancelling and progress ---------------------------------------------------------------------------


class CancelLeavesJobWaiting(MemoryBackend):
    """Cancelling a waiting job answers ``removed`` but leaves it in its queue."""

    async def cancel(self, job_id: str) -> Any:
        job = self.store.jobs.get(job_id)
        if job is not None and job.status in (JobStatus.SCHEDULED, JobStatus.PENDING):
            return "removed"
        return await super().cancel(job_id)


class CancelEndsRunningJobs(MemoryBackend):
    """Cancelling an active job marks it cancelled at once (``removed``) instead of asking its worker."""

    async def cancel(self, job_id: str) -> Any:
        job = self.store.jobs.get(job_id)
        if job is not None and job.status is JobStatus.ACTIVE:
            self.store.active.discard(job_id)
            self.store.finish_cancelled(job)
            return "removed"
        return await super().cancel(job_id)


class NoCancelRequestsSeen(MemoryBackend):
    """Requests are recorded, but the poll never reports them: only a worker in the same queue object
    would learn of one."""

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        return set()


class CancelCompletesJob(_MemoryDelivery):
    """Delivery.cancel acks: the stopped job ends ``completed``."""

    async def cancel(self) -> None:
        await self.ack()


class RetryIgnoresCancelRequest(_MemoryDelivery):
    async def retry(self, *, run_at: float, error: str) -> None:
        self.job.cancel_requested = False
        await super().retry(run_at=run_at, error=error)


class ExpiredLeasesIgnoreCancelRequests(MemoryStore):
    """A job whose worker died is made ready again even with a cancel request waiting."""

    def promote_and_reclaim(self, now: float) -> None:
        for job_id in self.active:
            job = self.jobs[job_id]
            if job.lease_until <= now:
                job.cancel_requested = False
        super().promote_and_reclaim(now)


class ProgressNotStored(MemoryBackend):
    async def set_progress(self, job_id: str, progress: str) -> bool:
        return self.store.jobs.get(job_id) is not None


class ProgressStoredAfterSettle(MemoryBackend):
    async def set_progress(self, job_id: str, progress: str) -> bool:
        job = self.store.jobs.get(job_id)
        if job is None:
            return False
        job.progress = progress
        return True


# -- sqlite ---------------------------------------------------------------------------------------------------


@attrs.frozen
class Rewrite:
    """In statements containing ``where``, replace ``old`` by ``new``."""

    where: str
    old: str
    new: str


_TRANSACTION_STATEMENTS = frozenset({"BEGIN IMMEDIATE", "BEGIN", "COMMIT", "ROLLBACK"})


#: A network round trip, for mutants standing for a database server: sqlite itself answers so fast that
#: a race between two statements would rarely show.
ROUND_TRIP = 0.002


class _RewritingConnection:
    """A sqlite connection that rewrites the SQL it runs; with ``no_transactions`` it skips transaction
    statements (each statement then commits on its own), and statements containing ``round_trip_after``
    are followed by a :data:`ROUND_TRIP`. Everything else passes through."""

    def __init__(self, connection: sqlite3.Connection, backend: _RewritingSqlite) -> None:
        self._connection = connection
        self._rewrites = backend.rewrites
        self._no_transactions = backend.no_transactions
        self._round_trip_after = backend.round_trip_after

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._no_transactions and sql in _TRANSACTION_STATEMENTS:
            return self._connection.execute("SELECT 0")
        for rewrite in self._rewrites:
            if rewrite.where in sql:
                sql = sql.replace(rewrite.old, rewrite.new)
        cursor = self._connection.execute(sql, parameters)
        if self._round_trip_after and self._round_trip_after in sql:
            time.sleep(ROUND_TRIP)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _RewritingSqlite(SqliteBackend):
    rewrites: ClassVar[tuple[Rewrite, ...]] = ()
    push_on_loop = False  # every statement goes through the rewritten database-thread connection
    no_transactions = False
    round_trip_after = ""

    @property
    def _db(self) -> Any:
        return _RewritingConnection(super()._db, self)


def sql(*rewrites: Rewrite, **attributes: Any) -> Any:
    """A sqlite backend whose SQL is rewritten so (and with these attributes set on each instance)."""
    backend = type("RewrittenSqlite", (_RewritingSqlite,), {"rewrites": rewrites})

    def make(directory: Path) -> BackendFactory:
        def new() -> QueueBackend:
            instance = backend(path=directory / "jobs.db")
            for name, value in attributes.items():
                setattr(instance, name, value)
            return instance

        return new

    make.rewrites = rewrites  # type: ignore[attr-defined]
    return make


_HELD = "id = ? AND lease_token = ? AND status = 'active'"
_ANY_TOKEN = "id = ? AND ? IS NOT NULL AND status = 'active'"


class SqliteLeaseNeverWaits(SqliteBackend):
    async def lease(self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float) -> Any:
        return await super().lease(queues=queues, limit=limit, lease_ms=lease_ms, wait=0)


class SqliteLeaseIgnoresWake(SqliteBackend):
    def wake(self) -> None:
        pass


class SqliteReplayIgnoresRunAt(SqliteBackend):
    def _replay_dead_sync(self, job_id: str, run_at: float) -> bool:
        return super()._replay_dead_sync(job_id, time.time())


class SqliteReplayDropsDedupeKey(SqliteBackend):
    def _replay_dead_sync(self, job_id: str, run_at: float) -> bool:
        replayed = super()._replay_dead_sync(job_id, run_at)
        self._db.execute("UPDATE lssm_jobs SET dedupe_key = NULL WHERE id = ?", (job_id,))
        return replayed


class SqlitePushResultsCreatedFirst(SqliteBackend):
    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = await super().push(jobs)
        return [result for result in results if result.created] + [r for r in results if not r.created]


class SqlitePushChecksOutsideTheTransaction(_RewritingSqlite):
    """Pushes without a write transaction: the dedupe check and the insert are separate commits (with a
    round trip between them, as to a database server)."""

    round_trip_after = "WHERE dedupe_key = ?"

    def _push_sync(self, jobs: list[OutgoingJob]) -> list[PushResult]:
        self.no_transactions = True
        try:
            return super()._push_sync(jobs)
        finally:
            self.no_transactions = False


class SqliteTokenPerInstance(SqliteBackend):
    """The lease token names the backend instance (a worker id), so its next lease reuses it."""

    def _lease_sync(self, queues: tuple[str, ...] | None, limit: int, lease_ms: int) -> Any:
        rows, due = super()._lease_sync(queues, limit, lease_ms)
        if rows:
            worker = f"worker-{id(self)}"
            self._db.execute(
                "UPDATE lssm_jobs SET lease_token = ? WHERE lease_token = ?", (worker, rows[0].token)
            )
            rows = [attrs.evolve(row, token=worker) for row in rows]
        return rows, due


class SqliteExtendManyCountsRows(SqliteBackend):
    """``extend_many`` through one ``executemany``: it knows how many leases it extended, not which."""

    def _extend_many_sync(self, leases: Sequence[tuple[str, str]], lease_ms: int) -> list[bool]:
        until = time.time() + lease_ms / 1000
        extended = self._db.executemany(
            f"UPDATE lssm_jobs SET lease_until = ? WHERE {_HELD}", [(until, *lease) for lease in leases]
        ).rowcount
        return [extended > 0] * len(leases)


# -- live workers --------------------------------------------------------------------------------------------


class WorkersNeverAgeOut(MemoryBackend):
    def _live_workers(self) -> dict[str, tuple[WorkerInfo, float]]:
        return self.store.workers


class HeartbeatRevivesWorkers(MemoryBackend):
    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        await self.register_worker(worker, ttl_ms)
        return True


class HeartbeatKeepsFirstExpiry(MemoryBackend):
    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        live = self._live_workers()
        if worker.id not in live:
            return False
        live[worker.id] = (worker, live[worker.id][1])
        return True


class UnregisterLeavesWorkers(MemoryBackend):
    async def unregister_worker(self, worker_id: str) -> None:
        return None


class HeartbeatKeepsOldRecord(MemoryBackend):
    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        live = self._live_workers()
        if worker.id not in live:
            return False
        live[worker.id] = (live[worker.id][0], self.store.clock() + ttl_ms / 1000)
        return True



# -- the catalogue ---------------------------------------------------------------------------------------------

#: The statement cancelling a held job, which retry and release run first, for a job with a cancel request.
_CANCEL_INSTEAD = "status = 'cancelled', finished_at = ?, updated_at = ?, cancel_requested = 0"

#: The statement picking the jobs a lease takes.
PICK = "SELECT rowid FROM lssm_jobs WHERE status = 'pending'"

class ResultsWithoutStore(MemoryBackend):
    """Declares ``results`` under a name no result store is registered for."""

    name = "memory-without-result-store"


SETTLING = "test_settling_a_lost_lease_changes_nothing"
EXTEND = "test_extend_keeps_the_lease_until_the_job_is_settled"
BATCH = "test_batch_extend_and_ack_settle_each_delivery"
IDLE = "test_idle_worker_waits_instead_of_polling"
WAKE = "test_waiting_worker_wakes_for_a_push_a_due_job_and_a_stop"
FIFO = "test_ready_jobs_of_one_priority_run_first_in_first_out"
COUNTS = "test_counts_by_queue_and_status"
OVERDUE = "test_overdue_scheduled_job_is_reported_pending"
LISTED = "test_dead_letters_are_listed_most_recent_first"
PURGE = "test_purge_deletes_only_the_given_dead_letters"
REPLAY = "test_dead_letter_replay_and_purge"
REPLAY_LATER = "test_replay_honours_run_at_and_keeps_the_dedupe_key"
REPLAY_CONFLICT = "test_replay_refuses_while_a_live_job_holds_the_dedupe_key"
DEAD_GET = "test_dead_lettered_job_is_reported_by_get"
LEASES = "test_concurrent_leases_never_hand_out_one_job_twice"
PUSH_RACE = "test_concurrent_pushes_of_one_dedupe_key_create_one_job"
CANCEL_WAITING = "test_cancel_removes_waiting_jobs"
CANCEL_RUNNING = "test_cancel_stops_a_running_async_handler"
CANCEL_REMOTE = "test_cancel_reaches_a_worker_of_another_queue_object"
CANCEL_SETTLE = "test_settling_a_job_with_a_cancel_request"
PROGRESS = "test_progress_is_stored_rate_limited"
CANCEL_DIED = "test_a_job_whose_worker_died_after_a_cancel_request_is_cancelled"
WORKERS = "test_worker_registry_keeps_records_until_unregistered"
AGE_OUT = "test_workers_that_miss_their_heartbeats_age_out"
ANNOUNCED = "test_a_processing_queue_announces_itself_until_it_stops"
RESULTS = "test_results_round_trip_typed"

MUTANTS: tuple[Mutant, ...] = (
    # lease tokens
    Mutant(
        name="memory-ack-without-token",
        kind="lease tokens",
        defect="ack does not check the lease token",
        caught_by=(SETTLING,),
        make=with_delivery(AckIgnoresToken),
    ),
    Mutant(
        name="memory-retry-without-token",
        kind="lease tokens",
        defect="retry does not check the lease token",
        caught_by=(SETTLING,),
        make=with_delivery(RetryIgnoresToken),
    ),
    Mutant(
        name="memory-dead-letter-without-token",
        kind="lease tokens",
        defect="dead_letter does not check the lease token",
        caught_by=(SETTLING,),
        make=with_delivery(DeadLetterIgnoresToken),
    ),
    Mutant(
        name="memory-release-without-token",
        kind="lease tokens",
        defect="release does not check the lease token",
        caught_by=(SETTLING,),
        make=with_delivery(ReleaseIgnoresToken),
    ),
    Mutant(
        name="memory-extend-without-token",
        kind="lease tokens",
        defect="extend does not check the lease token (it extends whoever holds the job now)",
        caught_by=(SETTLING,),
        make=with_delivery(ExtendIgnoresToken),
    ),
    Mutant(
        name="memory-extend-always-true",
        kind="lease tokens",
        defect="extend always answers True",
        caught_by=(SETTLING,),
        make=with_delivery(ExtendAlwaysTrue),
    ),
    Mutant(
        name="memory-extend-does-nothing",
        kind="lease tokens",
        defect="extend answers True but does not move the expiry",
        caught_by=(EXTEND,),
        make=with_delivery(ExtendDoesNothing),
    ),
    Mutant(
        name="memory-extend-revives-settled-job",
        kind="lease tokens",
        defect="extend of a settled delivery makes its job active again",
        caught_by=(EXTEND,),
        make=with_delivery(ExtendRevivesSettledJob),
    ),
    Mutant(
        name="memory-token-is-the-attempt",
        kind="lease tokens",
        defect="tokens numbered by attempt, reused after a release",
        caught_by=(SETTLING,),
        make=memory(TokenIsTheAttempt),
    ),
    Mutant(
        name="memory-token-per-worker",
        kind="lease tokens",
        defect="one token per backend instance, reused across its leases",
        caught_by=(SETTLING,),
        make=memory(TokenPerWorker),
    ),
    Mutant(
        name="sqlite-settles-without-token",
        kind="lease tokens",
        defect="every settle matches the job id and status, not the token",
        caught_by=(SETTLING,),
        make=sql(Rewrite(_HELD, _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-ack-without-token",
        kind="lease tokens",
        defect="ack does not check the lease token",
        caught_by=(SETTLING,),
        make=sql(Rewrite("status = 'completed'", _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-retry-without-token",
        kind="lease tokens",
        defect="retry does not check the lease token",
        caught_by=(SETTLING,),
        make=sql(Rewrite("last_error = ?", _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-release-without-token",
        kind="lease tokens",
        defect="release does not check the lease token",
        caught_by=(SETTLING,),
        make=sql(Rewrite("attempts = max(attempts - 1, 0)", _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-dead-letter-without-token",
        kind="lease tokens",
        defect="dead_letter does not check the lease token",
        caught_by=(SETTLING,),
        make=sql(Rewrite("INSERT OR REPLACE INTO lssm_dead_letters", _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-extend-without-token",
        kind="lease tokens",
        defect="extend does not check the lease token",
        caught_by=(SETTLING,),
        make=sql(Rewrite("SET lease_until = ? WHERE", _HELD, _ANY_TOKEN)),
    ),
    Mutant(
        name="sqlite-token-per-instance",
        kind="lease tokens",
        defect="the lease token is the instance's, reused across its leases",
        caught_by=(SETTLING,),
        make=sqlite(SqliteTokenPerInstance),
    ),
    # concurrency
    Mutant(
        name="memory-lease-looks-then-takes",
        kind="concurrency",
        defect="lease reads the ready jobs, awaits, then takes them unchecked (no lock)",
        caught_by=(LEASES,),
        make=memory(LeaseLooksThenTakes),
    ),
    Mutant(
        name="sqlite-lease-without-write-lock",
        kind="concurrency",
        defect="lease selects, then updates, outside a write transaction (no row locking)",
        caught_by=(LEASES,),
        make=sql(no_transactions=True, use_returning=False, round_trip_after=PICK),
    ),
    Mutant(
        name="memory-push-checks-then-inserts",
        kind="concurrency",
        defect="push checks the dedupe key, awaits, then inserts without checking again",
        caught_by=(PUSH_RACE,),
        make=memory(PushChecksThenInserts),
    ),
    Mutant(
        name="sqlite-push-outside-the-write-lock",
        kind="concurrency",
        defect="push checks the dedupe key and inserts in separate commits",
        caught_by=(PUSH_RACE,),
        make=sqlite(SqlitePushChecksOutsideTheTransaction),
    ),
    # order
    Mutant(
        name="memory-newest-first",
        kind="order",
        defect="newest run_at first within a priority",
        caught_by=(FIFO,),
        make=memory(store=NewestFirst),
    ),
    Mutant(
        name="memory-ties-newest-first",
        kind="order",
        defect="jobs of one enqueue_many (equal run_at) leased newest first",
        caught_by=(FIFO,),
        make=memory(store=LastPushedFirstAmongEquals),
    ),
    Mutant(
        name="sqlite-newest-first",
        kind="order",
        defect="ORDER BY run_at DESC within a priority",
        caught_by=(FIFO,),
        make=sql(Rewrite("ORDER BY priority DESC", "run_at, created_at", "run_at DESC, created_at DESC")),
    ),
    Mutant(
        name="memory-priority-ignored",
        kind="order",
        defect="priority ignored",
        caught_by=("test_priority_orders_ready_jobs", "test_lease_takes_ready_jobs_up_to_its_limit"),
        make=memory(store=PriorityIgnored),
    ),
    Mutant(
        name="sqlite-lowest-priority-first",
        kind="order",
        defect="ORDER BY priority ascending",
        caught_by=("test_priority_orders_ready_jobs",),
        make=sql(Rewrite("ORDER BY priority DESC", "priority DESC", "priority")),
    ),
    Mutant(
        name="memory-queues-drained-in-order",
        kind="order",
        defect="the first queue with work is drained first, whatever the priorities",
        caught_by=("test_priority_orders_ready_jobs",),
        make=memory(store=QueuesDrainedInOrder),
    ),
    Mutant(
        name="memory-delay-ignored",
        kind="order",
        defect="a delayed job is ready at once",
        caught_by=("test_delayed_job_waits_for_its_time",),
        make=memory(store=DelayIgnored),
    ),
    Mutant(
        name="memory-retry-ignores-run-at",
        kind="order",
        defect="a retry is ready at once",
        caught_by=("test_handler_can_ask_for_a_retry_delay",),
        make=with_delivery(RetryIgnoresRunAt),
    ),
    # leasing
    Mutant(
        name="memory-lease-ignores-limit",
        kind="leasing",
        defect="lease returns more than limit",
        caught_by=("test_lease_takes_ready_jobs_up_to_its_limit", "test_concurrency_is_bounded"),
        make=memory(LeaseIgnoresLimit),
    ),
    Mutant(
        name="memory-lease-ignores-queues",
        kind="leasing",
        defect="lease takes jobs of every queue",
        caught_by=("test_queues_are_separate",),
        make=memory(LeaseIgnoresQueues),
    ),
    Mutant(
        name="memory-attempts-not-counted",
        kind="leasing",
        defect="lease does not count the attempt",
        caught_by=("test_enqueue_then_consume",),
        make=memory(LeaseDoesNotCountAttempts),
    ),
    Mutant(
        name="memory-expired-leases-never-reclaimed",
        kind="leasing",
        defect="a job whose lease expired is never delivered again",
        caught_by=("test_lost_lease_is_delivered_again",),
        make=memory(store=ExpiredLeasesNeverReclaimed),
        slow=True,
    ),
    Mutant(
        name="memory-release-counts-the-attempt",
        kind="leasing",
        defect="release does not give back the attempt",
        caught_by=("test_stop_releases_jobs_that_overrun_the_shutdown_timeout",),
        make=with_delivery(ReleaseCountsAttempt),
    ),
    Mutant(
        name="memory-release-leaves-job-active",
        kind="leasing",
        defect="release does not make the job ready again",
        caught_by=("test_stop_releases_jobs_that_overrun_the_shutdown_timeout",),
        make=with_delivery(ReleaseLeavesJobActive),
    ),
    # reporting
    Mutant(
        name="memory-get-overdue-as-scheduled",
        kind="reporting",
        defect="get reports an overdue scheduled job as scheduled",
        caught_by=(OVERDUE,),
        make=memory(GetShowsStoredStatus),
    ),
    Mutant(
        name="memory-counts-overdue-as-scheduled",
        kind="reporting",
        defect="counts report overdue scheduled jobs as scheduled",
        caught_by=(OVERDUE,),
        make=memory(CountsShowStoredStatus),
    ),
    Mutant(
        name="sqlite-counts-overdue-as-scheduled",
        kind="reporting",
        defect="counts report overdue scheduled jobs as scheduled",
        caught_by=(OVERDUE,),
        make=sql(Rewrite("GROUP BY queue, state", "ELSE 'pending' END", "ELSE status END")),
    ),
    Mutant(
        name="memory-counts-without-dead",
        kind="reporting",
        defect="counts leave out dead jobs",
        caught_by=(COUNTS,),
        make=memory(counts_without(JobStatus.DEAD)),
    ),
    Mutant(
        name="sqlite-counts-without-dead",
        kind="reporting",
        defect="counts leave out dead letters",
        caught_by=(COUNTS,),
        make=sql(Rewrite("'dead', count(*)", "GROUP BY queue", "WHERE 0 GROUP BY queue")),
    ),
    Mutant(
        name="memory-counts-without-completed",
        kind="reporting",
        defect="counts leave out completed jobs",
        caught_by=(COUNTS,),
        make=memory(counts_without(JobStatus.COMPLETED)),
    ),
    Mutant(
        name="memory-counts-without-active",
        kind="reporting",
        defect="counts leave out active jobs",
        caught_by=(COUNTS,),
        make=memory(counts_without(JobStatus.ACTIVE)),
    ),
    Mutant(
        name="memory-push-results-reordered",
        kind="reporting",
        defect="push returns the created jobs' results first",
        caught_by=("test_push_results_follow_the_order_of_the_jobs",),
        make=memory(PushResultsCreatedFirst),
    ),
    Mutant(
        name="sqlite-push-results-reordered",
        kind="reporting",
        defect="push returns the created jobs' results first",
        caught_by=("test_push_results_follow_the_order_of_the_jobs",),
        make=sqlite(SqlitePushResultsCreatedFirst),
    ),
    Mutant(
        name="memory-retry-forgets-error",
        kind="reporting",
        defect="last_error not stored on retry",
        caught_by=("test_retry_waits_scheduled_with_its_error",),
        make=with_delivery(RetryForgetsError),
    ),
    Mutant(
        name="sqlite-retry-forgets-error",
        kind="reporting",
        defect="last_error not stored on retry",
        caught_by=("test_retry_waits_scheduled_with_its_error",),
        make=sql(Rewrite("last_error = ?", "last_error = ?", "last_error = NULL AND ?")),
    ),
    Mutant(
        name="memory-get-expired-lease-as-pending",
        kind="reporting",
        defect="get reports a job whose lease expired as pending",
        caught_by=("test_lost_lease_is_delivered_again",),
        make=memory(GetShowsExpiredLeaseAsPending),
    ),
    Mutant(
        name="memory-get-ignores-dead-jobs",
        kind="reporting",
        defect="get returns None for a dead job",
        caught_by=(DEAD_GET,),
        make=memory(GetIgnoresDeadJobs),
    ),
    Mutant(
        name="memory-dead-job-without-error",
        kind="reporting",
        defect="a dead job's error is kept in its reason only (no last_error)",
        caught_by=(DEAD_GET,),
        make=with_delivery(DeadLetterDropsError),
    ),
    Mutant(
        name="memory-get-dead-of-live-job",
        kind="reporting",
        defect="get_dead returns jobs that are not dead",
        caught_by=(DEAD_GET,),
        make=memory(GetDeadReturnsAnyJob),
    ),
    Mutant(
        name="memory-ack-deletes-job",
        kind="reporting",
        defect="ack deletes the job although completed jobs are to be kept",
        caught_by=("test_enqueue_then_consume",),
        make=with_delivery(AckDeletesJob),
    ),
    Mutant(
        name="memory-push-overwrites-stored-id",
        kind="reporting",
        defect="pushing a stored job id again replaces the job",
        caught_by=("test_pushing_a_stored_job_id_again_stores_nothing",),
        make=memory(PushOverwritesStoredId),
    ),
    # dedupe
    Mutant(
        name="memory-dedupe-key-kept-after-dead-letter",
        kind="dedupe",
        defect="a dead-lettered job keeps its dedupe key",
        caught_by=("test_dedupe_key_is_free_after_dead_lettering",),
        make=dedupe_key_kept_by(DeadLetterKeepsDedupeKey),
    ),
    Mutant(
        name="memory-dedupe-key-kept-after-completion",
        kind="dedupe",
        defect="a completed job keeps its dedupe key",
        caught_by=("test_dedupe_key_returns_the_live_job",),
        make=dedupe_key_kept_by(AckKeepsDedupeKey),
    ),
    Mutant(
        name="sqlite-dedupe-key-of-finished-jobs",
        kind="dedupe",
        defect="the dedupe check matches finished jobs too",
        caught_by=("test_dedupe_key_returns_the_live_job",),
        make=sql(Rewrite("LIMIT 1", "status IN ('scheduled', 'pending', 'active') LIMIT 1", "1 LIMIT 1")),
    ),
    Mutant(
        name="memory-dedupe-key-freed-on-retry",
        kind="dedupe",
        defect="a job waiting for its retry loses its dedupe key",
        caught_by=("test_dedupe_key_is_held_while_running_and_retrying",),
        make=with_delivery(RetryFreesDedupeKey),
    ),
    Mutant(
        name="memory-dedupe-key-freed-on-lease",
        kind="dedupe",
        defect="a running job loses its dedupe key",
        caught_by=("test_dedupe_key_is_held_while_running_and_retrying",),
        make=memory(LeaseFreesDedupeKey),
    ),
    # dead letters
    Mutant(
        name="memory-dead-listed-oldest-first",
        kind="dead letters",
        defect="dead letters listed oldest first",
        caught_by=(LISTED,),
        make=memory(DeadListedOldestFirst),
    ),
    Mutant(
        name="sqlite-dead-listed-oldest-first",
        kind="dead letters",
        defect="dead letters listed oldest first",
        caught_by=(LISTED,),
        make=sql(Rewrite("ORDER BY failed_at DESC", "failed_at DESC, id DESC", "failed_at, id")),
    ),
    Mutant(
        name="memory-dead-list-ignores-offset",
        kind="dead letters",
        defect="list_dead ignores offset",
        caught_by=(LISTED,),
        make=memory(DeadListIgnoresOffset),
    ),
    Mutant(
        name="sqlite-dead-list-ignores-offset",
        kind="dead letters",
        defect="list_dead ignores offset",
        caught_by=(LISTED,),
        make=sql(Rewrite("ORDER BY failed_at DESC", "OFFSET ?", "OFFSET 0 * ?")),
    ),
    Mutant(
        name="memory-dead-list-ignores-limit",
        kind="dead letters",
        defect="list_dead ignores limit",
        caught_by=(LISTED,),
        make=memory(DeadListIgnoresLimit),
    ),
    Mutant(
        name="memory-purge-of-ids-purges-all",
        kind="dead letters",
        defect="purge_dead(ids) deletes every one",
        caught_by=(PURGE,),
        make=memory(PurgeOfIdsPurgesAll),
    ),
    Mutant(
        name="sqlite-purge-of-ids-purges-all",
        kind="dead letters",
        defect="purge_dead(ids) deletes every one",
        caught_by=(PURGE,),
        make=sql(Rewrite("DELETE FROM lssm_dead_letters WHERE id IN", "WHERE id IN", "WHERE 1 OR id IN")),
    ),
    Mutant(
        name="memory-purge-deletes-live-jobs",
        kind="dead letters",
        defect="purge_dead(ids) also deletes live jobs with those ids",
        caught_by=(PURGE,),
        make=memory(PurgeDeletesLiveJobs),
    ),
    Mutant(
        name="memory-purge-counts-ids-given",
        kind="dead letters",
        defect="purge_dead(ids) answers how many ids it was given",
        caught_by=(PURGE,),
        make=memory(PurgeCountsIdsGiven),
    ),
    Mutant(
        name="memory-replay-ignores-run-at",
        kind="dead letters",
        defect="replay makes the job ready at once",
        caught_by=(REPLAY_LATER,),
        make=memory(ReplayIgnoresRunAt),
    ),
    Mutant(
        name="sqlite-replay-ignores-run-at",
        kind="dead letters",
        defect="replay makes the job ready at once",
        caught_by=(REPLAY_LATER,),
        make=sqlite(SqliteReplayIgnoresRunAt),
    ),
    Mutant(
        name="memory-replay-drops-dedupe-key",
        kind="dead letters",
        defect="replay drops the dedupe key",
        caught_by=(REPLAY_LATER,),
        make=memory(ReplayDropsDedupeKey),
    ),
    Mutant(
        name="sqlite-replay-drops-dedupe-key",
        kind="dead letters",
        defect="replay drops the dedupe key",
        caught_by=(REPLAY_LATER,),
        make=sqlite(SqliteReplayDropsDedupeKey),
    ),
    Mutant(
        name="memory-replay-takes-held-dedupe-key",
        kind="dead letters",
        defect="replay takes the dedupe key from the live job holding it",
        caught_by=(REPLAY_CONFLICT,),
        make=memory(ReplayTakesHeldDedupeKey),
    ),
    Mutant(
        name="memory-replay-conflict-loses-dead-letter",
        kind="dead letters",
        defect="a refused replay still takes the job out of the dead letters",
        caught_by=(REPLAY_CONFLICT,),
        make=memory(ReplayConflictLosesDeadLetter),
    ),
    Mutant(
        name="memory-replay-keeps-attempts",
        kind="dead letters",
        defect="replay does not reset attempts",
        caught_by=(REPLAY,),
        make=memory(ReplayKeepsAttempts),
    ),
    Mutant(
        name="memory-replay-of-live-job",
        kind="dead letters",
        defect="replay_dead of a job that is not dead resets it and answers True",
        caught_by=(REPLAY,),
        make=memory(ReplayResetsLiveJobs),
    ),
    Mutant(
        name="memory-dead-letter-body-mangled",
        kind="dead letters",
        defect="the dead letter's body is not kept byte for byte",
        caught_by=("test_undecodable_envelope_is_dead_lettered_verbatim",),
        make=with_delivery(DeadLetterMangledBody),
    ),
    # waiting
    Mutant(
        name="memory-lease-never-waits",
        kind="waiting",
        defect="lease returns at once when idle (a busy loop)",
        caught_by=(IDLE,),
        make=memory(LeaseNeverWaits),
    ),
    Mutant(
        name="memory-lease-polls-every-10ms",
        kind="waiting",
        defect="lease polls every 10 ms while it waits",
        caught_by=(IDLE,),
        make=memory(LeasePollsEvery10ms),
    ),
    Mutant(
        name="sqlite-lease-never-waits",
        kind="waiting",
        defect="lease returns at once when idle",
        caught_by=(IDLE,),
        make=sqlite(SqliteLeaseNeverWaits),
    ),
    Mutant(
        name="memory-lease-ignores-wake",
        kind="waiting",
        defect="wake() does not end a waiting lease",
        caught_by=(WAKE,),
        make=memory(LeaseIgnoresWake),
        slow=True,
    ),
    Mutant(
        name="sqlite-lease-ignores-wake",
        kind="waiting",
        defect="wake() does not end a waiting lease",
        caught_by=(WAKE,),
        make=sqlite(SqliteLeaseIgnoresWake),
        slow=True,
    ),
    Mutant(
        name="memory-lease-ignores-pushes",
        kind="waiting",
        defect="a push does not wake a waiting lease",
        caught_by=(WAKE,),
        make=memory(store=StoreNeverNotifies),
        slow=True,
    ),
    Mutant(
        name="memory-lease-ignores-due-times",
        kind="waiting",
        defect="a waiting lease does not wake when a scheduled job or a lease comes due",
        caught_by=(WAKE,),
        make=memory(store=StoreForgetsDueTimes),
        slow=True,
    ),
    # batch settling
    Mutant(
        name="memory-extend-many-always-true",
        kind="batch settling",
        defect="extend_many answers True for all",
        caught_by=(BATCH,),
        make=memory(ExtendManyAlwaysTrue),
    ),
    Mutant(
        name="memory-extend-many-reordered",
        kind="batch settling",
        defect="extend_many answers in another order",
        caught_by=(BATCH,),
        make=memory(ExtendManyReversed),
    ),
    Mutant(
        name="memory-ack-many-acks-the-first",
        kind="batch settling",
        defect="ack_many acks only the first",
        caught_by=(BATCH,),
        make=memory(AckManyAcksTheFirst),
    ),
    Mutant(
        name="sqlite-extend-many-counts-rows",
        kind="batch settling",
        defect="extend_many answers from the number of rows it changed, the same for every lease",
        caught_by=(BATCH,),
        make=sqlite(SqliteExtendManyCountsRows),
    ),
    # cancelling and progress
    Mutant(
        name="memory-cancel-leaves-job-waiting",
        kind="cancelling",
        defect="cancelling a waiting job answers removed but leaves it to run",
        caught_by=(CANCEL_WAITING,),
        make=memory(CancelLeavesJobWaiting),
    ),
    Mutant(
        name="memory-cancel-ends-running-jobs",
        kind="cancelling",
        defect="cancelling an active job marks it cancelled while its handler keeps running",
        caught_by=(CANCEL_RUNNING, CANCEL_SETTLE),
        make=memory(CancelEndsRunningJobs),
    ),
    Mutant(
        name="memory-counts-without-cancelled",
        kind="cancelling",
        defect="counts leaves cancelled jobs out",
        caught_by=(CANCEL_WAITING,),
        make=memory(counts_without(JobStatus.CANCELLED)),
    ),
    Mutant(
        name="memory-cancel-requests-never-reported",
        kind="cancelling",
        defect="cancel_requested never names a job, so another process's request never reaches its worker",
        caught_by=(CANCEL_REMOTE, CANCEL_SETTLE),
        make=memory(NoCancelRequestsSeen),
    ),
    Mutant(
        name="memory-delivery-cancel-completes",
        kind="cancelling",
        defect="Delivery.cancel acks: a stopped job ends completed",
        caught_by=(CANCEL_RUNNING, CANCEL_SETTLE),
        make=with_delivery(CancelCompletesJob),
    ),
    Mutant(
        name="memory-retry-ignores-cancel-request",
        kind="cancelling",
        defect="a retry of a job with a cancel request schedules it again",
        caught_by=(CANCEL_SETTLE,),
        make=with_delivery(RetryIgnoresCancelRequest),
    ),
    Mutant(
        name="memory-expired-lease-ignores-cancel-request",
        kind="cancelling",
        defect="a job with a cancel request whose worker died is delivered again",
        caught_by=(CANCEL_DIED,),
        make=memory(store=ExpiredLeasesIgnoreCancelRequests),
    ),
    Mutant(
        name="sqlite-expired-lease-ignores-cancel-request",
        kind="cancelling",
        defect="a job with a cancel request whose worker died is made pending again",
        caught_by=(CANCEL_DIED,),
        make=sql(
            Rewrite("status = CASE WHEN cancel_requested THEN", "WHEN cancel_requested THEN", "WHEN 0 THEN")
        ),
    ),
    Mutant(
        name="memory-progress-not-stored",
        kind="progress",
        defect="set_progress answers True but stores nothing",
        caught_by=(PROGRESS,),
        make=memory(ProgressNotStored),
    ),
    Mutant(
        name="memory-progress-after-settle",
        kind="progress",
        defect="set_progress also changes a finished job",
        caught_by=(PROGRESS,),
        make=memory(ProgressStoredAfterSettle),
    ),
    Mutant(
        name="sqlite-cancel-requests-never-reported",
        kind="cancelling",
        defect="cancel_requested looks for jobs without a request",
        caught_by=(CANCEL_REMOTE, CANCEL_SETTLE),
        make=sql(
            Rewrite(
                "AND status = 'active' AND cancel_requested",
                "AND cancel_requested",
                "AND NOT cancel_requested",
            )
        ),
    ),
    Mutant(
        name="sqlite-retry-and-release-ignore-cancel-request",
        kind="cancelling",
        defect="a retry or release of a job with a cancel request makes it waiting again",
        caught_by=(CANCEL_SETTLE,),
        make=sql(Rewrite(_CANCEL_INSTEAD, " AND cancel_requested", " AND 0")),
    ),
    # live workers
    Mutant(
        name="memory-workers-never-age-out",
        kind="live workers",
        defect="records never expire: listed and renewed after their time to live passed",
        caught_by=(AGE_OUT,),
        make=memory(WorkersNeverAgeOut),
    ),
    Mutant(
        name="sqlite-workers-never-age-out",
        kind="live workers",
        defect="list_workers lists workers whose time to live passed",
        caught_by=(AGE_OUT,),
        make=sql(Rewrite("SELECT id, info FROM lssm_workers", "WHERE expires_at > ?", "WHERE ? IS NOT NULL")),
    ),
    Mutant(
        name="memory-heartbeat-revives-workers",
        kind="live workers",
        defect="a heartbeat stores the record of a worker that aged out or was unregistered",
        caught_by=(WORKERS, AGE_OUT),
        make=memory(HeartbeatRevivesWorkers),
    ),
    Mutant(
        name="sqlite-heartbeat-revives-workers",
        kind="live workers",
        defect="a heartbeat renews a record whose time to live passed",
        caught_by=(AGE_OUT,),
        make=sql(Rewrite("UPDATE lssm_workers", "AND expires_at > ?", "AND ? IS NOT NULL")),
    ),
    Mutant(
        name="memory-heartbeat-keeps-first-expiry",
        kind="live workers",
        defect="a heartbeat does not extend the time to live",
        caught_by=(AGE_OUT,),
        make=memory(HeartbeatKeepsFirstExpiry),
    ),
    Mutant(
        name="memory-heartbeat-keeps-old-record",
        kind="live workers",
        defect="a heartbeat extends the record but keeps its old content",
        caught_by=(WORKERS,),
        make=memory(HeartbeatKeepsOldRecord),
    ),
    Mutant(
        name="memory-unregister-leaves-workers",
        kind="live workers",
        defect="unregister_worker removes nothing (a stopped worker stays listed until it ages out)",
        caught_by=(WORKERS, ANNOUNCED),
        make=memory(UnregisterLeavesWorkers),
    ),
    Mutant(
        name="sqlite-unregister-leaves-workers",
        kind="live workers",
        defect="unregister_worker removes nothing",
        caught_by=(WORKERS, ANNOUNCED),
        make=sql(Rewrite("DELETE FROM lssm_workers WHERE id = ?", "WHERE id = ?", "WHERE id = ? AND 0")),
    ),
    # results
    Mutant(
        name="memory-results-without-a-store",
        kind="results",
        defect="declares the results capability, but no result store is registered for its name",
        caught_by=(RESULTS,),
        make=memory(ResultsWithoutStore),
    ),
)
