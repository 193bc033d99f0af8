"""The plugin contract: every hook a plugin can implement, in one spec class.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named after these specs. Expose it
through an entry point in group ``lssm_jobs.plugins``; its entry-point name is the plugin's name::

    [project.entry-points."lssm_jobs.plugins"]
    redis = "lssm_jobs_redis.plugin"

Every hook is a registration hook: it takes no arguments and returns a list of typed records, so loading a
plugin has no side effects and a broken plugin is caught at load time, named, and skipped.
"""

from __future__ import annotations

import pluggy

from lssm_jobs.registrations import (
    EventSinkSpec,
    JobLedgerSpec,
    QueueBackendSpec,
    ResultStoreSpec,
    SchedulerStoreSpec,
    SerializerSpec,
    TriggerSpec,
)

PROJECT_NAME = "lssm_jobs"
ENTRY_POINT_GROUP = "lssm_jobs.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class LssmJobsSpec:
    """Hook specifications of lssm-jobs. Implement any subset of them in a plugin."""

    @hookspec
    def lssm_jobs_queue_backends(self) -> list[QueueBackendSpec]:
        """Register queue backends.

        :returns: one :class:`~lssm_jobs.registrations.QueueBackendSpec` per backend; the name is what users
            pass to ``open_queue(name, ...)`` and ``--backend``. Names must be unique across plugins.

        Example::

            @hookimpl
            def lssm_jobs_queue_backends():
                return [QueueBackendSpec(name="redis", factory=RedisBackend.from_options,
                                         capabilities=RedisBackend.capabilities)]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_serializers(self) -> list[SerializerSpec]:
        """Register envelope serializers.

        :returns: one :class:`~lssm_jobs.registrations.SerializerSpec` per serializer, selected with
            ``open_queue(..., serializer=name)``. Serializers must not execute code from the data they decode.

        Example::

            @hookimpl
            def lssm_jobs_serializers():
                return [SerializerSpec(name="msgpack", content_type="application/msgpack",
                                       factory=MsgpackSerializer)]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_schedule_triggers(self) -> list[TriggerSpec]:
        """Register kinds of schedule trigger.

        :returns: one :class:`~lssm_jobs.registrations.TriggerSpec` per kind. ``scheduler.schedule(name,
            expression, ...)`` asks each kind's ``accepts(expression)`` to pick one, and
            ``trigger=kind`` selects one by name.

        Example::

            @hookimpl
            def lssm_jobs_schedule_triggers():
                return [TriggerSpec(name="sunrise", factory=SunriseTrigger,
                                    accepts=lambda e: e == "@sunrise")]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_scheduler_stores(self) -> list[SchedulerStoreSpec]:
        """Register scheduler stores (last fired tick per schedule, and per-tick claims).

        :returns: one :class:`~lssm_jobs.registrations.SchedulerStoreSpec` per store. A store tied to a
            queue backend names it in ``backend`` and is used by default for queues on that backend.

        Example::

            @hookimpl
            def lssm_jobs_scheduler_stores():
                return [SchedulerStoreSpec(name="redis", backend="redis", factory=RedisSchedulerStore.create)]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_event_sinks(self) -> list[EventSinkSpec]:
        """Register event sinks, which receive every lifecycle event.

        :returns: one :class:`~lssm_jobs.registrations.EventSinkSpec` per sink, attached with
            ``open_queue(..., sinks=[name])`` or the ``LSSM_JOBS_SINKS`` environment variable.

        Example::

            @hookimpl
            def lssm_jobs_event_sinks():
                return [EventSinkSpec(name="statsd", factory=StatsdSink)]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_job_ledgers(self) -> list[JobLedgerSpec]:
        """Register job ledgers: stores of job records and dead letters for backends whose service keeps no
        history (Cloud Tasks, Pub/Sub), so that ``get``, ``counts`` and the dead letter queue work there.

        :returns: one :class:`~lssm_jobs.registrations.JobLedgerSpec` per ledger, named by such a backend's
            ``ledger=`` option. A ledger subclasses :class:`lssm_jobs.ledger.base.JobLedger` and passes
            :class:`lssm_jobs.testing.LedgerConformance`.

        Example::

            @hookimpl
            def lssm_jobs_job_ledgers():
                return [JobLedgerSpec(name="redis", factory=RedisLedger.from_options)]
        """
        raise NotImplementedError

    @hookspec
    def lssm_jobs_result_stores(self) -> list[ResultStoreSpec]:
        """Register result stores: where what handlers return is kept for ``queue.result(job_id)``.

        :returns: one :class:`~lssm_jobs.registrations.ResultStoreSpec` per store. A store tied to a queue
            backend names it in ``backend`` and is used by default for queues on that backend; any store is
            selected by name with the queue option ``result_store=``. A store subclasses
            :class:`lssm_jobs.results.base.ResultStore` and passes
            :class:`lssm_jobs.testing.ResultStoreConformance`.

        Example::

            @hookimpl
            def lssm_jobs_result_stores():
                return [ResultStoreSpec(name="redis", backend="redis", factory=RedisResultStore.create)]
        """
        raise NotImplementedError


HOOK_NAMES = tuple(name for name in vars(LssmJobsSpec) if name.startswith("lssm_jobs_"))
