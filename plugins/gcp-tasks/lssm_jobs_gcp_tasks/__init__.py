"""Google Cloud Tasks backend for lssm-jobs: ``open_queue("gcp-tasks", project=..., location=..., url=...,
ledger=...)``; the worker endpoint as a standalone server (``lssm-jobs worker APP -b gcp-tasks``), an ASGI
app or a WSGI adapter. See ``docs/gcp-tasks.md``."""

from __future__ import annotations

from lssm_jobs_gcp_tasks.asgi import CloudTasksASGIApp
from lssm_jobs_gcp_tasks.auth import RequestVerifier
from lssm_jobs_gcp_tasks.backend import CloudTasksBackend, EnqueueError
from lssm_jobs_gcp_tasks.endpoint import TaskEndpoint
from lssm_jobs_gcp_tasks.naming import QueueNames, queue_id, task_id
from lssm_jobs_gcp_tasks.wsgi import CloudTasksWSGIApp

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
