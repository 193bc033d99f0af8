"""The persistence entities of lssm-jobs: jobs, dead letters, scheduler state, results and the schema
version.

This is the real schema: the sqlite backend creates its tables by rendering it, and ``lssm-jobs schema``
renders it for Prisma or SQL so an application can keep these tables in its own migrations.

Bump :data:`JOBS_SCHEMA_VERSION` whenever these entities change, and ship the matching migration step
(see :mod:`lssm_jobs.backends.sqlite_schema`).
"""

from __future__ import annotations

from lssm_jobs.entities.model import (
    Entity,
    Field,
    FieldIn,
    FieldNotNull,
    FieldType,
    Index,
    Relation,
    SchemaContribution,
)

#: The version of the entities below. Version 1 had no ``finished_at`` column, no retention index and no
#: scheduler tables; version 2 added them; version 3 added ``cancel_requested`` and ``progress`` to jobs;
#: version 4 the live workers table; version 5 the results table; version 6 made the due, lease expiry, dedupe
#: and retention indexes of lssm_jobs partial (a new pending job updates none of them).
JOBS_SCHEMA_VERSION = 6

JOBS_TABLE = "lssm_jobs"
DEAD_LETTERS_TABLE = "lssm_dead_letters"
SCHEDULES_TABLE = "lssm_schedules"
SCHEDULE_CLAIMS_TABLE = "lssm_schedule_claims"
SCHEMA_VERSION_TABLE = "lssm_schema_version"
WORKERS_TABLE = "lssm_workers"
RESULTS_TABLE = "lssm_results"

TEXT, INTEGER, FLOAT = FieldType.TEXT, FieldType.INTEGER, FieldType.FLOAT
BOOLEAN, BYTES = FieldType.BOOLEAN, FieldType.BYTES

job_entity = Entity(
    name="LssmJob",
    table=JOBS_TABLE,
    doc=(
        "Jobs that are waiting, running or recently finished. Stored status: 'scheduled' (run_at in the "
        "future when written), 'pending', 'active' (leased until lease_until), 'completed' or 'cancelled' "
        "(kept until finished_at + the completed retention). Dead jobs move to lssm_dead_letters."
    ),
    fields=(
        Field(name="id", type=TEXT, doc="job id (a UUID unless the producer chose one)"),
        Field(name="type", type=TEXT, doc="job type name, e.g. email.send"),
        Field(name="queue", type=TEXT, default="default"),
        Field(
            name="status",
            type=TEXT,
            default="pending",
            doc="scheduled | pending | active | completed | cancelled",
        ),
        Field(name="attempts", type=INTEGER, default=0, doc="deliveries so far, this one included"),
        Field(name="priority", type=INTEGER, default=0, doc="higher runs first among ready jobs"),
        Field(name="run_at", type=FLOAT, doc="epoch seconds when the job becomes ready"),
        Field(name="created_at", type=FLOAT, doc="epoch seconds"),
        Field(name="updated_at", type=FLOAT, doc="epoch seconds of the last change"),
        Field(name="dedupe_key", type=TEXT, nullable=True, doc="at most one live job per key"),
        Field(name="last_error", type=TEXT, nullable=True, doc="error of the last failed attempt"),
        Field(
            name="lease_until", type=FLOAT, nullable=True, doc="while active: epoch seconds the lease ends"
        ),
        Field(name="lease_token", type=TEXT, nullable=True, doc="while active: the holder's token"),
        Field(name="finished_at", type=FLOAT, nullable=True, doc="when completed (retention pruning)"),
        Field(name="body", type=BYTES, doc="the serialized envelope, stored verbatim"),
        Field(
            name="cancel_requested",
            type=BOOLEAN,
            default=False,
            doc="while active: queue.cancel asked its worker to stop it",
        ),
        Field(name="progress", type=TEXT, nullable=True, doc="the handler's last progress report (JSON)"),
    ),
    primary_key=("id",),
    indexes=(
        Index(
            name="lssm_jobs_lease_idx",
            fields=("queue", "status", "priority", "run_at", "created_at"),
            descending={"priority"},
            doc="lease from given queues: ready jobs, highest priority first, then oldest run_at",
        ),
        Index(
            name="lssm_jobs_lease_any_queue_idx",
            fields=("status", "priority", "run_at", "created_at"),
            descending={"priority"},
            doc="lease from every queue in priority order without sorting",
        ),
        # The four below are partial: each holds only the rows its queries look at, so writing a job of
        # another status (a new pending job, a lease, an ack) skips it. The queries must repeat the
        # predicate's terms for sqlite to use them (see docs/entities.md). ``status`` stays the first
        # column although the predicate fixes it: without statistics sqlite's planner prefers an equality
        # on the first column of lssm_jobs_lease_any_queue_idx (a scan of every job of that status) to a
        # range on a partial index's only column; with it, the partial index wins, and covers the query.
        Index(
            name="lssm_jobs_due_idx",
            fields=("status", "run_at"),
            where=FieldIn(field="status", values=("scheduled",)),
            doc="scheduled jobs whose time has come, and the next one due",
        ),
        Index(
            name="lssm_jobs_lease_expiry_idx",
            fields=("status", "lease_until"),
            where=FieldIn(field="status", values=("active",)),
            doc="active jobs whose lease expired (their worker died), and the next expiry",
        ),
        Index(
            name="lssm_jobs_dedupe_idx",
            fields=("dedupe_key",),
            where=FieldNotNull(field="dedupe_key"),
            doc="live job lookup by dedupe key",
        ),
        Index(
            name="lssm_jobs_retention_idx",
            fields=("status", "finished_at"),
            where=FieldIn(field="status", values=("completed", "cancelled")),
            doc="prune finished (completed or cancelled) jobs past their retention",
        ),
    ),
)

