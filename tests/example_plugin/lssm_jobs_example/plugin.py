"""The plugin module named by the entry point: it registers the backend through the hook."""

from __future__ import annotations

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import QueueBackendSpec

from lssm_jobs_example.backend import HttpPushBackend


@hookimpl
def lssm_jobs_queue_backends() -> list[QueueBackendSpec]:
    return [
        QueueBackendSpec(
            name="example-push",
            factory=HttpPushBackend.from_options,
            capabilities=HttpPushBackend.capabilities,
            description="example HTTP push backend (jobs are POSTed to the worker's endpoint)",
            options_help={"namespace": "name of the in-process push service to share (default 'default')"},
        )
    ]
