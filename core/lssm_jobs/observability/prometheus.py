"""Prometheus metrics: an event sink counting what happens to jobs, and queue depth read at scrape time.

Needs ``prometheus-client`` (``pip install 'lssm-jobs[prometheus]'``). Attach the sink by name
(``open_queue(..., sinks=["logging", "prometheus"])``, ``LSSM_JOBS_SINKS``) or let
``lssm-jobs worker --metrics-port`` do it. Metrics, each labelled ``job_type`` and ``queue``:

=====================================  =========  ===========================================================
``lssm_jobs_enqueued_total``           counter    jobs enqueued (a deduplicated enqueue is not counted)
``lssm_jobs_started_total``            counter    runs started (each attempt)
``lssm_jobs_completed_total``          counter    runs that succeeded
``lssm_jobs_retried_total``            counter    runs that failed and were scheduled again
``lssm_jobs_failed_total``             counter    jobs failed for good (retries exhausted, permanent error)
``lssm_jobs_dead_lettered_total``      counter    jobs put in the dead letter queue (also those that could
                                                  not run: unknown type, invalid payload, undecodable)
``lssm_jobs_timed_out_total``          counter    runs stopped by their timeout
``lssm_jobs_cancelled_total``          counter    jobs cancelled (``job.cancelled`` events)
``lssm_jobs_run_seconds``              histogram  run time, also labelled ``outcome`` (completed, retried,
                                                  failed)
``lssm_jobs_queue_wait_seconds``       histogram  from due (run_at or enqueue) to start, per attempt
``lssm_jobs_in_flight``                gauge      runs in progress
``lssm_jobs_queue_depth``              gauge      jobs per ``queue`` and ``state`` (scheduled, pending,
                                                  active, completed, dead), from the backend at scrape time
``lssm_jobs_backend_up``               gauge      1 when that read succeeded
=====================================  =========  ===========================================================

Several worker processes (``--processes N``) write to a per-run directory (prometheus-client's
multiprocess mode) and the supervisor serves their sum on one endpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lssm_jobs.errors import LssmJobsError
from lssm_jobs.events import Event, EventSink
from lssm_jobs.jobs import JobStatus
from lssm_jobs.observability.http import Route

if TYPE_CHECKING:
    from lssm_jobs.queue import JobQueue

JOB_CANCELLED = "job.cancelled"  # the cancellation event, counted as soon as the runtime emits it

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)

_COUNTED = {
    "job.started": "started",
    "job.completed": "completed",
    "job.retrying": "retried",
    "job.failed": "failed",
    "job.dead_lettered": "dead_lettered",
    "job.timed_out": "timed_out",
    JOB_CANCELLED: "cancelled",
}
_OUTCOMES = {"job.completed": "completed", "job.retrying": "retried", "job.failed": "failed"}
_HANDLED = frozenset({"job.enqueued", *_COUNTED})


class MissingExtraError(LssmJobsError):
    """An optional dependency is not installed (the message says which extra brings it)."""


def require_prometheus() -> Any:
    """The ``prometheus_client`` module. :raises MissingExtraError: it is not installed."""
    try:
        import prometheus_client
    except ImportError:
        raise MissingExtraError(
            "Prometheus metrics need prometheus-client: pip install 'lssm-jobs[prometheus]'"
        ) from None
    return prometheus_client


class JobMetrics:
    """The job metrics, registered once per registry (several sinks in one process share them)."""

    def __init__(self, registry: Any) -> None:
        client = require_prometheus()
        labels = ("job_type", "queue")
        self.counters = {
            key: client.Counter(f"lssm_jobs_{key}", help_text, labels, registry=registry)
            for key, help_text in (
                ("enqueued", "Jobs enqueued (deduplicated enqueues not counted)"),
                ("started", "Job runs started (each attempt)"),
                ("completed", "Job runs that succeeded"),
                ("retried", "Job runs that failed and were scheduled again"),
                ("failed", "Jobs failed for good (retries exhausted or a permanent error)"),
                ("dead_lettered", "Jobs put in the dead letter queue"),
                ("timed_out", "Job runs stopped by their timeout"),
                ("cancelled", "Jobs cancelled"),
            )
        }
        self.run_seconds = client.Histogram(
            "lssm_jobs_run_seconds",
            "Run time of job runs, by outcome",
            (*labels, "outcome"),
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = client.Histogram(
            "lssm_jobs_queue_wait_seconds",
            "Time from when a job was due to when a run started",
            labels,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.in_flight = client.Gauge(
            "lssm_jobs_in_flight",
            "Job runs in progress",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )


_metrics: dict[int, JobMetrics] = {}
_metrics_lock = threading.Lock()


def job_metrics(registry: Any = None) -> JobMetrics:
    """The job metrics registered on ``registry`` (prometheus-client's default registry when None)."""
    client = require_prometheus()
    target = client.REGISTRY if registry is None else registry
    with _metrics_lock:
        metrics = _metrics.get(id(target))
        if metrics is None:
            metrics = _metrics[id(target)] = JobMetrics(target)
        return metrics


class PrometheusSink(EventSink):
    """Counts lifecycle events into :class:`JobMetrics` (see the module docstring for the metrics).

    :param registry: a ``prometheus_client.CollectorRegistry``; the default registry when None.
    :raises MissingExtraError: prometheus-client is not installed.
    """

    def __init__(self, registry: Any = None) -> None:
        self.metrics = job_metrics(registry)

    def accepts(self, name: str) -> bool:
        return name in _HANDLED

    async def handle(self, event: Event) -> None:
        job_type = getattr(event, "job_type", None)
        queue = getattr(event, "queue", None)
        if job_type is None or queue is None:
            return
        metrics = self.metrics
        name = event.name
        if name == "job.enqueued":
            if not getattr(event, "deduplicated", False):
                metrics.counters["enqueued"].labels(job_type, queue).inc()
            return
        key = _COUNTED.get(name)
        if key is not None:
            metrics.counters[key].labels(job_type, queue).inc()
        if name == "job.started":
            metrics.in_flight.labels(job_type, queue).inc()
            wait_ms = getattr(event, "wait_ms", None)
            if wait_ms is not None:
                metrics.queue_wait_seconds.labels(job_type, queue).observe(wait_ms / 1000)
            return
        outcome = _OUTCOMES.get(name)
        if outcome is not None:
            metrics.in_flight.labels(job_type, queue).dec()
            duration_ms = getattr(event, "duration_ms", None)
            if duration_ms is not None:
                metrics.run_seconds.labels(job_type, queue, outcome).observe(duration_ms / 1000)


class QueueDepthCollector:
    """A prometheus-client collector reading ``queue.counts()`` at scrape time, on the queue's loop.

    Scrapes come from the HTTP server's thread; the read runs on ``loop`` and is bounded by ``timeout``.
    Create it on the loop's thread.
    """

    def __init__(self, queue: JobQueue, loop: asyncio.AbstractEventLoop, *, timeout: float = 5.0) -> None:
        self.queue = queue
        self.loop = loop
        self.timeout = timeout
        self._loop_thread = threading.get_ident()

    def _families(self) -> tuple[Any, Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "lssm_jobs_queue_depth",
            "Jobs per queue and state, read from the backend at scrape time",
            labels=["queue", "state"],
        )
        up = GaugeMetricFamily("lssm_jobs_backend_up", "1 when the backend answered the queue depth read")
        return depth, up

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        depth, up = self._families()
        counts: dict[str, dict[JobStatus, int]] | None = None
        if threading.get_ident() != self._loop_thread:  # never wait for the loop on the loop itself
            future = asyncio.run_coroutine_threadsafe(
                asyncio.wait_for(self.queue.counts(), self.timeout), self.loop
            )
            try:
                counts = future.result(self.timeout + 1)
            except (concurrent.futures.TimeoutError, Exception):
                future.cancel()
        if counts is not None:
            for queue_name in sorted(counts):
                for status in JobStatus:
                    depth.add_metric([queue_name, status.value], counts[queue_name].get(status, 0))
        up.add_metric([], 1 if counts is not None else 0)
        yield depth
        yield up


def metrics_route(registry: Any) -> Route:
    """The ``/metrics`` route for ``registry`` (Prometheus text format)."""
    client = require_prometheus()

    def answer() -> tuple[int, str, bytes]:
        return 200, client.CONTENT_TYPE_LATEST, client.generate_latest(registry)

    return answer


def multiprocess_registry(path: str) -> Any:
    """A registry summing the metrics that worker processes wrote to ``path`` (multiprocess mode)."""
    client = require_prometheus()
    from prometheus_client import multiprocess

    registry = client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int, path: str) -> None:
    """Drop the live gauges of a worker process that exited (its counters keep counting in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
