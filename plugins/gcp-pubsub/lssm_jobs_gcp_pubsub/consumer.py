"""A worker's consumption of Pub/Sub: streaming pulls, the holder of delayed jobs, and deliveries.

The client delivers messages on its own threads; each callback only hands the message to the event loop,
where everything else happens. Per consumed queue there are up to three streams:

* the ready-jobs subscription, with flow control ``max_messages`` = the worker's concurrency, so the
  service never sends a worker more jobs than it can run (a global semaphore also bounds a worker that
  consumes several queues);
* the ``.delayed`` subscription: jobs due within the hold horizon are kept leased in memory and published
  to the ready topic at their time, others are handed back to come round again nearer their time;
* with the native dead-letter policy, the ``.dead`` subscription: what Pub/Sub forwarded there is
  recorded as a dead letter.

Graceful stop: first every running job's ack deadline is pushed past the shutdown timeout (the client's
lease management stops with the streams), then the streams are cancelled, held delayed jobs handed back at
once, and running jobs get the shutdown timeout to finish; what is still running is released. Once the
streams are closed, settling goes through unary Acknowledge/ModifyAckDeadline calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.futures import StreamingPullFuture
from google.cloud.pubsub_v1.subscriber.message import Message
from lssm_jobs.backends.base import ConsumeOptions, Delivery, Dispatch, LeaseGuard, OutgoingJob
from lssm_jobs.consumer import cancel_for_stop, keep_leases_alive
from lssm_jobs.ledger import FIRST_GENERATION, Claim, ClaimOutcome, JobLedger

from lssm_jobs_gcp_pubsub import names as n
from lssm_jobs_gcp_pubsub.errors import brief
from lssm_jobs_gcp_pubsub.names import ATTR_ORDERING_KEY, QueueNames
from lssm_jobs_gcp_pubsub.options import MAX_ACK_DEADLINE_S, PubSubOptions

log = logging.getLogger("lssm_jobs.gcp_pubsub")

#: A message whose generation the ledger has not adopted this long after it was published is an orphan.
ORPHAN_AFTER_S = 600.0


def _run_at(message: Message) -> float:
    try:
        return float(message.attributes.get(n.ATTR_RUN_AT) or 0.0)
    except ValueError:
        return 0.0


class StreamBackend(Protocol):
    """What the consumer uses of :class:`~lssm_jobs_gcp_pubsub.backend.PubSubBackend` (which starts
    consumers, so a consumer knows it by this much only)."""

    @property
    def ledger(self) -> JobLedger: ...

    @property
    def options(self) -> PubSubOptions: ...

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient | None: ...

    @property
    def queues(self) -> tuple[str, ...] | None: ...

    async def discover_queues(self) -> list[str]: ...

    async def ensure_queue(self, queue: str) -> QueueNames: ...

    async def publish(
        self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str = ""
    ) -> str: ...

    async def publish_job(
        self,
        names: QueueNames,
        body: bytes,
        attributes: dict[str, str],
        run_at: float,
        ordering_key: str = "",
    ) -> str: ...


class StreamConsumer:
    """Consumes the queues of one worker until ``stopping`` is set (see the module docstring)."""

    def __init__(
        self,
        backend: StreamBackend,
        dispatch: Dispatch,
        options: ConsumeOptions,
        stopping: asyncio.Event,
        wakeup: asyncio.Event,
    ) -> None:
        self.backend = backend
        self.dispatch = dispatch
        self.options = options
        self.stopping = stopping
        self.wakeup = wakeup
        self.loop = asyncio.get_running_loop()
        self.streaming = True
        self.streams: list[StreamingPullFuture] = []
        self.in_flight: dict[asyncio.Future[None], PubSubDelivery] = {}
        #: The claimed jobs running now, guarded, whose ledger leases the heartbeat extends.
        self.leases: dict[asyncio.Future[None], LeaseGuard] = {}
        self.held: dict[str, tuple[asyncio.TimerHandle, Message, QueueNames]] = {}
        self.tasks: set[asyncio.Future[Any]] = set()
        self.slots = asyncio.Semaphore(options.concurrency)
        self.consumed: set[str] = set()

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        assert self.backend.subscriber is not None
        return self.backend.subscriber

    # -- running ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        supervisors: list[asyncio.Task[None]] = []
        heartbeat = asyncio.create_task(keep_leases_alive(self.leases, self.options.lease_ms))
        try:
            fixed = self.options.queues or self.backend.queues
            if fixed:
                for queue in fixed:
                    supervisors.append(asyncio.create_task(self._supervise(queue)))
                await self.stopping.wait()
            else:
                await self._discover(supervisors)
        finally:
            try:
                await self._shutdown(supervisors)
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)

    async def _discover(self, supervisors: list[asyncio.Task[None]]) -> None:
        """Consume every queue with a topic under the prefix, looking again now and then for new ones."""
        while not self.stopping.is_set():
            try:
                queues = await self.backend.discover_queues()
            except Exception as error:
                log.error("listing the project's topics failed (%s); trying again", brief(error))
                queues = []
            for queue in queues:
                if queue not in self.consumed:
                    self.consumed.add(queue)
                    supervisors.append(asyncio.create_task(self._supervise(queue)))
            interval = (
                self.backend.options.discover_interval_s
                if queues
                else min(5.0, self.backend.options.discover_interval_s)
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)

    async def _supervise(self, queue: str) -> None:
        """Keep the streams of one queue open until stopping, re-opening them after failures."""
        delay = 0.5
        while not self.stopping.is_set():
            ended = asyncio.Event()
            streams: list[StreamingPullFuture] = []
            try:
                names = await self.backend.ensure_queue(queue)
                streams = self._subscribe(names, ended)
            except Exception as error:
                log.error(
                    "could not consume queue %r (%s); trying again in %.1fs", queue, brief(error), delay
                )
                self._forget_streams(streams)
                await self._wait_or_stop(delay)
                delay = min(delay * 2, 30.0)
                continue
            stop_waiter = asyncio.ensure_future(self.stopping.wait())
            end_waiter = asyncio.ensure_future(ended.wait())
            await asyncio.wait({stop_waiter, end_waiter}, return_when=asyncio.FIRST_COMPLETED)
            stop_waiter.cancel()
            end_waiter.cancel()
            if self.stopping.is_set():
                return
            for stream in streams:
                if stream.done() and not stream.cancelled() and stream.exception() is not None:
                    log.error("a streaming pull of queue %r ended: %s", queue, brief(stream.exception()))
            await asyncio.to_thread(_cancel_streams, streams)
            self._forget_streams(streams)
            await self._wait_or_stop(delay)
            delay = min(delay * 2, 30.0)

    def _forget_streams(self, streams: list[StreamingPullFuture]) -> None:
        for stream in streams:
            with contextlib.suppress(ValueError):
                self.streams.remove(stream)

    async def _wait_or_stop(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    def _subscribe(self, names: QueueNames, ended: asyncio.Event) -> list[StreamingPullFuture]:
        options = self.backend.options
        streams = []

        def on_end(_: Any) -> None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(ended.set)

        ready = self.subscriber.subscribe(
            names.subscription,
            self._threadsafe(self._on_ready, names),
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=self.options.concurrency,
                max_lease_duration=options.max_lease_s,
                # Also the stream's ack deadline: how long a delivery to a worker that died stays away.
                max_duration_per_lease_extension=options.lease_extension_s,
            ),
        )
        streams.append(ready)
        # Held delayed jobs must not count against the service's flow control (they can be many and wait
        # long): the holder's limit is enforced here, by hand-backs.
        delayed = self.subscriber.subscribe(
            names.delayed_subscription,
            self._threadsafe(self._on_delayed, names),
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=options.hold_max + 1000, max_lease_duration=options.republish_after_s
            ),
            use_legacy_flow_control=True,
        )
        streams.append(delayed)
        if options.dead_letter_policy and self.backend.ledger is not None:
            streams.append(
                self.subscriber.subscribe(
                    names.dead_subscription,
                    self._threadsafe(self._on_dead, names),
                    flow_control=pubsub_v1.types.FlowControl(max_messages=10),
                )
            )
        for stream in streams:
            stream.add_done_callback(on_end)
        self.streams.extend(streams)
        return streams

    def _threadsafe(
        self, handler: Callable[[QueueNames, Message], None], names: QueueNames
    ) -> Callable[[Message], None]:
        loop = self.loop

        def callback(message: Message) -> None:  # on one of the client's threads
            try:
                loop.call_soon_threadsafe(handler, names, message)
            except RuntimeError:  # the loop is gone: give the message back at once
                message.nack()

        return callback

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- ready jobs -------------------------------------------------------------------------------------

    def _on_ready(self, names: QueueNames, message: Message) -> None:
        if self.stopping.is_set():
            self._spawn(self._quietly(self.nack(names.subscription, message)))
            return
        run_at = _run_at(message)
        if run_at > time.time():  # early (published by hand, or clocks apart): never run before run_at
            self._spawn(self._quietly(self.hand_back(names.subscription, message, run_at - time.time())))
            return
        delivery = PubSubDelivery(self, names, message)
        task = asyncio.ensure_future(self._run(delivery))
        self.in_flight[task] = delivery
        task.add_done_callback(lambda done: self.in_flight.pop(done, None))

    async def _run(self, delivery: PubSubDelivery) -> None:
        async with self.slots:
            if self.stopping.is_set():
                await self._quietly(self.nack(delivery.names.subscription, delivery.message))
                return
            try:
                claimed = await self._claim(delivery)
            except Exception as error:
                log.warning("could not claim job %s (%s); it comes back in 10s", delivery.id, brief(error))
                await self._quietly(self.hand_back(delivery.names.subscription, delivery.message, 10.0))
                return
            if claimed:
                # The heartbeat extends the guard's lease, never while the job settles (LeaseGuard): an
                # extension racing the settle would find the job no longer held and report a lost lease.
                guard = LeaseGuard(delivery)
                current = asyncio.current_task()
                if current is not None:
                    self.leases[current] = guard
                try:
                    await self.dispatch(guard)
                finally:
                    if current is not None:
                        self.leases.pop(current, None)

    def retry_in_place(self, names: QueueNames, message: Message, wait: float) -> None:
        """Run a job with an ordering key again after ``wait`` seconds on the same (still leased) message."""
        delivery = PubSubDelivery(self, names, message)
        task = asyncio.ensure_future(self._run_later(delivery, wait))
        self.in_flight[task] = delivery
        task.add_done_callback(lambda done: self.in_flight.pop(done, None))

    async def _run_later(self, delivery: PubSubDelivery, wait: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(0.0, wait))
        if self.stopping.is_set():  # back to Pub/Sub, in its place; the ledger has it scheduled already
            await self._quietly(self.nack(delivery.names.subscription, delivery.message))
            return
        await self._run(delivery)

    async def _claim(self, delivery: PubSubDelivery) -> bool:
        """Ask the ledger whether this delivery runs its job (see :class:`~lssm_jobs.ledger.ClaimOutcome`);
        answer the message itself when it does not."""
        message, subscription = delivery.message, delivery.names.subscription
        ledger = self.backend.ledger
        if n.ATTR_ID not in message.attributes:
            await self._record_foreign(delivery)
        claim = await ledger.begin(
            delivery.id, generation=_generation(message), lease_ms=self.options.lease_ms
        )
        outcome = claim.outcome
        if outcome is ClaimOutcome.RUN:
            delivery.claimed(claim)
            return True
        if outcome in (ClaimOutcome.FINISHED, ClaimOutcome.SUPERSEDED):
            await self.ack(subscription, message)  # a duplicate, or a message a newer one replaced
        elif outcome is ClaimOutcome.UNKNOWN:
            log.warning(
                "message %s names job %s, which the ledger does not know (discarded after a failed publish, "
                "or purged); dropping it",
                message.message_id,
                delivery.id,
            )
            await self.ack(subscription, message)
        elif outcome is ClaimOutcome.BUSY:
            await self.hand_back(subscription, message, max(10.0, self.options.lease_ms / 1000))
        elif outcome is ClaimOutcome.EARLY:
            # Published before the ledger names its generation (a retry or replay in progress). If that write
            # never lands (it failed, or a replay hit a dedupe conflict), the message is an orphan: the job's
            # current message is elsewhere, so after ORPHAN_AFTER_S it is dropped.
            age = time.time() - message.publish_time.timestamp()
            if age > ORPHAN_AFTER_S:
                log.warning(
                    "dropping message %s of job %s: the ledger never adopted its generation",
                    message.message_id,
                    delivery.id,
                )
                await self.ack(subscription, message)
            else:
                await self.hand_back(subscription, message, max(1.0, min(60.0, age / 2)))
        else:  # NOT_DUE
            await self.hand_back(subscription, message, claim.run_at - time.time())
        return False

    async def _record_foreign(self, delivery: PubSubDelivery) -> None:
        """A message without a job id (published by something else): recorded as a job of unknown type, so
        the dispatcher runs or dead-letters it by its body and nothing is silently dropped."""
        now = time.time()
        job = OutgoingJob(
            id=delivery.id,
            type=delivery.message.attributes.get(n.ATTR_TYPE) or "?",
            queue=delivery.queue,
            priority=0,
            run_at=now,
            created_at=now,
            dedupe_key=None,
            body=delivery.body,
        )
        await self.backend.ledger.record([job])

    # -- delayed jobs -----------------------------------------------------------------------------------

    def _on_delayed(self, names: QueueNames, message: Message) -> None:
        options = self.backend.options
        if self.stopping.is_set():
            self._spawn(self.nack(names.delayed_subscription, message))
            return
        remaining = _run_at(message) - time.time()
        if remaining <= options.hold_horizon_s and len(self.held) < options.hold_max:
            handle = self.loop.call_later(max(0.0, remaining), self._due, message.ack_id)
            self.held[message.ack_id] = (handle, message, names)
            return
        age = time.time() - message.publish_time.timestamp()
        if age > options.republish_after_s:
            self._spawn(self._republish_delayed(names, message))
            return
        # Come back shortly before entering the horizon (or in a while, when this worker holds its maximum).
        back = remaining - options.hold_horizon_s / 2 if remaining > options.hold_horizon_s else 10.0
        self._spawn(self.hand_back(names.delayed_subscription, message, back))

    def _due(self, ack_id: str) -> None:
        entry = self.held.pop(ack_id, None)
        if entry is not None:
            self._spawn(self._promote(entry[2], entry[1]))

    async def _promote(self, names: QueueNames, message: Message) -> None:
        """Publish a due delayed job to its queue's topic, then ack the delayed message."""
        attributes = dict(message.attributes)
        key = attributes.pop(ATTR_ORDERING_KEY, "")
        try:
            await self.backend.publish(names.topic, message.data, attributes, key)
        except Exception as error:
            log.error(
                "could not publish due job %s (%s); it comes back in 10s",
                attributes.get(n.ATTR_ID),
                brief(error),
            )
            await self.hand_back(names.delayed_subscription, message, 10.0)
            return
        await self.ack(names.delayed_subscription, message)

    async def _republish_delayed(self, names: QueueNames, message: Message) -> None:
        try:
            await self.backend.publish(names.delayed_topic, message.data, dict(message.attributes))
        except Exception as error:
            log.error("could not re-publish a long-delayed job (%s); it comes back later", brief(error))
            await self.hand_back(names.delayed_subscription, message, MAX_ACK_DEADLINE_S)
            return
        await self.ack(names.delayed_subscription, message)

    # -- native dead letters ----------------------------------------------------------------------------

    def _on_dead(self, names: QueueNames, message: Message) -> None:
        self._spawn(self._record_native_dead(names, message))

    async def _record_native_dead(self, names: QueueNames, message: Message) -> None:
        """Record what the native dead-letter policy forwarded (a job whose deliveries kept going unsettled:
        its workers died) as a dead letter in the ledger; our own dead letters are recorded already."""
        attributes, subscription = message.attributes, names.dead_subscription
        job_id = attributes.get(n.ATTR_ID)
        if n.DEAD_LETTER_SOURCE not in attributes or n.ATTR_DEAD_REASON in attributes or not job_id:
            await self.ack(subscription, message)
            return
        try:
            claim = await self.backend.ledger.begin(
                job_id, generation=_generation(message), lease_ms=self.options.lease_ms
            )
            if claim.outcome in (ClaimOutcome.BUSY, ClaimOutcome.EARLY, ClaimOutcome.NOT_DUE):
                await self.hand_back(subscription, message, max(10.0, self.options.lease_ms / 1000))
                return
            if claim.outcome is ClaimOutcome.RUN:
                assert claim.token is not None
                count = attributes.get(n.DEAD_LETTER_COUNT, "?")
                await self.backend.ledger.dead_letter(
                    job_id,
                    claim.token,
                    reason=(
                        f"delivered {count} times without being settled (its workers kept dying): forwarded "
                        f"by the Pub/Sub dead-letter policy of {attributes.get(n.DEAD_LETTER_SOURCE)}"
                    ),
                    error=None,
                    traceback=None,
                )
        except Exception as error:
            log.error("could not record dead letter %s (%s); it is kept", job_id, brief(error))
            await self._quietly(self.hand_back(subscription, message, 10.0))
            return
        await self.ack(subscription, message)

    # -- settling messages ------------------------------------------------------------------------------

    async def ack(self, subscription: str, message: Message) -> None:
        if self.streaming:
            if self.backend.options.exactly_once:
                await asyncio.wrap_future(message.ack_with_response())
            else:
                message.ack()
            return
        await asyncio.to_thread(
            self.subscriber.acknowledge, subscription=subscription, ack_ids=[message.ack_id], timeout=30
        )

    async def nack(self, subscription: str, message: Message) -> None:
        if self.streaming:
            message.nack()
            return
        await self._modack(subscription, message, 0)

    async def hand_back(self, subscription: str, message: Message, seconds: float) -> None:
        """Let go of a message so Pub/Sub delivers it again in about ``seconds`` (at most 600)."""
        deadline = int(min(MAX_ACK_DEADLINE_S, max(1, math.ceil(seconds))))
        if self.streaming:
            message.drop()  # out of the client's lease management first, or it would extend the deadline
            message.modify_ack_deadline(deadline)
            return
        await self._modack(subscription, message, deadline)

    async def _modack(self, subscription: str, message: Message, seconds: int) -> None:
        await asyncio.to_thread(
            self.subscriber.modify_ack_deadline,
            subscription=subscription,
            ack_ids=[message.ack_id],
            ack_deadline_seconds=seconds,
            timeout=30,
        )

    # -- stopping ---------------------------------------------------------------------------------------

    async def _shutdown(self, supervisors: list[asyncio.Task[None]]) -> None:
        timeout = self.options.shutdown_timeout
        running = list(self.in_flight.values())
        if running:
            # The client's lease management ends with the streams: cover the drain with one deadline.
            seconds = int(min(MAX_ACK_DEADLINE_S, math.ceil(timeout) + 30))
            by_subscription: dict[str, list[str]] = {}
            for delivery in running:
                by_subscription.setdefault(delivery.names.subscription, []).append(delivery.message.ack_id)
            for subscription, ack_ids in by_subscription.items():
                try:
                    await asyncio.to_thread(
                        self.subscriber.modify_ack_deadline,
                        subscription=subscription,
                        ack_ids=ack_ids,
                        ack_deadline_seconds=seconds,
                        timeout=30,
                    )
                except Exception as error:
                    log.warning("could not extend running jobs for the shutdown: %s", brief(error))
        self.streaming = False
        streams, self.streams = list(self.streams), []
        await asyncio.to_thread(_cancel_streams, streams)
        for supervisor in supervisors:
            supervisor.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
        held, self.held = list(self.held.values()), {}
        for handle, message, names in held:
            handle.cancel()
            self._spawn(self._quietly(self.nack(names.delayed_subscription, message)))
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=timeout)
            for task in pending:
                log.warning(
                    "job %s did not finish within the shutdown timeout; releasing it", self.in_flight[task].id
                )
                cancel_for_stop(task)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=30)

    @staticmethod
    async def _quietly(operation: Any) -> None:
        try:
            await operation
        except Exception as error:
            log.warning("could not hand a message back: %s", brief(error))


