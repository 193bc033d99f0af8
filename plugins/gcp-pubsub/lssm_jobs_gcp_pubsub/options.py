"""The Pub/Sub backend's tuning (``open_queue("gcp-pubsub", ...)`` keywords) and the option help the CLI
shows; no Google library is imported here."""

from __future__ import annotations

import attrs
from lssm_jobs.backends.base import BackendCapabilities

from lssm_jobs_gcp_pubsub import names as n

#: Pub/Sub's longest ack deadline (seconds): also the longest a message can be handed back for.
MAX_ACK_DEADLINE_S = 600


@attrs.frozen(kw_only=True)
class PubSubOptions:
    """Tuning of the Pub/Sub backend (``open_queue("gcp-pubsub", ...)`` keywords).

    :param create: create missing topics and subscriptions (needs ``roles/pubsub.editor``); False checks
        they exist and raises :class:`MissingResourceError` naming the first missing one.
    :param ack_deadline_s: ack deadline of the subscriptions the backend creates (10 to 600).
    :param max_lease_s: how long the client keeps extending a running job's lease; set it above your
        longest job timeout.
    :param lease_extension_s: the longest ack deadline each extension of a running job asks for (10 to
        600; 0: the client's choice, 10 s rising to the 99th percentile of its ack latencies, up to 600 s).
        It bounds how long the job of a worker that died (SIGKILL, lost machine) waits before another
        worker is given it; smaller means more deadline extensions while jobs run.
    :param dead_letter_policy: give the ready-jobs subscription Pub/Sub's native dead-letter policy (to the
        ``.dead`` topic); workers then record what it forwards as dead letters.
    :param max_delivery_attempts: the native policy's limit (5 to 100).
    :param ordering: publish with ordering keys and create subscriptions with message ordering on.
    :param exactly_once: create the ready-jobs subscription with exactly-once delivery; acks then wait for
        the service's confirmation.
    :param hold_horizon_s: delayed jobs due within this many seconds are held by a worker and published on
        time; later ones come back to a worker when they get this close.
    :param hold_max: most delayed jobs one worker holds at once.
    :param republish_after_s: a delayed message older than this is published again (fresh) instead of
        handed back, so delays longer than the subscription's message retention are kept.
    :param publish_timeout_s: how long a publish may retry before it fails.
    :param batch_max_messages: most messages per Publish call (the client's batching).
    :param batch_max_latency_s: longest a message waits for its batch to fill.
    :param discover_interval_s: how often a worker consuming every queue looks for new queues' topics.
    """

    create: bool = True
    ack_deadline_s: int = 60
    max_lease_s: float = 3600.0
    lease_extension_s: int = 0
    dead_letter_policy: bool = False
    max_delivery_attempts: int = 10
    ordering: bool = False
    exactly_once: bool = False
    hold_horizon_s: float = 60.0
    hold_max: int = 10_000
    republish_after_s: float = 3 * 24 * 3600.0
    publish_timeout_s: float = 60.0
    batch_max_messages: int = 1000
    batch_max_latency_s: float = 0.005
    discover_interval_s: float = 60.0

    def __attrs_post_init__(self) -> None:
        if not 10 <= self.ack_deadline_s <= MAX_ACK_DEADLINE_S:
            raise ValueError("ack_deadline_s must be 10 to 600")
        if self.lease_extension_s != 0 and not 10 <= self.lease_extension_s <= MAX_ACK_DEADLINE_S:
            raise ValueError("lease_extension_s must be 0 (the client's choice) or 10 to 600")
        if not 5 <= self.max_delivery_attempts <= 100:
            raise ValueError("max_delivery_attempts must be 5 to 100")
        if self.hold_horizon_s < 1 or self.hold_max < 1 or self.batch_max_messages < 1:
            raise ValueError("hold_horizon_s, hold_max and batch_max_messages must be >= 1")


OPTIONS_HELP = {
    "project": "Google Cloud project id (default: GOOGLE_CLOUD_PROJECT, else Application Default Credentials)",
    "prefix": f"prefix of topic and subscription names (default {n.DEFAULT_PREFIX!r})",
    "queues": "queue names whose topics a worker consumes when it is not told (default: every prefixed topic)",
    "url": "pubsub://PROJECT[/PREFIX], the same as project= and prefix=",
    "emulator_host": "HOST:PORT of an emulator or local test server (default: PUBSUB_EMULATOR_HOST)",
    "ledger": "store of job records and dead letters: sqlite:///PATH, redis://HOST:PORT/DB or a ledger name",
    "ledger_options": "options of a ledger given by name (JSON object)",
    "create": "create missing topics and subscriptions (default true)",
    "ack_deadline_s": "ack deadline of created subscriptions, 10 to 600 (default 60)",
    "max_lease_s": "longest the client extends a running job's lease (default 3600)",
    "lease_extension_s": "longest ack-deadline extension, 10 to 600: how soon a dead worker's job comes back "
    "(default 0: the client's choice)",
    "dead_letter_policy": "native dead-letter policy on the jobs subscription (default false)",
    "max_delivery_attempts": "the native policy's limit, 5 to 100 (default 10)",
    "ordering": "ordering keys (envelope meta 'ordering_key') and ordered subscriptions (default false)",
    "exactly_once": "exactly-once delivery on the jobs subscription (default false)",
    "hold_horizon_s": "delayed jobs due within this are held and published on time (default 60)",
}


#: What the Pub/Sub backend declares (kept here so that the plugin registers it without importing the
#: backend and the Google client libraries).
CAPABILITIES = BackendCapabilities(
    delivery="stream",
    delay=True,
    priority=False,  # Pub/Sub delivers in no priority order; the attribute lets subscriptions filter
    fifo=False,  # Pub/Sub keeps no order; with ordering=True, per ordering key only (docs/gcp-pubsub.md)
    dedupe=True,  # through the ledger
    leases=True,  # ack deadlines: a dead worker's job is delivered again
    native_dlq=True,  # dead-letter topics (and the native dead_letter_policy where configured)
    durable=True,
    shared=True,
    # No job records of its own to mark or poll (only the ledger's dedupe and lease entries): queue.cancel
    # raises UnsupportedOptionError, and so does job.progress in a handler.
    cancel=False,
    progress=False,
)
