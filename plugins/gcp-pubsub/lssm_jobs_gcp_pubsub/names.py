"""How lssm-jobs queues map onto Pub/Sub topics and subscriptions, and the attributes each message carries.

For queue ``Q`` and prefix ``P`` (default ``lssm-jobs.``), in project ``projects/PROJECT``:

========================  ===================  =====================================================
resource                  name                 what it holds
========================  ===================  =====================================================
topic, subscription       ``P Q``              ready jobs; workers stream-pull the subscription
topic, subscription       ``P Q .delayed``     jobs waiting for their ``run_at`` (delays, retries);
                                               workers hold them and publish them to ``P Q`` when due
topic                     ``P Q .dead``        dead letters, for your own subscriptions (alerts,
                                               archives); the records themselves live in the ledger
subscription              ``P Q .dead``        only with ``dead_letter_policy``: the native
                                               dead-letter policy forwards here, workers record it
========================  ===================  =====================================================

Pub/Sub resource names allow letters, digits and ``-_.~+%``, start with a letter and are 3 to 255
characters long: other characters of a queue name are percent-encoded, so every queue name maps to one
valid name and back.
"""

from __future__ import annotations

import re
import urllib.parse

import attrs

DEFAULT_PREFIX = "lssm-jobs."
DELAYED_SUFFIX = ".delayed"
DEAD_SUFFIX = ".dead"
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]*$")
_SAFE = "-_~+"  # kept as they are; '.' is encoded too, so the suffixes above cannot clash with a queue

# Message attributes (so subscriptions can filter on them, and so a message needs no decoding to route).
ATTR_ID = "lssm_id"
ATTR_TYPE = "lssm_type"
ATTR_VERSION = "lssm_version"
ATTR_PRIORITY = "lssm_priority"
ATTR_QUEUE = "lssm_queue"
ATTR_RUN_AT = "lssm_run_at"  # not before: epoch seconds; a worker never runs the job earlier
ATTR_GENERATION = "lssm_generation"  # which message carries the job now (the ledger knows the current one)
ATTR_ORDERING_KEY = "lssm_ordering_key"  # a delayed job's ordering key, used when it is published on time
ATTR_DEAD_REASON = "lssm_dead_reason"  # on dead letters we publish ourselves
DEAD_LETTER_SOURCE = "CloudPubSubDeadLetterSourceSubscription"  # set by the native dead-letter policy
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


def encode_queue(queue: str) -> str:
    """The part of a resource name that stands for ``queue`` (percent-encoded where needed)."""
    return urllib.parse.quote(queue, safe=_SAFE).replace(".", "%2E")


def decode_queue(part: str) -> str:
    return urllib.parse.unquote(part)


@attrs.frozen
class QueueNames:
    """Full resource names of one queue's topics and subscriptions."""

    queue: str
    topic: str
    subscription: str
    delayed_topic: str
    delayed_subscription: str
    dead_topic: str
    dead_subscription: str


@attrs.frozen
class Naming:
    """Maps queue names to resource names in one project, under one prefix."""

    project: str
    prefix: str = DEFAULT_PREFIX

    def __attrs_post_init__(self) -> None:
        if not self.project:
            raise ValueError("a Google Cloud project id is needed (project=, or GOOGLE_CLOUD_PROJECT)")
        if not _PREFIX.match(self.prefix) or self.prefix.lower().startswith("goog"):
            raise ValueError(
                f"prefix {self.prefix!r} must start with a letter, hold only letters, digits and -_.~+%, "
                "and not start with 'goog'"
            )

    def for_queue(self, queue: str) -> QueueNames:
        if not queue:
            raise ValueError("a queue name must not be empty")
        short = f"{self.prefix}{encode_queue(queue)}"
        if len(short) + len(DELAYED_SUFFIX) > 255:
            raise ValueError(f"queue name {queue!r} is too long for a Pub/Sub resource name with this prefix")
        topics, subscriptions = f"projects/{self.project}/topics/", f"projects/{self.project}/subscriptions/"
        return QueueNames(
            queue=queue,
            topic=topics + short,
            subscription=subscriptions + short,
            delayed_topic=topics + short + DELAYED_SUFFIX,
            delayed_subscription=subscriptions + short + DELAYED_SUFFIX,
            dead_topic=topics + short + DEAD_SUFFIX,
            dead_subscription=subscriptions + short + DEAD_SUFFIX,
        )

    def queue_of_topic(self, topic: str) -> str | None:
        """The queue whose ready-jobs topic is ``topic``, or None for any other topic."""
        short = topic.rpartition("/topics/")[2]
        if not short.startswith(self.prefix):
            return None
        part = short[len(self.prefix) :]
        if not part or "." in part:  # .delayed / .dead topics, or not ours
            return None
        return decode_queue(part)
