"""The worker endpoint: what every front end (standalone server, ASGI app, WSGI adapter) does with a request.

One POST from Cloud Tasks carries one job. In order:

1. stopping: **503** (Cloud Tasks delivers it again, to this worker after a restart or to another);
2. credentials (:mod:`lssm_jobs_gcp_tasks.auth`): **401/403**, logged without the token; no handler runs;
3. the lssm-jobs headers the backend set on the task (job id, generation): **400** without them;
4. a queue this worker does not serve (``--queues``): **421**;
5. ``concurrency`` requests running already: **429** with ``Retry-After`` (Cloud Tasks backs off);
6. the ledger's claim (:meth:`~lssm_jobs.ledger.JobLedger.begin`): a duplicate of a finished job, a
   superseded task or an unknown job is answered **200** and dropped; a job another request holds (409),
   a task newer than the ledger knows (409) or one not yet due (503 with ``Retry-After``) is delivered again
   later; the ledger unreachable gives **503**;
7. otherwise the dispatcher runs the job and settles it through the ledger: completed, retried (a successor
   task at the backoff time) or dead-lettered answers **200**; released on stop **503**; a settle that could
   not be written **500** (the task comes back; the ledger lease decides who runs it).

Headers are matched case-insensitively (callers pass them lowercased).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
from lssm_jobs.backends.base import ConsumeOptions, Delivery, Dispatch, LeaseGuard
from lssm_jobs.consumer import cancel_for_stop, keep_leases_alive
from lssm_jobs.ledger import Claim, ClaimOutcome, JobLedger

from lssm_jobs_gcp_tasks.auth import RequestVerifier

log = logging.getLogger("lssm_jobs_gcp_tasks.endpoint")
auth_log = logging.getLogger("lssm_jobs_gcp_tasks.auth")

JOB_ID_HEADER = "x-lssm-job-id"
GENERATION_HEADER = "x-lssm-job-generation"
QUEUE_HEADER = "x-lssm-job-queue"


@attrs.frozen(kw_only=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _answer(status: int, text: str, *, retry_after: float | None = None) -> Response:
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/plain; charset=utf-8"),)
    if retry_after is not None:
        headers += (("retry-after", str(max(1, math.ceil(retry_after)))),)
    if status == 401:
        headers += (("www-authenticate", "Bearer"),)
    return Response(status=status, body=text.encode() + b"\n", headers=headers)


class TaskBackend(Protocol):
    """What the endpoint uses of :class:`~lssm_jobs_gcp_tasks.backend.CloudTasksBackend`: its ledger, its
    clock tolerance, and creating a retry's task. (The backend makes endpoints, so the endpoint knows it
    by this much only.)"""

    @property
    def ledger(self) -> JobLedger: ...

    @property
    def clock_tolerance(self) -> float: ...

    async def create_successor(
        self, job_id: str, queue: str, body: bytes, run_at: float, generation: int
    ) -> None: ...


class TaskDelivery(Delivery):
    """A job claimed from the ledger for one request. ``outcome`` says how it was settled (for the reply)."""

    def __init__(self, backend: TaskBackend, claim: Claim, lease_ms: int) -> None:
        assert claim.token is not None
        self._backend = backend
        self._claim = claim
        self._token = claim.token
        self._successor_created = False
        self.id = claim.job_id
        self.attempt = claim.attempt
        self.body = claim.body
        self.queue = claim.queue
        self.lease_ms = lease_ms
        self.outcome: str | None = None  # ack | retry | retry-in-place | dead | release | lost
        self.retry_after: float | None = None

    def _settled(self, written: bool, outcome: str) -> None:
        if written:
            self.outcome = outcome
        else:
            self.outcome = "lost"
            log.warning(
                "job %s: %s ignored, its ledger lease had expired (another delivery holds it)",
                self.id,
                outcome,
            )

    async def ack(self) -> None:
        self._settled(await self._backend.ledger.complete(self.id, self._token), "ack")

    async def retry(self, *, run_at: float, error: str) -> None:
        generation: int | None = self._claim.next_generation
        if not self._successor_created:
            try:
                await self._backend.create_successor(
                    self.id, self.queue, self.body, run_at, self._claim.next_generation
                )
                self._successor_created = True
            except Exception as failure:
                # The job still runs at run_at: this task is answered 503 and comes back; until run_at the
                # ledger answers NOT_DUE.
                log.warning(
                    "job %s: creating its retry task failed (%s); the current task carries the retry",
                    self.id,
                    type(failure).__name__,
                )
                generation = None
        written = await self._backend.ledger.reschedule(
            self.id, self._token, run_at=run_at, error=error, generation=generation
        )
        self._settled(written, "retry" if generation is not None else "retry-in-place")
        if generation is None:
            self.retry_after = max(run_at - time.time(), 1.0)

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        written = await self._backend.ledger.dead_letter(
            self.id, self._token, reason=reason, error=error, traceback=traceback
        )
        self._settled(written, "dead")

    async def release(self) -> None:
        self._settled(await self._backend.ledger.release(self.id, self._token), "release")

    async def extend(self, lease_ms: int) -> bool:
        return await self._backend.ledger.extend(self.id, self._token, lease_ms=lease_ms)


class TaskEndpoint:
    """Turns Cloud Tasks requests into dispatched jobs (see the module docstring). One per worker; the front
    ends call :meth:`handle`, then :meth:`drain` on stop."""

    def __init__(
        self,
        backend: TaskBackend,
        dispatch: Dispatch,
        options: ConsumeOptions,
        verifier: RequestVerifier,
    ) -> None:
        self.backend = backend
        self.dispatch = dispatch
        self.options = options
        self.verifier = verifier
        self.queues = frozenset(options.queues) if options.queues else None
        self.stopping = False
        self.in_flight: dict[asyncio.Future[None], Delivery] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self.refused = 0  # requests refused for their credentials (for tests and metrics)
        self.slots_taken = 0  # requests past the concurrency check and not answered yet

    def start(self) -> None:
        """Keep the ledger leases of running jobs alive (call from the event loop that serves requests)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(keep_leases_alive(self.in_flight, self.options.lease_ms))

    async def handle(
        self, method: str, headers: Mapping[str, str], body: bytes, *, client: str | None = None
    ) -> Response:
        """Answer one request. ``headers`` must have lowercase names."""
        if method != "POST":
            return _answer(405, "only POST")
        if self.stopping:
            return _answer(503, "worker stopping", retry_after=1)
        verdict = await self.verifier.verify(headers)
        if verdict.status:
            self.refused += 1
            auth_log.warning(
                "refused a request from %s (%s): %s",
                client or "?",
                headers.get("x-cloudtasks-taskname", "no task name"),
                verdict.reason,
            )
            return _answer(verdict.status, "unauthorized" if verdict.status == 401 else "forbidden")
        job_id = headers.get(JOB_ID_HEADER)
        try:
            generation = int(headers.get(GENERATION_HEADER, ""))
        except ValueError:
            generation = 0
        if not job_id or generation < 1:
            log.error(
                "request for task %s carries no lssm-jobs job id/generation headers: not a task of this backend",
                headers.get("x-cloudtasks-taskname", "?"),
            )
            return _answer(400, "missing X-Lssm-Job-Id / X-Lssm-Job-Generation")
        queue = headers.get(QUEUE_HEADER, "")
        if self.queues is not None and queue not in self.queues:
            return _answer(421, f"this worker does not serve queue {queue!r}", retry_after=5)
        if self.slots_taken >= self.options.concurrency:
            return _answer(429, "worker at its concurrency limit", retry_after=1)
        self.slots_taken += 1  # taken before the first await, so concurrent requests count each other
        try:
            return await self._claim_and_run(job_id, generation)
        finally:
            self.slots_taken -= 1

    async def _claim_and_run(self, job_id: str, generation: int) -> Response:
        try:
            claim = await self.backend.ledger.begin(
                job_id,
                generation=generation,
                lease_ms=self.options.lease_ms,
                tolerance=self.backend.clock_tolerance,
            )
        except Exception as error:
            log.error("ledger unreachable for job %s: %s", job_id, type(error).__name__)
            return _answer(503, "ledger unavailable", retry_after=2)
        if claim.outcome is not ClaimOutcome.RUN:
            return self._not_run(claim)
        delivery = TaskDelivery(self.backend, claim, self.options.lease_ms)
        # The dispatcher and the heartbeat get the guard: no lease extension overlaps the settle (which
        # would find the job no longer held and report a lost lease); the reply reads the delivery's outcome.
        guard = LeaseGuard(delivery)
        task: asyncio.Future[None] = asyncio.ensure_future(self.dispatch(guard))
        self.in_flight[task] = guard
        # Forgotten when the job settles, not when this request ends: a dropped connection must not hide a
        # running job from drain().
        task.add_done_callback(lambda done: self.in_flight.pop(done, None))
        await asyncio.wait({task})
        if delivery.outcome in ("ack", "retry", "dead", "lost"):
            return _answer(200, delivery.outcome)
        if delivery.outcome == "retry-in-place":
            return _answer(503, "retry carried by this task", retry_after=delivery.retry_after)
        if delivery.outcome == "release":
            return _answer(503, "released", retry_after=1)
        return _answer(500, "the job's outcome could not be recorded; deliver again")

    def _not_run(self, claim: Claim) -> Response:
        outcome = claim.outcome
        if outcome is ClaimOutcome.UNKNOWN:
            log.warning("task for unknown job %s dropped (never recorded, discarded or purged)", claim.job_id)
        if outcome in (ClaimOutcome.FINISHED, ClaimOutcome.SUPERSEDED, ClaimOutcome.UNKNOWN):
            return _answer(200, f"not run: {outcome.value}")
        if outcome is ClaimOutcome.NOT_DUE:
            return _answer(503, "not due yet", retry_after=claim.run_at - time.time())
        return _answer(409, f"not run now: {outcome.value}", retry_after=1)

    async def drain(self, timeout: float) -> None:
        """Refuse new requests, let running ones finish within ``timeout`` seconds, then cancel the rest (the
        dispatcher releases their jobs, answered 503 so Cloud Tasks delivers them again)."""
        self.stopping = True
        if self.in_flight:
            _, late = await asyncio.wait(set(self.in_flight), timeout=timeout)
            for task in late:
                log.warning(
                    "job %s did not finish within the shutdown timeout; releasing it", self.in_flight[task].id
                )
                cancel_for_stop(task)
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat


def lower_headers(pairs: Any) -> dict[str, str]:
    """Header pairs (bytes or str) as a dict with lowercase names; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        if key not in headers:
            headers[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return headers
