"""A blocking facade so synchronous code (a Flask or Django view, a script) can enqueue and inspect jobs
without an event loop of its own.

The queue lives on a private event loop in a daemon thread; every call is handed to it and waited for.
Safe to share between threads (e.g. one per web process)::

    from lssm_jobs.blocking import open_blocking_queue
    jobs = open_blocking_queue("sqlite", path="jobs.db")

    def signup_view(request):
        jobs.enqueue("email.send", {"to": request.email, "subject": "Welcome", "body": "..."})
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

from lssm_jobs.backends.base import DeadLetter, OutgoingJob, PushResult
from lssm_jobs.cancellation import CancelResult
from lssm_jobs.errors import QueueClosedError
from lssm_jobs.events import JobEnqueued
from lssm_jobs.jobs import Job, JobStatus, JobType
from lssm_jobs.producer import EnqueueRequest
from lssm_jobs.queue import JobQueue, open_queue

T = TypeVar("T")
P = TypeVar("P")
#: A job type's result type (``JobType[P, ResultT]``).
ResultT = TypeVar("ResultT")
R = TypeVar("R")


class BlockingQueue:
    """Synchronous methods mirroring :class:`~lssm_jobs.queue.JobQueue`'s producer and inspection API.

    :param timeout: seconds a call may take before ``TimeoutError``; the call is then cancelled (work the
        backend had already done, such as a push it received, stays done).
    """

    def __init__(self, queue: JobQueue, *, timeout: float = 30.0) -> None:
        self.queue = queue
        self.timeout = timeout
        self._pusher: Callable[[Sequence[OutgoingJob]], list[PushResult]] | None = None
        self._pusher_known = False
        self._pusher_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lssm-jobs-blocking", daemon=True)
        self._thread.start()
        self._closed = False

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._within(coroutine, self.timeout)

    def _within(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coroutine`` on the private loop, waiting ``timeout`` seconds at most (None: no bound)."""
        if self._closed:
            coroutine.close()
            raise QueueClosedError("this blocking queue was closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # Cancelled, not left running: callers that keep timing out (a stalled backend) must not pile
            # up work on the private loop, so at most one call per calling thread is ever in flight.
            future.cancel()
            raise

    @overload
    def enqueue(
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
    def enqueue(
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

    def enqueue(
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
        """See :meth:`JobQueue.enqueue`. :raises JobValidationError: invalid payload; nothing stored.

        When the backend can push from synchronous code (Redis) and no listener wants ``job.enqueued``
        events, the job is validated, serialized and pushed on the calling thread, without the private
        event loop (no thread switch); otherwise the call runs on that loop.
        """
        pusher = self._direct_pusher()
        if pusher is not None:
            producer = self.queue.producer
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
            (result,) = pusher([producer.outgoing(job, encoded)])
            if result.created:
                return job
            job, _ = self._call(producer.live_duplicate(job, encoded, result))
            return job
        return self._call(
            self.queue.enqueue(
                job_type,
                payload,
                delay_ms=delay_ms,
                run_at=run_at,
                priority=priority,
                dedupe_key=dedupe_key,
                queue=queue,
                max_retries=max_retries,
                timeout_ms=timeout_ms,
                meta=meta,
            )
        )

    def _direct_pusher(self) -> Callable[[Sequence[OutgoingJob]], list[PushResult]] | None:
        if self._closed:
            raise QueueClosedError("this blocking queue was closed")
        if not self._pusher_known:
            with self._pusher_lock:
                if not self._pusher_known:
                    self._call(self.queue.open())
                    self._pusher = self.queue.backend.blocking_pusher()
                    self._pusher_known = True
        if self._pusher is None or self.queue.events.wants(JobEnqueued.name):
            return None
        return self._pusher

    def enqueue_many(
        self, requests: Iterable[EnqueueRequest | tuple[str | JobType[Any], Any]]
    ) -> list[Job[Any]]:
        return self._call(self.queue.enqueue_many(list(requests)))

    def get(self, job_id: str) -> Job[Any] | None:
        return self._call(self.queue.get(job_id))

    @overload
    def result(self, job: Job[Any, R], *, timeout: float | None = None) -> R: ...

    @overload
    def result(self, job: str, *, timeout: float | None = None) -> Any: ...

    def result(self, job: str | Job[Any, Any], *, timeout: float | None = None) -> Any:
        """Wait for a job to finish and return its result, as :meth:`lssm_jobs.queue.JobQueue.result` does.
        ``timeout`` (seconds) replaces this queue's call timeout for the wait; None waits as long as it takes.

        :raises JobFailedError: the job failed for good (dead-lettered).
        :raises ResultTimeoutError: it did not finish within ``timeout``.
        :raises ResultNotFoundError: unknown job id, or its result outlived its retention.
        """
        # The call's own bound leaves the wait its full timeout, plus this queue's timeout for the backend.
        return self._within(
            self.queue.result(job, timeout=timeout), None if timeout is None else timeout + self.timeout
        )

    def counts(self) -> dict[str, dict[JobStatus, int]]:
        return self._call(self.queue.counts())

    def cancel(self, job_id: str) -> CancelResult:
        """:meth:`JobQueue.cancel <lssm_jobs.queue.JobQueue.cancel>` from synchronous code."""
        return self._call(self.queue.cancel(job_id))

    def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return self._call(self.queue.dead_letters.list(limit=limit, offset=offset))

    def replay_dead(self, job_id: str) -> bool:
        return self._call(self.queue.dead_letters.replay(job_id))

    def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        return self._call(self.queue.dead_letters.purge(job_ids))

    def close(self) -> None:
        """Close the queue and stop the private loop."""
        if self._closed:
            return
        try:
            self._call(self.queue.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> BlockingQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_blocking_queue(name: str, *, timeout: float = 30.0, **options: Any) -> BlockingQueue:
    """:func:`~lssm_jobs.queue.open_queue` behind a :class:`BlockingQueue`."""
    return BlockingQueue(open_queue(name, **options), timeout=timeout)
