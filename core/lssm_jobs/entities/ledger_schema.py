"""The persistence entities of the job ledger (:mod:`lssm_jobs.ledger`): one table of job records, dead
letters included, and its schema version.

A separate contribution from :data:`~lssm_jobs.entities.jobs_schema_contribution`: only applications whose
backend keeps no history (Cloud Tasks, Pub/Sub) need these tables. The sqlite ledger creates them by
rendering this spec; ``lssm-jobs schema`` renders them for Prisma or SQL next to the queue's tables.

Bump :data:`LEDGER_SCHEMA_VERSION` whenever these entities change, and ship the matching migration step in
:mod:`lssm_jobs.ledger.sqlite`.
"""

from __future__ import annotations

from lssm_jobs.entities.model import Entity, Field, FieldType, Index, SchemaContribution

LEDGER_SCHEMA_VERSION = 1

LEDGER_JOBS_TABLE = "lssm_ledger_jobs"
LEDGER_SCHEMA_VERSION_TABLE = "lssm_ledger_schema_version"

TEXT, INTEGER, FLOAT, BYTES = FieldType.TEXT, FieldType.INTEGER, FieldType.FLOAT, FieldType.BYTES

ledger_job_entity = Entity(
    name="LssmLedgerJob",
    table=LEDGER_JOBS_TABLE,
    doc=(
        "Job records of a backend whose service keeps no history (Cloud Tasks, Pub/Sub): status, attempts and "
        "errors per job, dead letters included (status 'dead' with reason and traceback). 'generation' is the "
        "task or message that carries the job now; 'issued' the highest generation handed out."
    ),
    fields=(
        Field(name="id", type=TEXT, doc="job id"),
        Field(name="type", type=TEXT, doc="job type name"),
        Field(name="queue", type=TEXT, default="default"),
        Field(
            name="status", type=TEXT, default="pending", doc="scheduled | pending | active | completed | dead"
        ),
        Field(name="attempts", type=INTEGER, default=0, doc="deliveries that ran the job, this one included"),
        Field(name="priority", type=INTEGER, default=0),
        Field(name="run_at", type=FLOAT, doc="epoch seconds when the job is due"),
        Field(name="created_at", type=FLOAT, doc="epoch seconds"),
        Field(name="updated_at", type=FLOAT, doc="epoch seconds of the last change"),
        Field(name="dedupe_key", type=TEXT, nullable=True, doc="at most one live job per key"),
        Field(name="last_error", type=TEXT, nullable=True, doc="error of the last failed attempt"),
        Field(name="generation", type=INTEGER, default=1, doc="the task/message generation carrying the job"),
        Field(name="issued", type=INTEGER, default=1, doc="highest generation handed out"),
        Field(name="lease_token", type=TEXT, nullable=True, doc="while active: the holder's token"),
        Field(
            name="lease_until", type=FLOAT, nullable=True, doc="while active: epoch seconds the lease ends"
        ),
        Field(name="finished_at", type=FLOAT, nullable=True, doc="when completed or dead-lettered"),
        Field(name="reason", type=TEXT, nullable=True, doc="dead letters: why"),
        Field(name="traceback", type=TEXT, nullable=True, doc="dead letters: the last traceback"),
        Field(name="body", type=BYTES, doc="the serialized envelope, verbatim"),
    ),
    primary_key=("id",),
    indexes=(
        Index(name="lssm_ledger_jobs_dedupe_idx", fields=("dedupe_key",), doc="live job by dedupe key"),
        Index(
            name="lssm_ledger_jobs_finished_idx",
            fields=("status", "finished_at"),
            doc="dead letters most recent first; completed records past their retention",
        ),
    ),
)

ledger_schema_version_entity = Entity(
    name="LssmLedgerSchemaVersion",
    table=LEDGER_SCHEMA_VERSION_TABLE,
    doc="Versions of the ledger tables applied to this database; the current one is the highest.",
    fields=(
        Field(name="version", type=INTEGER),
        Field(name="applied_at", type=FLOAT, doc="epoch seconds"),
        Field(name="description", type=TEXT, default=""),
    ),
    primary_key=("version",),
)

#: The job ledger's tables: ``compose_schema({"modules": [jobs_schema_contribution,
#: ledger_schema_contribution]})``.
ledger_schema_contribution = SchemaContribution(
    name="lssm_jobs_ledger",
    version=LEDGER_SCHEMA_VERSION,
    doc="lssm-jobs job ledger: job records and dead letters of push and stream backends",
    entities=(ledger_job_entity, ledger_schema_version_entity),
)
