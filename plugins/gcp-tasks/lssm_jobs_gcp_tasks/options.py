"""What the plugin declares without importing the Google libraries: capabilities and option help."""

from __future__ import annotations

from lssm_jobs.backends.base import BackendCapabilities

#: Push delivery; delays by ``schedule_time``; dedupe and leases through the job ledger; no priorities
#: (Cloud Tasks has none) and no order (Cloud Tasks promises none: newer tasks may run before older ones);
#: durable and shared as long as the ledger is (sqlite: one machine; Redis: shared).
CAPABILITIES = BackendCapabilities(
    delivery="push",
    delay=True,
    priority=False,
    fifo=False,
    dedupe=True,
    leases=True,
    durable=True,
    shared=True,
    # No job records of its own to mark or poll (only the ledger's dedupe and lease entries): queue.cancel
    # raises UnsupportedOptionError, and so does job.progress in a handler.
    cancel=False,
    progress=False,
)

#: Backend options the ``worker`` command offers as flags (``--bind``, ``--port``).
WORKER_FLAGS = ("bind", "port")

OPTIONS_HELP = {
    "project": "Google Cloud project id (required)",
    "location": "Cloud Tasks location, e.g. europe-west1 (required)",
    "url": "the worker endpoint URL tasks are sent to (required to enqueue)",
    "queue_urls": "JSON object: lssm-jobs queue -> endpoint URL, overriding url per queue",
    "ledger": "job records and dead letters: a ledger name (sqlite, redis, memory) or URL (sqlite:///l.db, "
    "redis://host:6379/0) (required)",
    "ledger_options": "JSON object of options for the ledger",
    "queue_prefix": "prefix of the Cloud Tasks queue ids (letters, digits, '-')",
    "queue_map": "JSON object: lssm-jobs queue -> Cloud Tasks queue id or full path",
    "create_queues": "create missing Cloud Tasks queues (needs cloudtasks.queues.create)",
    "max_concurrent_dispatches": "for queues this backend creates (default 100)",
    "oidc_service_account": "service account whose OIDC token tasks carry; also required of callers",
    "oidc_audience": "audience the worker requires of tokens (default: url)",
    "shared_secret": "secret header value tasks carry and the worker requires (instead of, or besides, OIDC)",
    "api_endpoint": "host:port of a Cloud Tasks API (an emulator, with insecure=true)",
    "bind": "address the standalone worker server listens on (default 127.0.0.1)",
    "port": "port of the standalone worker server (default 8080)",
}
