"""lssm-jobs: typed background jobs, retries, a dead letter queue and a cron scheduler, with pluggable
queue backends.

The entry points are importable from here::

    from lssm_jobs import JobOptions, define_job_type, open_queue, MemoryJobQueue, JobScheduler

Job definitions and errors are imported at once; the queue, the scheduler and the blocking facade on first
use (``import lssm_jobs`` stays cheap for modules that only define job types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lssm_jobs._lazy import lazy_exports
from lssm_jobs.errors import (
    BackendNotFoundError,
    DoNotRetry,
    FieldError,
    JobFailedError,
    JobTimeoutError,
    JobValidationError,
    LssmJobsError,
    PermanentJobError,
    PluginNotFoundError,
    ResultNotFoundError,
    ResultTimeoutError,
    RetryJob,
    SerializationError,
)
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, JobType, define_job_type

if TYPE_CHECKING:
    from lssm_jobs.blocking import BlockingQueue, open_blocking_queue
    from lssm_jobs.handlers import Handlers
    from lssm_jobs.queue import EnqueueRequest, JobQueue, MemoryJobQueue, open_queue
    from lssm_jobs.scheduler import JobScheduler

__version__ = "0.1.0"

#: Names imported on first use, and the module each comes from.
_LAZY = {
    "BlockingQueue": "lssm_jobs.blocking",
    "EnqueueRequest": "lssm_jobs.queue",
    "Handlers": "lssm_jobs.handlers",
    "JobQueue": "lssm_jobs.queue",
    "JobScheduler": "lssm_jobs.scheduler",
    "MemoryJobQueue": "lssm_jobs.queue",
    "open_blocking_queue": "lssm_jobs.blocking",
    "open_queue": "lssm_jobs.queue",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "BackendNotFoundError",
    "BlockingQueue",
    "DoNotRetry",
    "EnqueueRequest",
    "FieldError",
    "Handlers",
    "Job",
    "JobCatalog",
    "JobFailedError",
    "JobOptions",
    "JobQueue",
    "JobScheduler",
    "JobStatus",
    "JobTimeoutError",
    "JobType",
    "JobValidationError",
    "LssmJobsError",
    "MemoryJobQueue",
    "PermanentJobError",
    "PluginNotFoundError",
    "ResultNotFoundError",
    "ResultTimeoutError",
    "RetryJob",
    "SerializationError",
    "__version__",
    "define_job_type",
    "open_blocking_queue",
    "open_queue",
]
