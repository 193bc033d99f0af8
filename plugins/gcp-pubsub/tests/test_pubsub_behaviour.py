"""The Pub/Sub backend beyond the conformance suite, on the session's Pub/Sub server (the Java emulator
where installed): a worker SIGKILLed mid-job, delay precision, publish failures, dead letters through the
CLI, native dead-letter policy, ordering keys, naming."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.cli import main as cli_main
from lssm_jobs.jobs import JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.queue import JobQueue, open_queue
from lssm_jobs.testing import run_async, wait_until
from lssm_jobs_gcp_pubsub import PublishError, PubSubBackend
from lssm_jobs_gcp_pubsub.names import Naming, decode_queue, encode_queue
from lssm_jobs_gcp_pubsub.testing.emulator import LocalPubSub

from .conftest import PROJECT, unique_prefix

WORKER = Path(__file__).with_name("pubsub_worker_process.py")


def _queue(backend: PubSubBackend, **options: Any) -> JobQueue:
    return JobQueue(backend, catalog=JobCatalog(), sinks=[], **options)


@run_async(timeout=120)
async def test_a_job_whose_worker_is_killed_completes_in_another_worker(
    own_pubsub_server: LocalPubSub, tmp_path: Path
) -> None:
    """On the project's own server, not the Java emulator: the emulator may never learn that a SIGKILLed
    subscriber's stream ended (its bundled gRPC fails closing streams with a ``NoSuchMethodError``, seen in
    its log) and keep delivering the job into that dead stream; seen in about one run in six under load,
    the job then never came back. The service, like our server, delivers it again once its ack deadline
    has passed."""
    pubsub_server = own_pubsub_server
    prefix = unique_prefix()
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    queue = open_queue(
        "gcp-pubsub",
        project=PROJECT,
        prefix=prefix,
        emulator_host=pubsub_server.address,
        ledger=ledger,
        sinks=[],
    )

    logs: list[Path] = []

    def worker() -> subprocess.Popen[bytes]:
        # Output to files, not pipes: a worker that logs much would block on a full pipe nobody reads.
        log = tmp_path / f"worker-{len(logs) + 1}.log"
        logs.append(log)
        with log.open("wb") as output:
            return subprocess.Popen(
                [sys.executable, str(WORKER), pubsub_server.address, prefix, ledger, str(tmp_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output() -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-4000:]}" for log in logs)

    async with queue:
        job = await queue.enqueue("crash.test", {})
        first = worker()
        second = None
        try:
            await wait_until(
                lambda: (tmp_path / f"started-{job.id}-1").exists() or first.poll() is not None,
                timeout=30,
                message="the job started in the first worker",
            )
            assert first.poll() is None, output()
            first.send_signal(signal.SIGKILL)  # no graceful stop: the ack deadline and the lease must expire
            first.wait(10)
            running = await queue.get(job.id)
            assert running is not None and running.status is JobStatus.ACTIVE
            second = worker()
            try:
                await wait_until(
                    lambda: (tmp_path / f"done-{job.id}").exists() or second.poll() is not None,
                    timeout=90,
                    message="the job done by worker 2",
                )
            except TimeoutError as timeout:
                raise AssertionError(f"{timeout}; the job: {await queue.get(job.id)}\n{output()}") from None
            assert (tmp_path / f"done-{job.id}").exists(), output()
            done = await wait_until(
                lambda: _status(queue, job.id, JobStatus.COMPLETED), timeout=10, message="completed"
            )
            assert done.attempt == 2, output()
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(20)


async def _status(queue: JobQueue, job_id: str, status: JobStatus) -> Any:
    job = await queue.get(job_id)
    return job if job is not None and job.status is status else None


@run_async(timeout=60)
async def test_delayed_jobs_run_on_time_never_early(
    pubsub_backend_factory: Callable[..., PubSubBackend],
) -> None:
    """Delays within the hold horizon: each job runs at or after its run_at, and within the documented
    precision (0.5 s on our server, 1 s on the Java emulator, whose deliveries are slower)."""
    lateness: list[float] = []
    async with _queue(pubsub_backend_factory(queues=["default"])) as queue:
        queue.register("later", lambda job: lateness.append(time.time() - job.run_at))
        delays = [300, 800, 1500, 2500, 4000]
        for delay in delays:
            await queue.enqueue("later", {}, delay_ms=delay)
        await queue.start()
        await wait_until(lambda: len(lateness) == len(delays), timeout=30, message="every delayed job ran")
    assert min(lateness) >= -0.01
    assert max(lateness) < 1.0, lateness


@run_async(timeout=60)
async def test_delays_beyond_the_horizon_come_back_and_run_on_time(
    pubsub_backend_factory: Callable[..., PubSubBackend],
) -> None:
    """A job due beyond the hold horizon is handed back to Pub/Sub and held when it comes round again."""
    ran: list[float] = []
    async with _queue(pubsub_backend_factory(queues=["default"], hold_horizon_s=2)) as queue:
        queue.register("much-later", lambda job: ran.append(time.time() - job.run_at))
        job = await queue.enqueue("much-later", {}, delay_ms=6_000)
        await queue.start()
        await asyncio.sleep(1)
        scheduled = await queue.get(job.id)
        assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
        await wait_until(lambda: ran, timeout=40, message="the far job ran")
    assert ran[0] >= -0.01


@run_async(timeout=60)
async def test_publish_failure_after_the_topic_check_undoes_the_records(
    pubsub_server: LocalPubSub, pubsub_backend_factory: Callable[..., PubSubBackend]
) -> None:
    backend = pubsub_backend_factory(publish_timeout_s=2)
    async with _queue(backend) as queue:
        await queue.enqueue("fine", {})
        names = await backend.ensure_queue("default")
        assert backend.publisher is not None
        await asyncio.to_thread(backend.publisher.delete_topic, topic=names.topic)  # publishes now fail
        with pytest.raises(PublishError) as raised:
            await queue.enqueue_many([("doomed", {"i": i}) for i in range(3)])
        assert len(raised.value.failed) == 3 and "NotFound" in str(raised.value)
        with pytest.raises(PublishError):  # a single enqueue takes its own path (one Publish call)
            await queue.enqueue("doomed", {})
        counts = await queue.counts()
        assert sum(counts["default"].values()) == 1  # only the job published before


@run_async(timeout=90)
async def test_retry_backoff_dead_letter_and_replay_through_the_cli(
    pubsub_server: LocalPubSub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = unique_prefix()
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    catalog = JobCatalog()
    flaky = define_job_type(
        type="flaky",
        options=JobOptions(max_retries=2, backoff_ms=200, backoff="fixed", jitter=0),
        catalog=catalog,
    )
    fixed = False
    attempts: list[tuple[int, float]] = []

    def handler(job: Any) -> None:
        attempts.append((job.attempt, time.monotonic()))
        if not fixed:
            raise RuntimeError(f"broken {job.attempt}")

    options = {"project": PROJECT, "prefix": prefix, "emulator_host": pubsub_server.address, "ledger": ledger}
    cli_options = ["--backend", "gcp-pubsub", "-o", f"project={PROJECT}", "-o", f"prefix={prefix}"]
    cli_options += ["-o", f"emulator_host={pubsub_server.address}", "-o", f"ledger={ledger}"]

    def cli(*args: str) -> Any:
        json_flag = ["--json"] if args[-1] in ("list", "status") else []
        try:
            cli_main([*args, *cli_options, *json_flag])
        except SystemExit as exit_:
            assert not exit_.code, capsys.readouterr().err
        out = capsys.readouterr().out
        return json.loads(out) if json_flag else out

    # The worker keeps running while the CLI (another process would do the same) inspects and replays: the
    # Java emulator does not feed a second streaming pull on a subscription once one was cancelled.
    queue = open_queue("gcp-pubsub", **options, queues=["default"], sinks=[], catalog=catalog)
    queue.register(flaky, handler)
    async with queue:
        job = await queue.enqueue(flaky, {})
        await queue.start()
        await wait_until(lambda: _status(queue, job.id, JobStatus.DEAD), timeout=30, message="dead letter")
        assert [attempt for attempt, _ in attempts] == [1, 2, 3]
        assert all(b - a >= 0.19 for (_, a), (_, b) in itertools.pairwise(attempts))
        capsys.readouterr()
        listed = await asyncio.to_thread(cli, "dlq", "list")
        assert [dead["id"] for dead in listed] == [job.id]
        status = await asyncio.to_thread(cli, "status")
        assert "dead" in json.dumps(status)
        fixed = True
        await asyncio.to_thread(cli, "dlq", "replay", job.id)
        done = await wait_until(
            lambda: _status(queue, job.id, JobStatus.COMPLETED), timeout=30, message="replayed"
        )
        assert done.attempt == 1
        assert await asyncio.to_thread(cli, "dlq", "list") == []


@run_async(timeout=90)
async def test_native_dead_letter_policy_records_poison_messages(
    pubsub_backend_factory: Callable[..., PubSubBackend],
) -> None:
    """A message whose deliveries keep going unsettled (nacked here, as a dying worker would leave it) is
    forwarded by Pub/Sub's dead-letter policy and recorded as a dead letter by the workers."""
    backend = pubsub_backend_factory(queues=["default"], dead_letter_policy=True, max_delivery_attempts=5)
    async with _queue(backend) as queue:
        job = await queue.enqueue("poison", {})
        names = await backend.ensure_queue("default")
        assert backend.subscriber is not None
        subscriber = backend.subscriber
        nacks = 0
        while nacks < 5:  # five deliveries that never settle
            response = await asyncio.to_thread(
                subscriber.pull, subscription=names.subscription, max_messages=1, timeout=10
            )
            for received in response.received_messages:
                await asyncio.to_thread(
                    subscriber.modify_ack_deadline,
                    subscription=names.subscription,
                    ack_ids=[received.ack_id],
                    ack_deadline_seconds=0,
                )
                nacks += 1
        queue.register("poison", lambda job: None)
        await queue.start()
        dead = await wait_until(lambda: queue.dead_letters.get(job.id), timeout=40, message="recorded")
    assert "dead-letter policy" in dead.reason


