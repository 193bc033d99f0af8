"""Every built-in registration, in one place: the memory and sqlite backends, the json serializer, the
logging sink, the cron/interval/date triggers, the memory/sqlite scheduler stores, job ledgers and result
stores.

They register through the same hooks as third-party plugins, as seven plugins (:data:`BUILTIN_PLUGINS`,
loaded by :mod:`lssm_jobs.plugins` before any entry point) so each can be blocked by name with
``LSSM_JOBS_DISABLE_PLUGINS`` and replaced by a plugin of one's own. A hook imports what it registers when
it is called, so a blocked built-in is never imported.
"""

from __future__ import annotations

from typing import Any

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import (
    EventSinkSpec,
    JobLedgerSpec,
    QueueBackendSpec,
    ResultStoreSpec,
    SchedulerStoreSpec,
    SerializerSpec,
    TriggerSpec,
)


class MemoryPlugin:
    """Plugin ``memory``: the in-process backend."""

    @hookimpl
    def lssm_jobs_queue_backends(self) -> list[QueueBackendSpec]:
        from lssm_jobs.backends.memory import MemoryBackend

        return [
            QueueBackendSpec(
                name="memory",
                factory=MemoryBackend,
                capabilities=MemoryBackend.capabilities,
                description="in-process queue for development and tests; not durable",
                options_help={
                    "store": "a MemoryStore to share between queues of one process (default: a new one)",
                    "completed_retention": "seconds completed jobs stay readable (default 3600; 0: delete)",
                    "completed_max": "most completed jobs kept (default 10000; 0: no limit)",
                },
            )
        ]


class SqlitePlugin:
    """Plugin ``sqlite``: the durable, embedded backend."""

    @hookimpl
    def lssm_jobs_queue_backends(self) -> list[QueueBackendSpec]:
        from lssm_jobs.backends.sqlite import SqliteBackend

        return [
            QueueBackendSpec(
                name="sqlite",
                factory=SqliteBackend,
                capabilities=SqliteBackend.capabilities,
                description="durable queue in one sqlite file (WAL), shared by processes on this machine",
                options_help={
                    "path": "database file (created if missing)",
                    "url": "sqlite:///relative.db or sqlite:////absolute.db, instead of path",
                    "busy_timeout": "seconds to wait for another process's write lock (default 5)",
                    "completed_retention": "seconds completed jobs stay readable (default 3600; 0: delete)",
                    "prune_interval": "seconds between prunes of expired completed jobs (default 60)",
                    "synchronous": "normal (default; survives crashes) or full (also survives power loss)",
                },
            )
        ]


def _logging_sink(**options: Any) -> Any:
    from lssm_jobs.events import LoggingEventSink

    return LoggingEventSink(**options)


class CorePlugin:
    """Plugin ``builtins``: the json serializer and the logging event sink."""

    @hookimpl
    def lssm_jobs_serializers(self) -> list[SerializerSpec]:
        from lssm_jobs.serialization import JsonSerializer

        return [
            SerializerSpec(
                name="json",
                content_type=JsonSerializer.content_type,
                factory=JsonSerializer,
                description="compact UTF-8 JSON (the default; never pickle)",
            )
        ]

    @hookimpl
    def lssm_jobs_event_sinks(self) -> list[EventSinkSpec]:
        return [
            EventSinkSpec(
                name="logging",
                factory=_logging_sink,
                description="logs lifecycle events to the 'lssm_jobs.events' logger (no payloads)",
            )
        ]


