"""The built-in trigger kinds (cron, interval, date) and scheduler stores (memory, sqlite), registered
through the same hooks as third-party plugins (``plugins.BUILTIN_PLUGINS`` entry ``"scheduler"``)."""

from __future__ import annotations

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import SchedulerStoreSpec, TriggerSpec
from lssm_jobs.scheduler.memory_store import memory_store_factory
from lssm_jobs.scheduler.sqlite_store import sqlite_store_factory
from lssm_jobs.scheduler.triggers import (
    cron_trigger_factory,
    date_trigger_factory,
    interval_trigger_factory,
    looks_like_cron,
    looks_like_date,
    looks_like_interval,
)


@hookimpl
def lssm_jobs_schedule_triggers() -> list[TriggerSpec]:
    # Order matters only for expressions several kinds accept; these three accept disjoint ones.
    return [
        TriggerSpec(
            name="date",
            factory=date_trigger_factory,
            accepts=looks_like_date,
            description="one-off: fires once at a datetime",
        ),
        TriggerSpec(
            name="interval",
            factory=interval_trigger_factory,
            accepts=looks_like_interval,
            description="fixed interval: timedelta, seconds, or 'every 30s' (option start=)",
        ),
        TriggerSpec(
            name="cron",
            factory=cron_trigger_factory,
            accepts=looks_like_cron,
            description="cron: 5 fields, 6 with seconds last, or @hourly/@daily/...; time zones with DST rules",
        ),
    ]


@hookimpl
def lssm_jobs_scheduler_stores() -> list[SchedulerStoreSpec]:
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
            description="tables lssm_schedules/lssm_schedule_claims in the sqlite queue's file (option path=)",
        ),
    ]
