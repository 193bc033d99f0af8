"""OpenTelemetry traces of jobs: one span per enqueue, one per run, linked through the job's ``meta``.

``instrument(queue)`` makes a queue:

* on **enqueue**, start a ``PRODUCER`` span ``enqueue <type>`` (child of whatever span is current, e.g. the
  web request) and inject its context into the job's ``meta`` with the configured propagator (W3C
  ``traceparent`` by default), through :attr:`JobQueue.meta_providers`. The span ends when the backend
  stored the job (the ``job.enqueued`` event), with ``lssm_jobs.deduplicated`` when a live job was returned;
* on **each run**, start a ``CONSUMER`` span ``process <type>`` whose parent is extracted from ``meta``, so
  every attempt (first run, retries, a run after a crashed worker) is a child of the enqueue span in one
  trace. The span is current while the handler runs, so spans the handler makes (HTTP calls, queries)
  nest under it; a handler exception is recorded on it with status ERROR.

Tracing is active only when the ``opentelemetry-api`` package is installed (``lssm-jobs[opentelemetry]``)
and a tracer provider is configured (by your code, or ``opentelemetry-instrument``); ``lssm-jobs worker``
instruments its queue then by itself. Producers call ``instrument(queue)`` on their own queue. Without a
provider nothing is added: no meta, no wrapped handlers, no cost.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lssm_jobs.events import Event, EventSink

if TYPE_CHECKING:
    from lssm_jobs.jobs import Job
    from lssm_jobs.queue import JobQueue

log = logging.getLogger("lssm_jobs.observability")

INSTRUMENTATION_NAME = "lssm_jobs"
#: Enqueue spans waiting for their ``job.enqueued`` event; past this many (enqueues that failed, whose
#: event never comes) the oldest are ended.
MAX_OPEN_ENQUEUE_SPANS = 100_000


def opentelemetry_available() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def tracing_configured() -> bool:
    """Whether opentelemetry is installed and a real tracer provider is set (not the default no-op)."""
    if not opentelemetry_available():
        return False
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    # The no-op provider, or the proxy that stands in until one is set: spans would be dropped.
    return not isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider))


def instrument(queue: JobQueue, *, tracer_provider: Any = None) -> Tracing | None:
    """Trace ``queue``'s enqueues and runs (see the module docstring). Call it after registering handlers.

    :param tracer_provider: an explicit provider (tests, several providers); else the global one.
    :returns: the instrumentation, or None when opentelemetry is missing or no provider is configured.
    """
    if tracer_provider is None and not tracing_configured():
        return None
    if not opentelemetry_available():
        return None
    tracing = Tracing(queue, tracer_provider=tracer_provider)
    tracing.attach()
    return tracing


class Tracing(EventSink):
    """The instrumentation of one queue: its meta provider, its traced handlers and its event sink."""

    def __init__(self, queue: JobQueue, *, tracer_provider: Any = None) -> None:
        from opentelemetry import trace

        try:
            from importlib.metadata import version

            lib_version = version("lssm-jobs")
        except Exception:
            lib_version = None
        self.queue = queue
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, lib_version, tracer_provider=tracer_provider)
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._attached = False

    def attach(self) -> None:
        if self._attached:
            return
        self._attached = True
        self.queue.meta_providers.append(self._inject)
        self.queue.events.add_sink(self)
        for name, handler in list(self.queue.handlers.items()):
            if not getattr(handler, "_lssm_jobs_traced", False):
                self.queue.handlers[name] = self._traced(handler)

    # -- enqueue --------------------------------------------------------------------------------------------

    def _inject(self, job_id: str, job_type: str, queue: str) -> Mapping[str, str]:
        from opentelemetry import propagate, trace

        span = self.tracer.start_span(
            f"enqueue {job_type}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "lssm-jobs",
                "messaging.operation.type": "send",
                "messaging.destination.name": queue,
                "messaging.message.id": job_id,
                "lssm_jobs.job_type": job_type,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self._open[job_id] = span
        while len(self._open) > MAX_OPEN_ENQUEUE_SPANS:
            _, stale = self._open.popitem(last=False)
            stale.end()
        return carrier

    def accepts(self, name: str) -> bool:
        return name == "job.enqueued" and bool(self._open)

    async def handle(self, event: Event) -> None:
        span = self._open.pop(getattr(event, "job_id", ""), None)
        if span is not None:
            span.set_attribute("lssm_jobs.deduplicated", bool(getattr(event, "deduplicated", False)))
            span.end()

    async def close(self) -> None:
        while self._open:
            _, span = self._open.popitem(last=False)
            span.end()

    # -- runs -----------------------------------------------------------------------------------------------

    def _span(self, job: Job[Any]) -> Any:
        from opentelemetry import propagate, trace

        parent = propagate.extract(dict(job.meta)) if job.meta else None
        return self.tracer.start_as_current_span(
            f"process {job.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "lssm-jobs",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "lssm_jobs.job_type": job.type,
                "lssm_jobs.attempt": job.attempt,
                "lssm_jobs.max_retries": job.max_retries,
            },
        )

    def _traced(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        if _is_async(handler):

            async def traced_async(job: Job[Any]) -> Any:
                with self._span(job):
                    result = handler(job)
                    if inspect.isawaitable(result):
                        result = await result
                    return result

            traced: Callable[..., Any] = traced_async
        else:

            def traced_sync(job: Job[Any]) -> Any:
                with self._span(job):
                    return handler(job)

            traced = traced_sync
        functools.update_wrapper(traced, handler, updated=())
        traced._lssm_jobs_traced = True  # type: ignore[attr-defined]
        return traced


def _is_async(handler: Callable[..., Any]) -> bool:
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    )
