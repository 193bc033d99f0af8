"""Parity: the same checks, through the official client, against our own Pub/Sub server and the Java
emulator. Where both exist this keeps our server honest; where the emulator is missing only its half skips
(the one skip CI allows)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from lssm_jobs_gcp_pubsub.clients import make_clients
from lssm_jobs_gcp_pubsub.testing.emulator import LocalPubSub

PROJECT = "parity-test"


class Clients:
    def __init__(self, address: str) -> None:
        self.publisher, self.subscriber = make_clients(
            address, batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001), ordering=True
        )
        self.tag = uuid.uuid4().hex[:8]

    def topic(self, name: str = "topic") -> str:
        path = self.publisher.topic_path(PROJECT, f"{name}-{self.tag}")
        self.publisher.create_topic(name=path)
        return path

    def subscription(self, topic: str, name: str = "sub", **settings: Any) -> str:
        path = self.subscriber.subscription_path(PROJECT, f"{name}-{self.tag}")
        self.subscriber.create_subscription(request={"name": path, "topic": topic, **settings})
        return path

    def pull(self, subscription: str, wait: float = 10.0, count: int = 1) -> list[Any]:
        """Unary pulls until ``count`` messages came (or ``wait`` passed)."""
        received: list[Any] = []
        deadline = time.monotonic() + wait
        while len(received) < count and time.monotonic() < deadline:
            response = self.subscriber.pull(
                subscription=subscription, max_messages=count - len(received), timeout=5
            )
            received.extend(response.received_messages)
        return received

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()


@pytest.fixture
def clients(any_pubsub_server: LocalPubSub) -> Iterator[Clients]:
    made = Clients(any_pubsub_server.address)
    yield made
    made.close()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_topics_and_subscriptions(clients: Clients) -> None:
    topic = clients.topic()
    assert clients.publisher.get_topic(topic=topic).name == topic
    listed = [t.name for t in clients.publisher.list_topics(project=f"projects/{PROJECT}")]
    assert topic in listed
    with pytest.raises(exceptions.AlreadyExists):
        clients.publisher.create_topic(name=topic)
    with pytest.raises(exceptions.NotFound):
        clients.publisher.get_topic(topic=topic + "-missing")
    with pytest.raises(exceptions.InvalidArgument):
        clients.publisher.create_topic(name=clients.publisher.topic_path(PROJECT, "ab"))
    subscription = clients.subscription(topic, ack_deadline_seconds=0)
    assert clients.subscriber.get_subscription(subscription=subscription).ack_deadline_seconds == 10
    with pytest.raises(exceptions.AlreadyExists):
        clients.subscriber.create_subscription(request={"name": subscription, "topic": topic})
    with pytest.raises(exceptions.NotFound):
        clients.subscriber.create_subscription(
            request={"name": subscription + "-2", "topic": topic + "-missing"}
        )
    clients.subscriber.delete_subscription(subscription=subscription)
    with pytest.raises(exceptions.NotFound):
        clients.subscriber.get_subscription(subscription=subscription)
    with pytest.raises(exceptions.NotFound):
        clients.publisher.publish(topic + "-missing", b"x").result(timeout=30)


def test_publish_pull_ack_and_nack(clients: Clients) -> None:
    topic = clients.topic()
    subscription = clients.subscription(topic)
    message_id = clients.publisher.publish(topic, b"payload", kind="greeting", n="1").result(timeout=30)
    assert isinstance(message_id, str) and message_id
    (received,) = clients.pull(subscription)
    assert received.message.data == b"payload"
    assert dict(received.message.attributes) == {"kind": "greeting", "n": "1"}
    assert received.message.message_id == message_id
    assert received.message.publish_time.timestamp() > time.time() - 60
    assert received.delivery_attempt == 0  # only set with a dead-letter policy
    clients.subscriber.modify_ack_deadline(
        subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
    )
    (again,) = clients.pull(subscription)  # a nack delivers again, with a new ack id
    assert again.message.message_id == message_id and again.ack_id != received.ack_id
    clients.subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])  # stale: ignored
    clients.subscriber.acknowledge(subscription=subscription, ack_ids=[again.ack_id])
    assert clients.pull(subscription, wait=2.5) == []


def test_ack_deadline_expiry_redelivers_and_extension_holds(clients: Clients) -> None:
    topic = clients.topic()
    subscription = clients.subscription(topic, ack_deadline_seconds=10)
    clients.publisher.publish(topic, b"first").result(timeout=30)
    clients.publisher.publish(topic, b"second").result(timeout=30)
    received = clients.pull(subscription, count=2)
    assert sorted(m.message.data for m in received) == [b"first", b"second"]
    extended = next(m for m in received if m.message.data == b"second")
    clients.subscriber.modify_ack_deadline(
        subscription=subscription, ack_ids=[extended.ack_id], ack_deadline_seconds=60
    )
    started = time.monotonic()
    again = clients.pull(subscription, wait=30)
    assert [m.message.data for m in again] == [b"first"]
    assert time.monotonic() - started > 5  # not before its deadline (10 s from the first pull)
    assert clients.pull(subscription, wait=2.5) == []  # the extended one is still leased


def test_streaming_pull_with_flow_control(clients: Clients) -> None:
    topic = clients.topic()
    subscription = clients.subscription(topic)
    for i in range(20):
        clients.publisher.publish(topic, str(i).encode())
    clients.publisher.publish(topic, b"last").result(timeout=30)
    lock = threading.Lock()
    running = 0
    peak = 0
    acked: list[bytes] = []
    nacked: set[bytes] = set()

    def callback(message: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
            if message.data == b"7" and b"7" not in nacked:
                nacked.add(b"7")
                message.nack()
                return
            acked.append(message.data)
        message.ack()

    future = clients.subscriber.subscribe(
        subscription, callback, flow_control=pubsub_v1.types.FlowControl(max_messages=3)
    )
    try:
        assert _wait(lambda: len(acked) >= 21, 30), acked
    finally:
        future.cancel()
        future.result(timeout=30)
    assert peak <= 3
    assert sorted(acked) == sorted([str(i).encode() for i in range(20)] + [b"last"])  # nacked one came back


def test_dead_letter_policy(clients: Clients) -> None:
    topic = clients.topic()
    dead_topic = clients.topic("dead")
    dead_subscription = clients.subscription(dead_topic, "dead-sub")
    subscription = clients.subscription(
        topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}
    )
    clients.publisher.publish(topic, b"poison", kind="x").result(timeout=30)
    attempts = []
    for _ in range(5):
        (received,) = clients.pull(subscription)
        attempts.append(received.delivery_attempt)
        clients.subscriber.modify_ack_deadline(
            subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
        )
    assert attempts == [1, 2, 3, 4, 5]
    # No sixth delivery: it is forwarded instead (the Java emulator forwards when it would deliver it).
    assert clients.pull(subscription, wait=3) == []
    (dead,) = clients.pull(dead_subscription, wait=30)
    assert dead.message.data == b"poison"
    attributes = dict(dead.message.attributes)
    assert attributes["kind"] == "x"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == subscription.rpartition("/")[2]
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"


def test_ordering_keys_deliver_in_order(clients: Clients) -> None:
    topic = clients.topic()
    subscription = clients.subscription(topic, enable_message_ordering=True)
    for i in range(5):
        clients.publisher.publish(topic, str(i).encode(), ordering_key="user-1")
    clients.publisher.publish(topic, b"other", ordering_key="user-2").result(timeout=30)
    seen: list[bytes] = []
    lock = threading.Lock()

    def callback(message: Any) -> None:
        with lock:
            seen.append(message.data)
        message.ack()

    future = clients.subscriber.subscribe(subscription, callback)
    try:
        assert _wait(lambda: len(seen) >= 6, 30), seen
    finally:
        future.cancel()
        future.result(timeout=30)
    assert [data for data in seen if data != b"other"] == [b"0", b"1", b"2", b"3", b"4"]
