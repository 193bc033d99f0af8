"""Google Cloud Pub/Sub backend for lssm-jobs: ``open_queue("gcp-pubsub", project=..., ledger=...)``.

Jobs travel as Pub/Sub messages (a topic and subscription per queue); workers consume by streaming pull
with flow control; job records, dead letters and dedupe keys live in a ledger, the companion store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lssm_jobs._lazy import lazy_exports

if TYPE_CHECKING:
    from lssm_jobs_gcp_pubsub.backend import PubSubBackend
    from lssm_jobs_gcp_pubsub.consumer import PubSubDelivery
    from lssm_jobs_gcp_pubsub.errors import MissingResourceError, PublishError
    from lssm_jobs_gcp_pubsub.names import Naming, QueueNames
    from lssm_jobs_gcp_pubsub.options import PubSubOptions

__version__ = "0.1.0"

# Imported on first use: the plugin registry imports this package to find its hooks, and the Google client
# libraries it would otherwise pull in cost start-up time (and print warnings) in every lssm-jobs command.
_LAZY = {
    "MissingResourceError": "lssm_jobs_gcp_pubsub.errors",
    "Naming": "lssm_jobs_gcp_pubsub.names",
    "PubSubBackend": "lssm_jobs_gcp_pubsub.backend",
    "PubSubDelivery": "lssm_jobs_gcp_pubsub.consumer",
    "PubSubOptions": "lssm_jobs_gcp_pubsub.options",
    "PublishError": "lssm_jobs_gcp_pubsub.errors",
    "QueueNames": "lssm_jobs_gcp_pubsub.names",
}

__all__ = [
    "MissingResourceError",
    "Naming",
    "PubSubBackend",
    "PubSubDelivery",
    "PubSubOptions",
    "PublishError",
    "QueueNames",
    "__version__",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