dead_letter_entity = Entity(
    name="LssmDeadLetter",
    table=DEAD_LETTERS_TABLE,
    doc=(
        "The dead letter queue: jobs that failed for good, with why, kept (body verbatim) until purged or "
        "replayed. A separate table keeps the job table and its lease indexes small."
    ),
    fields=(
        Field(name="id", type=TEXT, doc="the job's id"),
        Field(name="type", type=TEXT),
        Field(name="queue", type=TEXT),
        Field(name="priority", type=INTEGER, default=0),
        Field(name="run_at", type=FLOAT, doc="the last run_at the job had"),
        Field(name="created_at", type=FLOAT),
        Field(name="dedupe_key", type=TEXT, nullable=True, doc="restored on replay"),
        Field(name="attempts", type=INTEGER, default=0),
        Field(name="reason", type=TEXT, doc="why: retries exhausted, permanent error, undecodable, ..."),
        Field(name="error", type=TEXT, nullable=True),
        Field(name="traceback", type=TEXT, nullable=True),
        Field(name="failed_at", type=FLOAT, doc="epoch seconds"),
        Field(name="body", type=BYTES, doc="the serialized envelope, verbatim even when undecodable"),
    ),
    primary_key=("id",),
    indexes=(
        Index(name="lssm_dead_letters_failed_at_idx", fields=("failed_at",), doc="most recent first"),
        Index(name="lssm_dead_letters_queue_idx", fields=("queue",), doc="counts per queue"),
    ),
)

schedule_entity = Entity(
    name="LssmSchedule",
    table=SCHEDULES_TABLE,
    doc="Scheduler state: one row per schedule name, with the last tick fired and the next one due.",
    fields=(
        Field(name="name", type=TEXT, doc="the schedule's unique name"),
        Field(name="last_tick", type=FLOAT, nullable=True, doc="epoch seconds of the last tick fired"),
        Field(name="next_tick", type=FLOAT, nullable=True, doc="epoch seconds of the next tick due"),
        Field(name="paused", type=BOOLEAN, default=False),
        Field(name="updated_at", type=FLOAT),
    ),
    primary_key=("name",),
)