def _cancel_streams(streams: list[StreamingPullFuture]) -> None:
    for stream in streams:
        stream.cancel()
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.result(timeout=30)


class PubSubDelivery(Delivery):
    """One received job message, settled the lssm-jobs way (see :mod:`lssm_jobs_gcp_pubsub.backend`): the
    ledger first (it holds the job's record), then the message."""

    __slots__ = (
        "attempt",
        "body",
        "consumer",
        "id",
        "lease_ms",
        "message",
        "names",
        "next_generation",
        "queue",
        "token",
    )

    def __init__(self, consumer: StreamConsumer, names: QueueNames, message: Message) -> None:
        self.consumer = consumer
        self.names = names
        self.message = message
        self.id = message.attributes.get(n.ATTR_ID) or f"pubsub-{message.message_id}"
        self.attempt = 0
        self.body = message.data
        self.queue = names.queue
        self.lease_ms: int | None = None  # set once the ledger granted the job (its lease is kept alive)
        self.token = ""
        self.next_generation = 0

    def claimed(self, claim: Claim) -> None:
        assert claim.token is not None
        self.attempt = claim.attempt
        self.token = claim.token
        self.next_generation = claim.next_generation
        self.lease_ms = self.consumer.options.lease_ms

    @property
    def _backend(self) -> StreamBackend:
        return self.consumer.backend

    def _ordered(self) -> bool:
        return self._backend.options.ordering and bool(self.message.ordering_key)

    def _attributes(self, generation: int) -> dict[str, str]:
        attributes = {key: value for key, value in self.message.attributes.items() if key != n.ATTR_RUN_AT}
        attributes[n.ATTR_GENERATION] = str(generation)
        if self.message.ordering_key:
            attributes[ATTR_ORDERING_KEY] = self.message.ordering_key
        return attributes

    async def ack(self) -> None:
        await self._backend.ledger.complete(self.id, self.token)
        await self.consumer.ack(self.names.subscription, self.message)

    async def retry(self, *, run_at: float, error: str) -> None:
        wait = run_at - time.time()
        ledger = self._backend.ledger
        if self._ordered():
            # In place: the worker keeps the message leased through the backoff and runs it again, so later
            # jobs with the same ordering key (held back by the client) keep waiting behind this one.
            await ledger.reschedule(self.id, self.token, run_at=run_at, error=error, generation=None)
            self.consumer.retry_in_place(self.names, self.message, wait)
            return
        # Published as the job's next generation before the ledger names it, so a failure here leaves the
        # current message in charge (delivered again after its deadline).
        attributes = self._attributes(self.next_generation)
        if wait > 0:
            await self._backend.publish_job(self.names, self.body, attributes, run_at)
        else:
            attributes.pop(ATTR_ORDERING_KEY, None)
            await self._backend.publish(self.names.topic, self.body, attributes, self.message.ordering_key)
        await ledger.reschedule(
            self.id, self.token, run_at=run_at, error=error, generation=self.next_generation
        )
        await self.consumer.ack(self.names.subscription, self.message)

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        await self._backend.ledger.dead_letter(
            self.id, self.token, reason=reason, error=error, traceback=traceback
        )
        attributes = self._attributes(_generation(self.message))
        attributes[n.ATTR_DEAD_REASON] = reason[:1000]
        try:
            await self._backend.publish(self.names.dead_topic, self.body, attributes)
        except (
            Exception
        ) as publish_error:  # the ledger holds the dead letter; the topic is for your own tools
            log.warning(
                "dead letter %s is recorded, but publishing it to %s failed: %s",
                self.id,
                self.names.dead_topic,
                brief(publish_error),
            )
        await self.consumer.ack(self.names.subscription, self.message)

    async def release(self) -> None:
        await self._backend.ledger.release(self.id, self.token)
        if self._ordered():
            await self.consumer.nack(
                self.names.subscription, self.message
            )  # keeps its place in the key's order
            return
        # A fresh copy of the same generation rather than a nack: the Java emulator does not redeliver a
        # message nacked after its stream closed to later streams, and the native dead-letter policy would
        # count the nack as a failed delivery.
        attributes = self._attributes(_generation(self.message))
        attributes.pop(ATTR_ORDERING_KEY, None)
        await self._backend.publish(self.names.topic, self.body, attributes)
        await self.consumer.ack(self.names.subscription, self.message)

    async def extend(self, lease_ms: int) -> bool:
        # The client's lease management extends the message; the ledger's lease is extended here.
        return await self._backend.ledger.extend(self.id, self.token, lease_ms=lease_ms)


def _generation(message: Message) -> int:
    try:
        return int(message.attributes.get(n.ATTR_GENERATION) or FIRST_GENERATION)
    except ValueError:
        return FIRST_GENERATION


__all__ = ["PubSubDelivery", "StreamConsumer"]
