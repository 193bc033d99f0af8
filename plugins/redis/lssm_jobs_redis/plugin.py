"""The lssm-jobs plugin of this distribution (entry point ``redis`` in group ``lssm_jobs.plugins``)."""

from __future__ import annotations

from typing import Any

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import EventSinkSpec, QueueBackendSpec, SchedulerStoreSpec

from lssm_jobs_redis.backend import OPTIONS_HELP, RedisBackend
from lssm_jobs_redis.events import RedisEventSink
from lssm_jobs_redis.scheduler_store import RedisSchedulerStore


@hookimpl
def lssm_jobs_queue_backends() -> list[QueueBackendSpec]:
    return [
        QueueBackendSpec(
            name="redis",
            factory=RedisBackend.from_options,
            capabilities=RedisBackend.capabilities,
            description="Redis, Valkey, Redis Cluster, Sentinel: atomic batched leases, hand-off to idle workers",
            options_help=OPTIONS_HELP,
        )
    ]


@hookimpl
def lssm_jobs_event_sinks() -> list[EventSinkSpec]:
    return [
        EventSinkSpec(
            name="redis",
            factory=RedisEventSink.from_options,
            description="publishes every lifecycle event as JSON on a Redis pub/sub channel",
        )
    ]


@hookimpl
def lssm_jobs_scheduler_stores() -> list[SchedulerStoreSpec]:
    return [
        SchedulerStoreSpec(
            name="redis",
            factory=RedisSchedulerStore.create,
            backend="redis",
            description="schedule rows and tick claims in the Redis queue's prefix (Lua-atomic claims)",
        )
    ]


@hookimpl
def lssm_jobs_job_ledgers() -> list[Any]:
    from lssm_jobs_redis.ledger import ledger_specs  # the job ledger (see lssm_jobs_redis.ledger)

    return ledger_specs()


@hookimpl
def lssm_jobs_result_stores() -> list[Any]:
    from lssm_jobs_redis.result_store import (
        result_store_specs,  # the result store (lssm_jobs_redis.result_store)
    )

    return result_store_specs()
