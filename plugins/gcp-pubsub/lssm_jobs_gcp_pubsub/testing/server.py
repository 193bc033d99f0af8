"""A small Google Cloud Pub/Sub server for tests: the v1 gRPC API on 127.0.0.1, in memory.

It exists because the official emulator (Java, shipped with the Google Cloud CLI) cannot be installed from
the package registries this project may use. It speaks the real wire protocol, built on the message
classes that ship inside ``google-cloud-pubsub`` (no generated stubs, no protoc), so the official clients
talk to it unchanged: set ``PUBSUB_EMULATOR_HOST=127.0.0.1:PORT``. The parity tests run the same checks
against it and against the Java emulator wherever both exist, which keeps it honest.

What it implements, with the service's semantics:

* topics and subscriptions: create, get, list, delete (NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT as the
  service returns them); a subscription's topic, ack deadline, dead-letter policy, message ordering and
  the exactly-once flag;
* publish with attributes and ordering keys (server-assigned ``message_id`` and ``publish_time``), fanned
  out to every subscription of the topic;
* unary pull (a short long-poll when empty), acknowledge, modify-ack-deadline (0 is a nack);
* bidirectional streaming pull: server-side flow control (``max_outstanding_messages``), acks and
  deadline changes on the stream or as unary calls, the stream's ack deadline;
* ack deadlines, with redelivery once they expire; one ack id per delivery (a late ack of an old delivery
  does not ack the redelivered copy);
* dead-letter policies: ``delivery_attempt`` counted and reported, messages past ``max_delivery_attempts``
  forwarded to the dead-letter topic with the ``CloudPubSubDeadLetterSource*`` attributes;
* message ordering: with ordering on, a message with an ordering key is not delivered while an earlier
  message with that key is outstanding or waiting.

Not implemented (UNIMPLEMENTED): filters, retry policies, snapshots and seek, push subscriptions, schemas,
persistence.

Run it as a program (``python -m lssm_jobs_gcp_pubsub.testing.server --port 0`` prints
``READY 127.0.0.1:<port>``) or in-process with :func:`serve`.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1.types import pubsub as types

PROJECT_PART = r"projects/([^/]+)"
_TOPIC = re.compile(rf"^{PROJECT_PART}/topics/([A-Za-z][A-Za-z0-9\-_.~+%]{{2,254}})$")
_SUBSCRIPTION = re.compile(rf"^{PROJECT_PART}/subscriptions/([A-Za-z][A-Za-z0-9\-_.~+%]{{2,254}})$")
DEFAULT_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600
#: How long a unary pull on an empty subscription waits for a message (the service waits briefly too).
EMPTY_PULL_WAIT = 1.0

# The raw protobuf classes behind the client's proto-plus types.
_pb = {name: getattr(types, name).pb() for name in dir(types) if hasattr(getattr(types, name), "pb")}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.define
class _Message:
    seq: int
    message: Any  # PubsubMessage (raw protobuf)
    attempts: int = 0


@attrs.define
class _Lease:
    message: _Message
    deadline: float
    stream: object | None


@attrs.define
class _Subscription:
    config: Any  # Subscription (raw protobuf)
    pending: list[tuple[int, _Message]] = attrs.field(factory=list)
    leases: dict[str, _Lease] = attrs.field(factory=dict)

    @property
    def ordered(self) -> bool:
        return bool(self.config.enable_message_ordering)

    @property
    def dead_letter_topic(self) -> str:
        return str(self.config.dead_letter_policy.dead_letter_topic)


@attrs.define
class _Stream:
    ack_deadline: int
    max_outstanding: int


class PubSubState:
    """Every topic, subscription and message, behind one lock; ``changed`` wakes waiting pulls."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.topics: dict[str, Any] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self._seq = itertools.count(1)
        self._ack_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self.closed = False

    # -- topics -------------------------------------------------------------------------------------------

    def create_topic(self, topic: Any) -> Any:
        if not _TOPIC.match(topic.name):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid [topics] name: ({topic.name})")
        with self.lock:
            if topic.name in self.topics:
                raise _Abort(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self.topics[topic.name] = topic
            return topic

    def topic(self, name: str) -> Any:
        with self.lock:
            if name not in self.topics:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Topic not found (resource={name})")
            return self.topics[name]

    def delete_topic(self, name: str) -> None:
        with self.lock:
            self.topic(name)
            del self.topics[name]
            for subscription in self.subscriptions.values():
                if subscription.config.topic == name:
                    subscription.config.topic = "_deleted-topic_"

    def publish(self, topic: str, messages: Any) -> list[str]:
        if not messages:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "The request must contain at least one message")
        with self.lock:
            self.topic(topic)
            now = time.time()
            ids = []
            for message in messages:
                if not message.data and not message.attributes:
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "Some messages contain no data and no attribute field.",
                    )
            for message in messages:
                stored = _pb["PubsubMessage"]()
                stored.CopyFrom(message)
                stored.message_id = str(next(self._message_ids))
                stored.publish_time.CopyFrom(_timestamp(now))
                ids.append(stored.message_id)
                for subscription in self.subscriptions.values():
                    if subscription.config.topic == topic:
                        seq = next(self._seq)
                        subscription.pending.append((seq, _Message(seq=seq, message=stored)))
            self.changed.notify_all()
            return ids

    # -- subscriptions ------------------------------------------------------------------------------------

    def create_subscription(self, config: Any) -> Any:
        if not _SUBSCRIPTION.match(config.name):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid [subscriptions] name: ({config.name})")
        if config.ack_deadline_seconds == 0:
            config.ack_deadline_seconds = DEFAULT_ACK_DEADLINE
        if not DEFAULT_ACK_DEADLINE <= config.ack_deadline_seconds <= MAX_ACK_DEADLINE:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid ack_deadline_seconds: {config.ack_deadline_seconds} (10 to 600)",
            )
        policy = config.dead_letter_policy
        if policy.dead_letter_topic:
            if policy.max_delivery_attempts == 0:
                policy.max_delivery_attempts = 5
            if not 5 <= policy.max_delivery_attempts <= 100:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "max_delivery_attempts must be 5 to 100")
        if config.filter:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "this test server does not implement filters")
        with self.lock:
            self.topic(config.topic)
            if policy.dead_letter_topic:
                self.topic(policy.dead_letter_topic)
            if config.name in self.subscriptions:
                raise _Abort(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            self.subscriptions[config.name] = _Subscription(config=config)
            return config

    def subscription(self, name: str) -> _Subscription:
        with self.lock:
            found = self.subscriptions.get(name)
            if found is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist (resource={name})")
            return found

    def delete_subscription(self, name: str) -> None:
        with self.lock:
            self.subscription(name)
            del self.subscriptions[name]
            self.changed.notify_all()

    # -- delivery -----------------------------------------------------------------------------------------

    def take(self, name: str, limit: int, deadline: int, stream: object | None) -> list[Any]:
        """Lease up to ``limit`` deliverable messages of a subscription (call with the lock held)."""
        subscription = self.subscription(name)
        self._expire(subscription)
        taken: list[Any] = []
        blocked_keys = (
            {lease.message.message.ordering_key for lease in subscription.leases.values()}
            if subscription.ordered
            else set()
        )
        kept: list[tuple[int, _Message]] = []
        now = time.monotonic()
        for entry in subscription.pending:
            message = entry[1]
            key = message.message.ordering_key if subscription.ordered else ""
            if len(taken) >= limit or (key and key in blocked_keys):
                kept.append(entry)
                if key:
                    blocked_keys.add(key)
                continue
            policy = subscription.config.dead_letter_policy
            if policy.dead_letter_topic and message.attempts >= policy.max_delivery_attempts:
                self._forward_dead_letter(subscription, message)
                continue
            message.attempts += 1
            ack_id = f"{next(self._ack_ids)}-{message.message.message_id}"
            subscription.leases[ack_id] = _Lease(message=message, deadline=now + deadline, stream=stream)
            received = _pb["ReceivedMessage"](ack_id=ack_id, message=message.message)
            if policy.dead_letter_topic:
                received.delivery_attempt = message.attempts
            taken.append(received)
            if key:
                blocked_keys.add(key)
        subscription.pending = kept
        return taken

    def _forward_dead_letter(self, subscription: _Subscription, message: _Message) -> None:
        source = subscription.config.name
        project, _, short = source.partition("/subscriptions/")
        copy = _pb["PubsubMessage"]()
        copy.CopyFrom(message.message)
        copy.ClearField("message_id")
        copy.ClearField("publish_time")
        copy.attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] = project.partition("/")[2]
        copy.attributes["CloudPubSubDeadLetterSourceSubscription"] = short
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] = str(message.attempts)
        copy.attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] = _rfc3339(
            message.message.publish_time
        )
        if subscription.dead_letter_topic in self.topics:
            self.publish(subscription.dead_letter_topic, [copy])

    def _expire(self, subscription: _Subscription) -> None:
        now = time.monotonic()
        for ack_id in [ack_id for ack_id, lease in subscription.leases.items() if lease.deadline <= now]:
            self._requeue(subscription, ack_id)

    def _requeue(self, subscription: _Subscription, ack_id: str) -> None:
        lease = subscription.leases.pop(ack_id)
        policy = subscription.config.dead_letter_policy
        if policy.dead_letter_topic and lease.message.attempts >= policy.max_delivery_attempts:
            self._forward_dead_letter(subscription, lease.message)  # as the service does, at once
            return
        bisect.insort(subscription.pending, (lease.message.seq, lease.message), key=lambda entry: entry[0])
        self.changed.notify_all()

    def expire_all(self) -> None:
        with self.lock:
            for subscription in list(self.subscriptions.values()):
                self._expire(subscription)

    def acknowledge(self, name: str, ack_ids: Any) -> None:
        with self.lock:
            subscription = self.subscription(name)
            for ack_id in ack_ids:
                subscription.leases.pop(
                    ack_id, None
                )  # unknown or stale ack ids are ignored, as the service does
            self.changed.notify_all()

    def modify_ack_deadline(self, name: str, ack_ids: Any, seconds: int) -> None:
        if not 0 <= seconds <= MAX_ACK_DEADLINE:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid ack deadline: {seconds} (0 to 600)")
        with self.lock:
            subscription = self.subscription(name)
            now = time.monotonic()
            for ack_id in ack_ids:
                lease = subscription.leases.get(ack_id)
                if lease is None:
                    continue
                if seconds == 0:
                    self._requeue(subscription, ack_id)
                else:
                    lease.deadline = now + seconds

    def outstanding(self, name: str, stream: object) -> int:
        subscription = self.subscriptions.get(name)
        if subscription is None:
            return 0
        return sum(1 for lease in subscription.leases.values() if lease.stream is stream)


