"""Google Cloud Tasks backend for lssm-jobs: ``open_queue("gcp-tasks", project=..., location=..., url=...,
ledger=...)``; the worker endpoint as a standalone server (``lssm-jobs worker APP -b gcp-tasks``), an ASGI
app or a WSGI adapter. See ``docs/gcp-tasks.md``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lssm_jobs._lazy import lazy_exports

if TYPE_CHECKING:
    from lssm_jobs_gcp_tasks.asgi import CloudTasksASGIApp
    from lssm_jobs_gcp_tasks.auth import RequestVerifier
    from lssm_jobs_gcp_tasks.backend import CloudTasksBackend, EnqueueError
    from lssm_jobs_gcp_tasks.endpoint import TaskEndpoint
    from lssm_jobs_gcp_tasks.naming import QueueNames, queue_id, task_id
    from lssm_jobs_gcp_tasks.wsgi import CloudTasksWSGIApp

# Imported on first use: the plugin registry imports this package to find its hooks, and the Google client
# libraries it would otherwise pull in cost start-up time (and print warnings) in every lssm-jobs command.
_LAZY = {
    "CloudTasksASGIApp": "lssm_jobs_gcp_tasks.asgi",
    "CloudTasksBackend": "lssm_jobs_gcp_tasks.backend",
    "CloudTasksWSGIApp": "lssm_jobs_gcp_tasks.wsgi",
    "EnqueueError": "lssm_jobs_gcp_tasks.backend",
    "QueueNames": "lssm_jobs_gcp_tasks.naming",
    "RequestVerifier": "lssm_jobs_gcp_tasks.auth",
    "TaskEndpoint": "lssm_jobs_gcp_tasks.endpoint",
    "queue_id": "lssm_jobs_gcp_tasks.naming",
    "task_id": "lssm_jobs_gcp_tasks.naming",
}

__all__ = [
    "CloudTasksASGIApp",
    "CloudTasksBackend",
    "CloudTasksWSGIApp",
    "EnqueueError",
    "QueueNames",
    "RequestVerifier",
    "TaskEndpoint",
    "queue_id",
    "task_id",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
