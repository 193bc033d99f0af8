"""The lssm-jobs plugin of this distribution (entry point ``gcp-pubsub`` in group ``lssm_jobs.plugins``).

The backend module (and the Google client libraries) are imported only when the backend is used, so
listing plugins or running other backends' commands stays fast.
"""

from __future__ import annotations

from typing import Any

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import QueueBackendSpec

from lssm_jobs_gcp_pubsub.options import CAPABILITIES, OPTIONS_HELP


def _backend(**options: Any) -> Any:
    from lssm_jobs_gcp_pubsub.backend import PubSubBackend

    return PubSubBackend.from_options(**options)


@hookimpl
def lssm_jobs_queue_backends() -> list[QueueBackendSpec]:
    return [
        QueueBackendSpec(
            name="gcp-pubsub",
            factory=_backend,
            capabilities=CAPABILITIES,
            description="Google Cloud Pub/Sub: streaming pull with flow control, delays held by workers, "
            "dead-letter topics; records and dead letters in a ledger",
            options_help=OPTIONS_HELP,
        )
    ]