@run_async(timeout=60)
async def test_ordering_keys_keep_per_key_order_through_retries(
    pubsub_backend_factory: Callable[..., PubSubBackend],
) -> None:
    seen: list[tuple[int, int]] = []

    def handler(job: Any) -> None:
        seen.append((job.payload["n"], job.attempt))
        if job.payload["n"] == 1 and job.attempt == 1:
            raise RuntimeError("first try of job 1 fails")

    backend = pubsub_backend_factory(queues=["default"], ordering=True)
    async with _queue(backend, concurrency=4) as queue:
        queue.register("ordered", handler)
        for i in range(4):
            await queue.enqueue("ordered", {"n": i}, meta={"ordering_key": "account-7"}, max_retries=2)
        await queue.start()
        await wait_until(lambda: len(seen) == 5, timeout=40, message="ordered jobs ran")
    assert [n for n, _ in seen] == [0, 1, 1, 2, 3]


def test_queue_names_map_to_valid_resource_names_and_back() -> None:
    naming = Naming(project="proj", prefix="jobs.")
    for queue in ("default", "emails.high", "a b/c%", "ünïcode"):
        names = naming.for_queue(queue)
        assert naming.queue_of_topic(names.topic) == queue
        assert decode_queue(encode_queue(queue)) == queue
        assert names.delayed_topic == names.topic + ".delayed"
        assert naming.queue_of_topic(names.delayed_topic) is None
    with pytest.raises(ValueError, match="prefix"):
        Naming(project="proj", prefix="google-")
    with pytest.raises(ValueError, match="ledger"):
        PubSubBackend(project="proj", ledger=None)  # type: ignore[arg-type]


