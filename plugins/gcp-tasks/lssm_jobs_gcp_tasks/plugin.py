"""The lssm-jobs plugin of this distribution (entry point ``gcp-tasks`` in group ``lssm_jobs.plugins``).

The backend module (and the Google client libraries) are imported only when the backend is used, so
listing plugins or running other backends' commands stays fast.
"""

from __future__ import annotations

from typing import Any

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import QueueBackendSpec

from lssm_jobs_gcp_tasks.options import CAPABILITIES, OPTIONS_HELP, WORKER_FLAGS


def _backend(**options: Any) -> Any:
    from lssm_jobs_gcp_tasks.backend import CloudTasksBackend

    return CloudTasksBackend(**options)


@hookimpl
def lssm_jobs_queue_backends() -> list[QueueBackendSpec]:
    return [
        QueueBackendSpec(
            name="gcp-tasks",
            factory=_backend,
            capabilities=CAPABILITIES,
            description="Google Cloud Tasks: HTTP push to an authenticated worker endpoint; records in a job ledger",
            options_help=OPTIONS_HELP,
            worker_flags=WORKER_FLAGS,
        )
    ]