schedule_claim_entity = Entity(
    name="LssmScheduleClaim",
    table=SCHEDULE_CLAIMS_TABLE,
    doc=(
        "One row per claimed tick: the primary key (schedule, tick) lets exactly one scheduler instance "
        "claim a tick. A claim is unfinished (completed_at NULL) while the tick fires; one whose lease "
        "(claimed_at) ran out is taken over by another instance. The schedule's row in lssm_schedules must "
        "exist first (foreign key)."
    ),
    fields=(
        Field(name="schedule", type=TEXT, doc="lssm_schedules.name"),
        Field(name="tick", type=FLOAT, doc="epoch seconds of the tick"),
        Field(
            name="claimed_by", type=TEXT, doc="the scheduler instance firing it (the last to take it over)"
        ),
        Field(name="claimed_at", type=FLOAT, doc="epoch seconds of the claim, take-over or last renewal"),
        Field(name="completed_at", type=FLOAT, nullable=True, doc="epoch seconds; NULL while in flight"),
        Field(name="attempts", type=INTEGER, default=1, doc="1 + take-overs"),
    ),
    primary_key=("schedule", "tick"),
    indexes=(
        Index(
            name="lssm_schedule_claims_state_idx",
            fields=("completed_at", "claimed_at"),
            doc="unfinished claims by lease age (take-overs), finished ones by age (pruning)",
        ),
    ),
    relations=(
        Relation(
            name="schedule_entry",
            fields=("schedule",),
            target="LssmSchedule",
            target_fields=("name",),
            back_name="claims",
            on_delete="cascade",
            constraint="lssm_schedule_claims_schedule_fkey",
        ),
    ),
)

worker_entity = Entity(
    name="LssmWorker",
    table=WORKERS_TABLE,
    doc=(
        "Live workers (lssm-jobs workers): one row per running worker, renewed by its heartbeat and deleted "
        "when it stops gracefully; a row whose expires_at passed belongs to a worker that died and is ignored "
        "(and deleted by the next registration)."
    ),
    fields=(
        Field(name="id", type=TEXT, doc="the worker's id: host-pid-random"),
        Field(name="info", type=TEXT, doc="the worker's record as JSON (host, pid, queues, jobs done, ...)"),
        Field(name="started_at", type=FLOAT, doc="epoch seconds (the worker's clock), for listing order"),
        Field(name="expires_at", type=FLOAT, doc="epoch seconds after which the worker counts as dead"),
    ),
    primary_key=("id",),
    indexes=(Index(name="lssm_workers_expiry_idx", fields=("expires_at",), doc="find dead workers"),),
)

result_entity = Entity(
    name="LssmResult",
    table=RESULTS_TABLE,
    doc=(
        "How jobs of types that declare a result type ended, kept until expires_at (their result_ttl_ms): "
        "status 'completed' with the return value (UTF-8 JSON) or 'failed' with the last error and why the "
        "job was dead-lettered. Read by queue.result(job_id); not tied to lssm_jobs rows, which may be "
        "pruned first."
    ),
    fields=(
        Field(name="job_id", type=TEXT, doc="the job's id"),
        Field(name="job_type", type=TEXT, doc="job type name, which gives the result's type"),
        Field(name="status", type=TEXT, doc="completed | failed"),
        Field(name="value", type=BYTES, nullable=True, doc="completed: the return value as UTF-8 JSON"),
        Field(name="error", type=TEXT, nullable=True, doc="failed: the last attempt's error"),
        Field(name="reason", type=TEXT, nullable=True, doc="failed: why the job was dead-lettered"),
        Field(name="finished_at", type=FLOAT, doc="epoch seconds the job ended"),
        Field(name="expires_at", type=FLOAT, doc="epoch seconds the result stops being readable"),
    ),
    primary_key=("job_id",),
    indexes=(Index(name="lssm_results_expires_at_idx", fields=("expires_at",), doc="pruning"),),
)

schema_version_entity = Entity(
    name="LssmSchemaVersion",
    table=SCHEMA_VERSION_TABLE,
    doc="Schema versions applied to this database, one row each; the current version is the highest.",
    fields=(
        Field(name="version", type=INTEGER),
        Field(name="applied_at", type=FLOAT, doc="epoch seconds"),
        Field(name="description", type=TEXT, default=""),
    ),
    primary_key=("version",),
)

#: What lssm-jobs contributes to a schema: ``compose_schema({"modules": [jobs_schema_contribution]})``.
jobs_schema_contribution = SchemaContribution(
    name="lssm_jobs",
    version=JOBS_SCHEMA_VERSION,
    doc="lssm-jobs: job queue, dead letters, scheduler state, live workers, results",
    entities=(
        job_entity,
        dead_letter_entity,
        schedule_entity,
        schedule_claim_entity,
        worker_entity,
        result_entity,
        schema_version_entity,
    ),
)