@run_async(timeout=120)
async def test_settling_jobs_never_report_a_lost_lease(
    pubsub_backend_factory: Callable[..., PubSubBackend], caplog: pytest.LogCaptureFixture
) -> None:
    """A job's lease heartbeat never extends while the job settles (the core LeaseGuard): between the
    ledger's ``complete`` and the message's ack, an extension would find the job finished and warn that its
    lease was lost. A heartbeat every 10 ms over 60 settling jobs gives the race every chance."""
    done: list[str] = []

    async def briefly(job: Any) -> None:
        await asyncio.sleep(0.02)
        done.append(job.id)

    caplog.set_level("WARNING", logger="lssm_jobs.worker")
    async with _queue(pubsub_backend_factory(queues=["default"]), lease_ms=30, concurrency=20) as queue:
        queue.register("brief", briefly)
        await queue.enqueue_many([("brief", {"n": n}) for n in range(60)])
        await queue.start()
        await wait_until(lambda: len(done) >= 60, timeout=60, message="every job ran")
    lost = [record.getMessage() for record in caplog.records if "lost the lease" in record.getMessage()]
    assert lost == []


def test_lease_extension_is_the_clients_choice_or_10_to_600_seconds() -> None:
    from lssm_jobs_gcp_pubsub.options import PubSubOptions

    assert PubSubOptions().lease_extension_s == 0
    assert PubSubOptions(lease_extension_s=10).lease_extension_s == 10
    for wrong in (5, 601, -1):
        with pytest.raises(ValueError, match="lease_extension_s"):
            PubSubOptions(lease_extension_s=wrong)
