"""lssm-jobs: typed background jobs, retries, a dead letter queue and a cron scheduler, with pluggable
queue backends."""

from __future__ import annotations

from lssm_jobs.errors import (
    BackendNotFoundError,
    DoNotRetry,
    FieldError,
    JobTimeoutError,
    JobValidationError,
    LssmJobsError,
    PermanentJobError,
    PluginNotFoundError,
    RetryJob,
    SerializationError,
)
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, JobType, define_job_type

__version__ = "0.1.0"

__all__ = [
    "BackendNotFoundError",
    "DoNotRetry",
    "FieldError",
    "Job",
    "JobCatalog",
    "JobOptions",
    "JobStatus",
    "JobTimeoutError",
    "JobType",
    "JobValidationError",
    "LssmJobsError",
    "PermanentJobError",
    "PluginNotFoundError",
    "RetryJob",
    "SerializationError",
    "__version__",
    "define_job_type",
]