class SchedulerPlugin:
    """Plugin ``scheduler``: the trigger kinds and the scheduler stores of the built-in backends."""

    @hookimpl
    def lssm_jobs_schedule_triggers(self) -> list[TriggerSpec]:
        from lssm_jobs.scheduler import triggers

        # Order matters only for expressions several kinds accept; these three accept disjoint ones.
        return [
            TriggerSpec(
                name="date",
                factory=triggers.date_trigger_factory,
                accepts=triggers.looks_like_date,
                description="one-off: fires once at a datetime",
            ),
            TriggerSpec(
                name="interval",
                factory=triggers.interval_trigger_factory,
                accepts=triggers.looks_like_interval,
                description="fixed interval: timedelta, seconds, or 'every 30s' (option start=)",
            ),
            TriggerSpec(
                name="cron",
                factory=triggers.cron_trigger_factory,
                accepts=triggers.looks_like_cron,
                description="cron: 5 fields, 6 with seconds last, or @hourly/@daily/...; time zones with DST "
                "rules",
            ),
        ]

    @hookimpl
    def lssm_jobs_scheduler_stores(self) -> list[SchedulerStoreSpec]:
        from lssm_jobs.scheduler.memory_store import memory_store_factory
        from lssm_jobs.scheduler.sqlite_store import sqlite_store_factory

        return [
            SchedulerStoreSpec(
                name="memory",
                factory=memory_store_factory,
                backend="memory",
                description="in-process; schedulers on one memory queue coordinate; not durable",
            ),
            SchedulerStoreSpec(
                name="sqlite",
                factory=sqlite_store_factory,
                backend="sqlite",
                description="tables lssm_schedules/lssm_schedule_claims in the sqlite queue's file (option "
                "path=)",
            ),
        ]


def _prometheus_sink(**options: Any) -> Any:
    from lssm_jobs.observability.prometheus import PrometheusSink

    return PrometheusSink(**options)


class ObservabilityPlugin:
    """Plugin ``observability``: the operations event sinks (their libraries are optional extras)."""

    @hookimpl
    def lssm_jobs_event_sinks(self) -> list[EventSinkSpec]:
        return [
            EventSinkSpec(
                name="prometheus",
                factory=_prometheus_sink,
                description="Prometheus counters, histograms and gauges per job type and queue "
                "(needs lssm-jobs[prometheus])",
            )
        ]


def _memory_ledger(**options: Any) -> Any:
    from lssm_jobs.ledger.memory import MemoryLedger

    return MemoryLedger(**options)


def _sqlite_ledger(**options: Any) -> Any:
    from lssm_jobs.ledger.sqlite import SqliteLedger

    return SqliteLedger(**options)


class LedgersPlugin:
    """Plugin ``ledgers``: the memory and sqlite job ledgers (records and dead letters of push and stream
    backends)."""

    @hookimpl
    def lssm_jobs_job_ledgers(self) -> list[JobLedgerSpec]:
        return [
            JobLedgerSpec(
                name="memory",
                factory=_memory_ledger,
                description="job records in this process's memory (development and tests; not durable)",
                options_help={
                    "namespace": "name of a process-wide store to share between ledgers",
                    "completed_retention": "seconds completed jobs stay readable (default 3600)",
                },
            ),
            JobLedgerSpec(
                name="sqlite",
                factory=_sqlite_ledger,
                description="job records in a sqlite file (WAL), shared by processes on this machine",
                options_help={
                    "path": "database file (created if missing)",
                    "url": "sqlite:///relative.db or sqlite:////absolute.db, instead of path",
                    "completed_retention": "seconds completed jobs stay readable (default 3600)",
                },
            ),
        ]


def _memory_result_store(**options: Any) -> Any:
    from lssm_jobs.results.memory import memory_result_store_factory

    return memory_result_store_factory(**options)


def _sqlite_result_store(**options: Any) -> Any:
    from lssm_jobs.results.sqlite import sqlite_result_store_factory

    return sqlite_result_store_factory(**options)


class ResultsPlugin:
    """Plugin ``results``: the result stores of the memory and sqlite backends."""

    @hookimpl
    def lssm_jobs_result_stores(self) -> list[ResultStoreSpec]:
        return [
            ResultStoreSpec(
                name="memory",
                factory=_memory_result_store,
                backend="memory",
                description="results in this process's memory, shared by queues on one memory store",
                options_help={"namespace": "name of a process-wide store to share between queues"},
            ),
            ResultStoreSpec(
                name="sqlite",
                factory=_sqlite_result_store,
                backend="sqlite",
                description="table lssm_results in the sqlite queue's file (or the file given as path=)",
                options_help={
                    "path": "database file (default: the sqlite queue's own file)",
                    "url": "sqlite:///relative.db or sqlite:////absolute.db, instead of path",
                },
            ),
        ]


#: The built-in plugins by name, registered in this order before any entry point.
BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (
    ("memory", MemoryPlugin()),
    ("sqlite", SqlitePlugin()),
    ("builtins", CorePlugin()),
    ("scheduler", SchedulerPlugin()),
    ("observability", ObservabilityPlugin()),
    ("ledgers", LedgersPlugin()),
    ("results", ResultsPlugin()),
)