def _timestamp(seconds: float) -> Any:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _rfc3339(stamp: Any) -> str:
    return str(stamp.ToJsonString())


class _Service:
    """The gRPC methods of ``google.pubsub.v1.Publisher`` and ``google.pubsub.v1.Subscriber``."""

    def __init__(self, state: PubSubState) -> None:
        self.state = state

    # Publisher
    def CreateTopic(self, request: Any, context: Any) -> Any:
        return self.state.create_topic(request)

    def GetTopic(self, request: Any, context: Any) -> Any:
        return self.state.topic(request.topic)

    def ListTopics(self, request: Any, context: Any) -> Any:
        with self.state.lock:
            prefix = f"{request.project}/topics/"
            topics = [topic for name, topic in sorted(self.state.topics.items()) if name.startswith(prefix)]
        return _pb["ListTopicsResponse"](topics=topics)

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        with self.state.lock:
            self.state.topic(request.topic)
            names = sorted(
                name for name, sub in self.state.subscriptions.items() if sub.config.topic == request.topic
            )
        return _pb["ListTopicSubscriptionsResponse"](subscriptions=names)

    def DeleteTopic(self, request: Any, context: Any) -> Any:
        self.state.delete_topic(request.topic)
        return empty_pb2.Empty()

    def Publish(self, request: Any, context: Any) -> Any:
        return _pb["PublishResponse"](message_ids=self.state.publish(request.topic, request.messages))

    # Subscriber
    def CreateSubscription(self, request: Any, context: Any) -> Any:
        return self.state.create_subscription(request)

    def GetSubscription(self, request: Any, context: Any) -> Any:
        return self.state.subscription(request.subscription).config

    def ListSubscriptions(self, request: Any, context: Any) -> Any:
        with self.state.lock:
            prefix = f"{request.project}/subscriptions/"
            configs = [
                sub.config
                for name, sub in sorted(self.state.subscriptions.items())
                if name.startswith(prefix)
            ]
        return _pb["ListSubscriptionsResponse"](subscriptions=configs)

    def DeleteSubscription(self, request: Any, context: Any) -> Any:
        self.state.delete_subscription(request.subscription)
        return empty_pb2.Empty()

    def Pull(self, request: Any, context: Any) -> Any:
        state = self.state
        limit = request.max_messages or 1
        if limit < 0:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "max_messages must be positive")
        remaining = context.time_remaining()
        wait = EMPTY_PULL_WAIT if remaining is None else max(0.0, min(EMPTY_PULL_WAIT, remaining - 0.2))
        give_up = time.monotonic() + wait
        with state.lock:
            while True:
                config = state.subscription(request.subscription).config
                received = state.take(request.subscription, limit, config.ack_deadline_seconds, None)
                left = give_up - time.monotonic()
                if received or left <= 0 or request.return_immediately:
                    return _pb["PullResponse"](received_messages=received)
                state.changed.wait(min(left, 0.1))

    def Acknowledge(self, request: Any, context: Any) -> Any:
        if not request.ack_ids:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "ack_ids must not be empty")
        self.state.acknowledge(request.subscription, request.ack_ids)
        return empty_pb2.Empty()

    def ModifyAckDeadline(self, request: Any, context: Any) -> Any:
        self.state.modify_ack_deadline(request.subscription, request.ack_ids, request.ack_deadline_seconds)
        return empty_pb2.Empty()

    def StreamingPull(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        state = self.state
        try:
            first = next(requests)
        except StopIteration:
            return
        name = first.subscription
        config = state.subscription(name).config  # NOT_FOUND before anything is streamed
        if not 10 <= first.stream_ack_deadline_seconds <= MAX_ACK_DEADLINE:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "stream_ack_deadline_seconds must be 10 to 600")
        stream = _Stream(
            ack_deadline=first.stream_ack_deadline_seconds, max_outstanding=first.max_outstanding_messages
        )
        ended = threading.Event()
        context.add_callback(ended.set)
        self._apply_stream_request(name, stream, first)

        def read() -> None:
            try:
                for request in requests:
                    self._apply_stream_request(name, stream, request)
            except Exception:  # the client went away: the stream is over
                pass
            finally:
                ended.set()
                with state.lock:
                    state.changed.notify_all()

        threading.Thread(target=read, name="pubsub-test-server stream reader", daemon=True).start()
        properties = _pb["StreamingPullResponse"].SubscriptionProperties(
            exactly_once_delivery_enabled=config.enable_exactly_once_delivery,
            message_ordering_enabled=config.enable_message_ordering,
        )
        while not ended.is_set() and context.is_active() and not state.closed:
            with state.lock:
                if name not in state.subscriptions:
                    raise _Abort(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist (resource={name})")
                room = 1000
                if stream.max_outstanding > 0:
                    room = min(room, stream.max_outstanding - state.outstanding(name, stream))
                received = state.take(name, room, stream.ack_deadline, stream) if room > 0 else []
                if not received:
                    state.changed.wait(0.2)
                    continue
            yield _pb["StreamingPullResponse"](received_messages=received, subscription_properties=properties)

    def _apply_stream_request(self, name: str, stream: _Stream, request: Any) -> None:
        if request.stream_ack_deadline_seconds:
            stream.ack_deadline = request.stream_ack_deadline_seconds
        if request.ack_ids:
            self.state.acknowledge(name, request.ack_ids)
        for ack_id, seconds in zip(
            request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False
        ):
            self.state.modify_ack_deadline(name, [ack_id], seconds)


_METHODS: dict[str, dict[str, tuple[str, str, bool]]] = {
    "google.pubsub.v1.Publisher": {
        "CreateTopic": ("Topic", "Topic", False),
        "GetTopic": ("GetTopicRequest", "Topic", False),
        "ListTopics": ("ListTopicsRequest", "ListTopicsResponse", False),
        "ListTopicSubscriptions": ("ListTopicSubscriptionsRequest", "ListTopicSubscriptionsResponse", False),
        "DeleteTopic": ("DeleteTopicRequest", "Empty", False),
        "Publish": ("PublishRequest", "PublishResponse", False),
    },
    "google.pubsub.v1.Subscriber": {
        "CreateSubscription": ("Subscription", "Subscription", False),
        "GetSubscription": ("GetSubscriptionRequest", "Subscription", False),
        "ListSubscriptions": ("ListSubscriptionsRequest", "ListSubscriptionsResponse", False),
        "DeleteSubscription": ("DeleteSubscriptionRequest", "Empty", False),
        "Pull": ("PullRequest", "PullResponse", False),
        "Acknowledge": ("AcknowledgeRequest", "Empty", False),
        "ModifyAckDeadline": ("ModifyAckDeadlineRequest", "Empty", False),
        "StreamingPull": ("StreamingPullRequest", "StreamingPullResponse", True),
    },
}


def _message_class(name: str) -> Any:
    return empty_pb2.Empty if name == "Empty" else _pb[name]


def _unary(method: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: Any) -> Any:
        try:
            return method(request, context)
        except _Abort as error:
            context.abort(error.code, error.message)

    return handle


def _streaming(method: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Iterator[Any]]:
    def handle(requests: Any, context: Any) -> Iterator[Any]:
        try:
            yield from method(requests, context)
        except _Abort as error:
            context.abort(error.code, error.message)

    return handle


class PubSubTestServer:
    """A running server: ``address`` (``127.0.0.1:PORT``), ``state``, and :meth:`stop`."""

    def __init__(self, port: int = 0, *, max_workers: int = 64) -> None:
        self.state = PubSubState()
        service = _Service(self.state)
        # Each open streaming pull holds one worker thread: the pool must stay well above the number of
        # concurrent subscribers, or unary acks could not be served and everything would stall.
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pubsub-test")
        )
        handlers = []
        for service_name, methods in _METHODS.items():
            table = {}
            for method_name, (request, response, streaming) in methods.items():
                method = getattr(service, method_name)
                request_class, response_class = _message_class(request), _message_class(response)
                if streaming:
                    table[method_name] = grpc.stream_stream_rpc_method_handler(
                        _streaming(method),
                        request_deserializer=request_class.FromString,
                        response_serializer=response_class.SerializeToString,
                    )
                else:
                    table[method_name] = grpc.unary_unary_rpc_method_handler(
                        _unary(method),
                        request_deserializer=request_class.FromString,
                        response_serializer=response_class.SerializeToString,
                    )
            handlers.append(grpc.method_handlers_generic_handler(service_name, table))
        self._server.add_generic_rpc_handlers(handlers)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.address = f"127.0.0.1:{self.port}"
        self._expirer = threading.Thread(target=self._expire, name="pubsub-test-server expiry", daemon=True)
        self._stopped = threading.Event()

    def start(self) -> PubSubTestServer:
        self._server.start()
        self._expirer.start()
        return self

    def _expire(self) -> None:
        # Expired ack deadlines are noticed on every pull; this also wakes idle streams to deliver them.
        while not self._stopped.wait(0.05):
            self.state.expire_all()

    def stop(self, grace: float | None = 0.5) -> None:
        self._stopped.set()
        with self.state.lock:
            self.state.closed = True
            self.state.changed.notify_all()
        self._server.stop(grace).wait()


def serve(port: int = 0) -> PubSubTestServer:
    """Start a server on 127.0.0.1 (port 0: any free port) in this process."""
    return PubSubTestServer(port).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    server = serve(args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {server.address}", flush=True)
    stop.wait()
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
