"""The Google Cloud Pub/Sub queue backend: a ``stream`` backend on the official ``google-cloud-pubsub`` client.

Publishing: each job is one message on its queue's topic (``names.py`` has the layout), the envelope as
data and its id, type, version, priority and queue as attributes. Bulk enqueues go through the client's
batching (one Publish call per batch) and wait for every message's result, in order.

Consuming: one streaming pull per queue with the client's flow control (``max_messages`` = the worker's
concurrency) and lease management (a running job's ack deadline is extended until ``max_lease_s``).
Outcomes are decided by the shared dispatcher; this module carries them out:

* success acks the message;
* a retry publishes the job again to the queue's ``.delayed`` topic with the attempts made so far and its
  not-before time (``lssm_run_at``), then acks the delivered message. Pub/Sub's own "nack with a deadline"
  is not used: a held message keeps occupying the stream's flow-control slot for the whole backoff, and
  redelivery after an ack deadline is only approximately timed. Jobs with an ordering key are the
  exception: their retry holds the message in place (``modify_ack_deadline`` up to the 600 s limit), so
  later jobs with the same key still wait behind it;
* a dead letter is recorded in the ledger (the companion store that can list, show, replay and purge) and
  published to the queue's ``.dead`` topic for your own subscriptions, then the message is acked;
* release (graceful stop) publishes the job again unchanged and acks the delivery, so the release does not
  count as an attempt.

Delays: a job due later goes to the queue's ``.delayed`` topic. Every worker also pulls that subscription:
a job due within ``hold_horizon_s`` is held (leased) in memory and published to the queue's topic at its
time; one due later is handed back with an ack deadline that brings it back shortly before the horizon.
A job is never run before its ``run_at``: a worker that receives a job early (published by hand, clocks)
hands it back until it is due.

Job records (``get``, ``counts``), dead letters and dedupe keys live in the ledger (:mod:`lssm_jobs.ledger`),
because Pub/Sub keeps no history and cannot list messages without consuming them.

Order: none across jobs (``fifo=False``); with ``ordering=True``, jobs with one ordering key run one at a
time in publish order, retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, ClassVar

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message
from google.pubsub_v1.services.publisher.client import PublisherClient as GapicPublisherClient
from google.pubsub_v1.types import PubsubMessage
from lssm_jobs.backends.base import (
    BackendCapabilities,
    ConsumeOptions,
    Dispatch,
    OutgoingJob,
    PushResult,
)
from lssm_jobs.ledger import FIRST_GENERATION, JobLedger
from lssm_jobs.ledger.backing import LedgerBackedBackend, ledger_from

from lssm_jobs_gcp_pubsub import names as n
from lssm_jobs_gcp_pubsub.clients import default_project, make_clients
from lssm_jobs_gcp_pubsub.consumer import StreamConsumer
from lssm_jobs_gcp_pubsub.errors import MissingResourceError, PublishError, brief
from lssm_jobs_gcp_pubsub.names import Naming, QueueNames
from lssm_jobs_gcp_pubsub.options import CAPABILITIES, PubSubOptions

log = logging.getLogger("lssm_jobs.gcp_pubsub")

_VERSION = re.compile(rb'"version":\s*(\d+)')


def _version(body: bytes) -> str | None:
    """The envelope's version, read from a JSON body without decoding it (the envelope's head comes before
    its payload); None for other serializers."""
    match = _VERSION.search(body, 0, 512)
    return match.group(1).decode() if match else None


def _meta_ordering_key(job: OutgoingJob) -> str | None:
    try:
        envelope = json.loads(job.body)
    except ValueError:
        return None
    meta = envelope.get("meta") if isinstance(envelope, dict) else None
    key = meta.get("ordering_key") if isinstance(meta, dict) else None
    return key if isinstance(key, str) and key else None


class PubSubBackend(LedgerBackedBackend):
    """Queues on Google Cloud Pub/Sub topics; job records and dead letters in a ledger.

    :param project: the Google Cloud project (default: ``GOOGLE_CLOUD_PROJECT`` or Application Default
        Credentials; with an emulator any id works).
    :param prefix: prefix of every topic and subscription name; different prefixes are independent.
    :param queues: queues a worker consumes when ``--queues`` is not given (default: discovered from the
        project's topics with the prefix).
    :param ledger: the companion store of job records, dead letters and dedupe keys: a
        :class:`~lssm_jobs.ledger.JobLedger`, a ledger plugin's name (``"sqlite"``, ``"redis"``; options in
        ``ledger_options``) or a URL (``sqlite:///jobs-ledger.db``, ``redis://host:6379/0``). Every producer
        and worker of one prefix must share it.
    :param publisher: a ``pubsub_v1.PublisherClient`` you own (not closed by the backend).
    :param subscriber: a ``pubsub_v1.SubscriberClient`` you own (not closed by the backend).
    :param emulator_host: ``HOST:PORT`` of an emulator (plaintext, no credentials); default
        ``PUBSUB_EMULATOR_HOST``, which the client reads itself.
    :param ordering_key: ``f(job) -> key or None`` picking a job's ordering key (with ``ordering=True``;
        default: the envelope's ``meta["ordering_key"]``).
    """

    name: ClassVar[str] = "gcp-pubsub"
    capabilities: ClassVar[BackendCapabilities] = CAPABILITIES
    push_batch: int | None = 1000

    def __init__(
        self,
        *,
        project: str | None = None,
        prefix: str = n.DEFAULT_PREFIX,
        queues: Sequence[str] | None = None,
        ledger: JobLedger | str,
        ledger_options: dict[str, Any] | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        emulator_host: str | None = None,
        ordering_key: Callable[[OutgoingJob], str | None] | None = None,
        **tuning: Any,
    ) -> None:
        self.options = PubSubOptions(**tuning)
        project = project or default_project()
        if not project:
            raise ValueError(
                "gcp-pubsub needs a project: pass project=, set GOOGLE_CLOUD_PROJECT, or configure "
                "Application Default Credentials (gcloud auth application-default login)"
            )
        self.naming = Naming(project=project, prefix=prefix)
        self.queues = tuple(queues) if queues else None
        self.ledger = ledger_from(ledger, ledger_options, backend="gcp-pubsub")
        self.publisher = publisher
        self.subscriber = subscriber
        self._owns_clients = publisher is None and subscriber is None
        if (publisher is None) != (subscriber is None):
            raise ValueError("pass both publisher= and subscriber=, or neither")
        self.emulator_host = emulator_host
        self._ordering_key = ordering_key or (_meta_ordering_key if self.options.ordering else None)
        self._ensured: dict[str, asyncio.Future[QueueNames]] = {}
        self._wakeups: list[asyncio.Event] = []

    @classmethod
    def from_options(cls, *, url: str | None = None, **options: Any) -> PubSubBackend:
        """The factory behind ``open_queue("gcp-pubsub", ...)``: ``url`` (``pubsub://PROJECT[/PREFIX]``) is
        another way to give project and prefix; ``queues`` may be a comma-separated string (CLI)."""
        if url:
            scheme, _, rest = url.partition("://")
            if scheme not in ("pubsub", "gcp-pubsub") or not rest:
                raise ValueError(f"a gcp-pubsub URL looks like pubsub://PROJECT[/PREFIX], got {url!r}")
            project, _, prefix = rest.partition("/")
            options.setdefault("project", project)
            if prefix:
                options.setdefault("prefix", prefix)
        queues = options.get("queues")
        if isinstance(queues, str):
            options["queues"] = [queue.strip() for queue in queues.split(",") if queue.strip()]
        return cls(**options)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self.publisher is None or self.subscriber is None:
            settings = pubsub_v1.types.BatchSettings(
                max_messages=self.options.batch_max_messages,
                max_latency=self.options.batch_max_latency_s,
                max_bytes=9_000_000,
            )
            self.publisher, self.subscriber = make_clients(
                self.emulator_host, batch_settings=settings, ordering=self.options.ordering
            )
        await self.ledger.open()

    async def close(self) -> None:
        await self.ledger.close()
        if self._owns_clients:
            publisher, subscriber = self.publisher, self.subscriber
            self.publisher = self.subscriber = None
            await asyncio.to_thread(_close_clients, publisher, subscriber)

    def wake(self) -> None:
        for event in self._wakeups:
            event.set()

    # -- topics and subscriptions ------------------------------------------------------------------------

    async def ensure_queue(self, queue: str) -> QueueNames:
        """Create (or, with ``create=False``, check) the topics and subscriptions of ``queue``, once per
        backend; messages published to a topic without a subscription would be lost, so this always runs
        before the first publish to a queue."""
        future = self._ensured.get(queue)
        if future is None:
            future = self._ensured[queue] = asyncio.ensure_future(
                asyncio.to_thread(self._ensure_queue_blocking, queue)
            )
        try:
            return await asyncio.shield(future)
        except BaseException:
            if future.done():
                self._ensured.pop(queue, None)  # try again next time (the service may be back)
            raise

    def _ensure_queue_blocking(self, queue: str) -> QueueNames:
        assert self.publisher is not None and self.subscriber is not None
        names = self.naming.for_queue(queue)
        options = self.options
        topics = [names.topic, names.delayed_topic, names.dead_topic]
        subscriptions: list[dict[str, Any]] = [
            {
                "name": names.subscription,
                "topic": names.topic,
                "ack_deadline_seconds": options.ack_deadline_s,
                "enable_message_ordering": options.ordering,
                "enable_exactly_once_delivery": options.exactly_once,
            },
            {
                "name": names.delayed_subscription,
                "topic": names.delayed_topic,
                "ack_deadline_seconds": options.ack_deadline_s,
            },
        ]
        if options.dead_letter_policy:
            subscriptions[0]["dead_letter_policy"] = {
                "dead_letter_topic": names.dead_topic,
                "max_delivery_attempts": options.max_delivery_attempts,
            }
            subscriptions.append({"name": names.dead_subscription, "topic": names.dead_topic})
        for topic in topics:
            if options.create:
                with contextlib.suppress(google_exceptions.AlreadyExists):
                    self.publisher.create_topic(name=topic, timeout=30)
            else:
                try:
                    self.publisher.get_topic(topic=topic, timeout=30)
                except google_exceptions.NotFound:
                    raise MissingResourceError(
                        f"Pub/Sub topic {topic} does not exist (create it, or open the backend with create=True)"
                    ) from None
        for subscription in subscriptions:
            if options.create:
                with contextlib.suppress(google_exceptions.AlreadyExists):
                    self.subscriber.create_subscription(request=subscription, timeout=30)
            else:
                try:
                    self.subscriber.get_subscription(subscription=subscription["name"], timeout=30)
                except google_exceptions.NotFound:
                    raise MissingResourceError(
                        f"Pub/Sub subscription {subscription['name']} does not exist (create it, or open "
                        "the backend with create=True)"
                    ) from None
        return names

    async def discover_queues(self) -> list[str]:
        """Queues whose ready-jobs topic exists in the project under this prefix."""
        assert self.publisher is not None
        publisher = self.publisher
        project = f"projects/{self.naming.project}"

        def listed() -> list[str]:
            found = []
            for topic in publisher.list_topics(project=project, timeout=30):
                queue = self.naming.queue_of_topic(topic.name)
                if queue is not None:
                    found.append(queue)
            return sorted(found)

        return await asyncio.to_thread(listed)

    # -- publishing --------------------------------------------------------------------------------------

    def _attributes(self, job: OutgoingJob) -> dict[str, str]:
        attributes = {
            n.ATTR_ID: job.id,
            n.ATTR_TYPE: job.type,
            n.ATTR_QUEUE: job.queue,
            n.ATTR_PRIORITY: str(job.priority),
            n.ATTR_GENERATION: str(FIRST_GENERATION),
        }
        version = _version(job.body)
        if version is not None:
            attributes[n.ATTR_VERSION] = version
        return attributes

    def publish_message(
        self,
        topic: str,
        data: bytes,
        attributes: dict[str, str],
        ordering_key: str = "",
    ) -> ConcurrentFuture[str]:
        """Publish one message through the client's batching (call from any thread)."""
        assert self.publisher is not None
        deadline = self.options.publish_timeout_s
        future: ConcurrentFuture[str] = self.publisher.publish(
            topic,
            data,
            ordering_key=ordering_key,
            retry=Retry(deadline=deadline, timeout=deadline),
            timeout=deadline,
            **attributes,
        )
        return future

    async def publish(
        self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str = ""
    ) -> str:
        """Publish one message and wait for its id (:meth:`publish_message`, awaited)."""
        return await asyncio.wrap_future(self.publish_message(topic, data, attributes, ordering_key))

    async def publish_job(
        self,
        names: QueueNames,
        body: bytes,
        attributes: dict[str, str],
        run_at: float,
        ordering_key: str = "",
    ) -> str:
        """Publish a job to its queue's topic, or to the ``.delayed`` topic when it is due later."""
        if run_at > time.time():
            attributes = {**attributes, n.ATTR_RUN_AT: repr(run_at)}
            return await self.publish(names.delayed_topic, body, attributes)
        return await self.publish(names.topic, body, attributes, ordering_key)

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = await self._record_new(jobs)
        stored = [job for job, result in zip(jobs, results, strict=True) if result.created]
        try:
            queues = {queue: await self.ensure_queue(queue) for queue in {job.queue for job in stored}}
        except BaseException:
            await self._undo_new([job.id for job in stored])
            raise
        now = time.time()
        if len(stored) == 1 and not self._ordering_key:
            await self._push_one(stored[0], queues[stored[0].queue], now)
            return results
        futures: list[ConcurrentFuture[str]] = []
        for job in stored:
            attributes = self._attributes(job)
            names = queues[job.queue]
            key = (self._ordering_key(job) or "") if self._ordering_key else ""
            if job.run_at > now:
                attributes[n.ATTR_RUN_AT] = repr(job.run_at)
                if key:
                    attributes[n.ATTR_ORDERING_KEY] = key
                futures.append(self.publish_message(names.delayed_topic, job.body, attributes))
            else:
                futures.append(self.publish_message(names.topic, job.body, attributes, key))
        outcomes = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        failed = {
            job.id: brief(outcome)
            for job, outcome in zip(stored, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        }
        if failed:
            await self._undo_new(list(failed))
            published = [job.id for job in stored if job.id not in failed]
            raise PublishError(failed, published)
        return results

    async def _push_one(self, job: OutgoingJob, names: QueueNames, now: float) -> None:
        """One job, in one Publish call of its own: the client's batching would hold it for the batch
        latency first (a single enqueue is latency-bound, a bulk one throughput-bound)."""
        assert self.publisher is not None
        attributes = self._attributes(job)
        topic = names.topic
        if job.run_at > now:
            attributes[n.ATTR_RUN_AT] = repr(job.run_at)
            topic = names.delayed_topic
        message = PubsubMessage(data=job.body, attributes=attributes)
        deadline = self.options.publish_timeout_s
        try:
            await asyncio.to_thread(
                GapicPublisherClient.publish,
                self.publisher,
                topic=topic,
                messages=[message],
                retry=Retry(deadline=deadline, timeout=deadline),
                timeout=deadline,
            )
        except Exception as error:
            await self._undo_new([job.id])
            raise PublishError({job.id: brief(error)}, []) from error

    # -- consuming ---------------------------------------------------------------------------------------

    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        wakeup = asyncio.Event()
        self._wakeups.append(wakeup)
        try:
            await StreamConsumer(self, dispatch, options, stopping, wakeup).run()
        finally:
            self._wakeups.remove(wakeup)

    # -- the ledger: records, dead letters, dedupe -------------------------------------------------------

    async def _record_new(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        return await self.ledger.record(jobs)

    async def _undo_new(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            await self.ledger.discard(job_ids)





    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        """Publish the dead letter again as a new generation, then move it back in the ledger (a message of a
        generation the ledger does not know yet is handed back until it does)."""
        dead = await self.ledger.get_dead(job_id)
        if dead is None:
            return False
        generation = await self.ledger.reserve_generation(job_id)
        if generation is None:
            return False
        names = await self.ensure_queue(dead.queue)
        attributes = {
            n.ATTR_ID: dead.id,
            n.ATTR_TYPE: dead.type,
            n.ATTR_QUEUE: dead.queue,
            n.ATTR_GENERATION: str(generation),
        }
        version = _version(dead.body)
        if version is not None:
            attributes[n.ATTR_VERSION] = version
        await self.publish_job(names, dead.body, attributes, run_at)
        # Until the ledger moves the dead letter back, the message just published is EARLY and handed back; if
        # that fails (DedupeConflictError: the dead letter stays), the message is dropped as an orphan later.
        return await self.ledger.replay_dead(job_id, run_at=run_at, generation=generation)



def _close_clients(publisher: Any, subscriber: Any) -> None:
    if publisher is not None:
        with contextlib.suppress(Exception):
            publisher.stop()  # sends what is batched, then refuses more
        with contextlib.suppress(Exception):
            publisher.transport.close()
    if subscriber is not None:
        with contextlib.suppress(Exception):
            subscriber.close()


__all__ = ["Message", "PubSubBackend"]
