"""The scheduler: cron, interval and one-off schedules that call functions or enqueue jobs, exactly once
per tick across every instance sharing a store.

Example::

    from lssm_jobs.queue import open_queue
    from lssm_jobs.scheduler import JobScheduler

    queue = open_queue("sqlite", path="jobs.db")
    scheduler = JobScheduler(queue)                       # state in the same sqlite file
    scheduler.schedule("cleanup", "0 3 * * *", cleanup, tz="Europe/Berlin")
    scheduler.schedule("sync", "every 5 minutes", job="sync.run", payload={"full": False})

    async with scheduler:
        ...

See ``docs/scheduling.md``.
"""

from __future__ import annotations

from lssm_jobs.scheduler.app import resolve_scheduler, run_scheduler
from lssm_jobs.scheduler.clock import Clock, ManualClock, SystemClock
from lssm_jobs.scheduler.job_scheduler import (
    JobScheduler,
    ScheduleExistsError,
    ScheduleInfo,
    ScheduleNotFoundError,
    current_tick,
)
from lssm_jobs.scheduler.memory_store import MemorySchedulerStore
from lssm_jobs.scheduler.misfire import MisfirePolicy, OverlapPolicy, TickPlan, plan_due_ticks
from lssm_jobs.scheduler.sqlite_store import SqliteSchedulerStore
from lssm_jobs.scheduler.stores import SchedulerStore, ScheduleState, TickClaim
from lssm_jobs.scheduler.ticks import tick_key
from lssm_jobs.scheduler.triggers import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    InvalidScheduleError,
    Trigger,
    parse_interval,
)

__all__ = [
    "Clock",
    "CronTrigger",
    "DateTrigger",
    "IntervalTrigger",
    "InvalidScheduleError",
    "JobScheduler",
    "ManualClock",
    "MemorySchedulerStore",
    "MisfirePolicy",
    "OverlapPolicy",
    "ScheduleExistsError",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "ScheduleState",
    "SchedulerStore",
    "SqliteSchedulerStore",
    "SystemClock",
    "TickClaim",
    "TickPlan",
    "Trigger",
    "current_tick",
    "parse_interval",
    "plan_due_ticks",
    "resolve_scheduler",
    "run_scheduler",
    "tick_key",
]
