"""Google Cloud Pub/Sub backend for lssm-jobs: ``open_queue("gcp-pubsub", project=..., ledger=...)``.

Jobs travel as Pub/Sub messages (a topic and subscription per queue); workers consume by streaming pull
with flow control; job records, dead letters and dedupe keys live in a ledger, the companion store.
"""

from __future__ import annotations

from lssm_jobs_gcp_pubsub.backend import PubSubBackend, PubSubOptions
from lssm_jobs_gcp_pubsub.consumer import PubSubDelivery
from lssm_jobs_gcp_pubsub.errors import MissingResourceError, PublishError
from lssm_jobs_gcp_pubsub.names import Naming, QueueNames

__version__ = "0.1.0"

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
