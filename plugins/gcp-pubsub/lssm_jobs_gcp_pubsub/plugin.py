"""The lssm-jobs plugin of this distribution (entry point ``gcp-pubsub`` in group ``lssm_jobs.plugins``)."""

from __future__ import annotations

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import QueueBackendSpec

from lssm_jobs_gcp_pubsub.backend import OPTIONS_HELP, PubSubBackend


@hookimpl
def lssm_jobs_queue_backends() -> list[QueueBackendSpec]:
    return [
        QueueBackendSpec(
            name="gcp-pubsub",
            factory=PubSubBackend.from_options,
            capabilities=PubSubBackend.capabilities,
            description="Google Cloud Pub/Sub: streaming pull with flow control, delays held by workers, "
            "dead-letter topics; records and dead letters in a ledger",
            options_help=OPTIONS_HELP,
        )
    ]
