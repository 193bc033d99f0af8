"""What the conformance suite cannot show about Cloud Tasks: task construction and names, queue mapping,
dedupe and duplicate names against the emulator, enqueue failures, retries as successor tasks, dead letters
and replay, refused requests, the shared secret, the ASGI and WSGI apps."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.queue import JobQueue
from lssm_jobs.testing import wait_until
from lssm_jobs_gcp_tasks import (
    CloudTasksASGIApp,
    CloudTasksBackend,
    CloudTasksWSGIApp,
    EnqueueError,
    QueueNames,
    queue_id,
    task_id,
)

SERVICE_ACCOUNT = "tasks-invoker@lssm-test.iam.gserviceaccount.com"  # as in emulator_support
OidcKeys = Any
TasksEmulator = Any

Factory = Callable[..., CloudTasksBackend]


def _queue(backend: CloudTasksBackend, **options: Any) -> JobQueue:
    settings: dict[str, Any] = {
        "sinks": [],
        "lease_ms": 1000,
        "shutdown_timeout": 5.0,
        "catalog": JobCatalog(),
    }
    settings.update(options)
    return JobQueue(backend, **settings)


def _tasks(emulator: TasksEmulator, backend: CloudTasksBackend, queue: str = "default") -> list[str]:
    return sorted(
        task.name.rsplit("/", 1)[-1] for task in emulator.client.list_tasks(parent=backend.queue_path(queue))
    )


# -- names ------------------------------------------------------------------------------------------------------


def test_queue_names_map_to_valid_queue_ids() -> None:
    assert queue_id("default") == "default"
    assert queue_id("emails", "lssm-") == "lssm-emails"
    dotted, underscored = queue_id("mail.high"), queue_id("mail_high")
    assert dotted.startswith("mail-high-") and underscored.startswith("mail-high-") and dotted != underscored
    long = queue_id("x" * 300)
    assert len(long) <= 100 and long != queue_id("x" * 299)
    names = QueueNames(
        "p", "l", prefix="app-", overrides={"bulk": "shared-bulk", "far": "projects/o/locations/m/queues/q"}
    )
    assert names.path("default") == "projects/p/locations/l/queues/app-default"
    assert names.path("bulk") == "projects/p/locations/l/queues/shared-bulk"
    assert names.path("far") == "projects/o/locations/m/queues/q"
    with pytest.raises(ValueError, match="queue_prefix"):
        QueueNames("p", "l", prefix="bad prefix")
    with pytest.raises(ValueError, match="queue_map"):
        QueueNames("p", "l", overrides={"x": "not/a/queue path"})
    assert task_id("abc123", 1) == "abc123-g1"
    assert task_id("has spaces/and slashes", 2).endswith("-g2") and " " not in task_id("a b", 1)


def test_task_construction(gcp_tasks_factory: Factory) -> None:
    backend = gcp_tasks_factory(
        shared_secret="s3cret", dispatch_deadline=120, queue_urls={"reports": "http://r/x"}
    )
    later = time.time() + 60
    task = backend.build_task("job1", "default", b"{}", later, 3)
    assert task.name == f"{backend.queue_path('default')}/tasks/job1-g3"
    request = task.http_request
    assert request.url == backend.url and request.body == b"{}"
    assert request.headers["X-Lssm-Job-Id"] == "job1" and request.headers["X-Lssm-Job-Generation"] == "3"
    assert (
        request.headers["X-Lssm-Job-Queue"] == "default" and request.headers["x-lssm-jobs-secret"] == "s3cret"
    )
    assert request.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert request.oidc_token.audience == backend.url
    assert abs(task.schedule_time.timestamp() - later) < 0.001
    assert task.dispatch_deadline.total_seconds() == 120
    now_task = backend.build_task("job2", "reports", b"x", time.time() - 1, 1)
    assert now_task.http_request.url == "http://r/x" and not now_task.schedule_time
    with pytest.raises(ValueError, match="dispatch_deadline"):
        gcp_tasks_factory(dispatch_deadline=5)


# -- enqueue against the emulator -------------------------------------------------------------------------------


def test_enqueue_names_tasks_and_dedupes_in_the_ledger(
    gcp_tasks_factory: Factory, tasks_emulator: TasksEmulator
) -> None:
    async def main() -> None:
        backend = gcp_tasks_factory()
        async with _queue(backend) as queue:
            first = await queue.enqueue("report.build", {"n": 1}, delay_ms=60_000, dedupe_key="r:1")
            second = await queue.enqueue("report.build", {"n": 2}, delay_ms=60_000, dedupe_key="r:1")
            assert second.id == first.id
            assert _tasks(tasks_emulator, backend) == [f"{first.id}-g1"]
            task = tasks_emulator.client.get_task(name=f"{backend.queue_path('default')}/tasks/{first.id}-g1")
            assert json.loads(task.http_request.body)["id"] == first.id  # the body is the envelope
            # a create retried after a lost reply finds its own task: no second task, no error
            await backend.create_task(first.id, "default", b"{}", time.time() + 60, 1)
            assert _tasks(tasks_emulator, backend) == [f"{first.id}-g1"]
            many = await queue.enqueue_many([("report.build", {"i": i}) for i in range(50)])
            assert len({job.id for job in many}) == 50
            assert len(_tasks(tasks_emulator, backend)) == 51

    asyncio.run(main())


def test_a_task_that_cannot_be_created_leaves_nothing_behind(gcp_tasks_factory: Factory) -> None:
    async def main() -> None:
        backend = gcp_tasks_factory(
            create_queues=False, queue_map={"nowhere": "projects/x/locations/y/queues/z"}
        )
        async with _queue(backend) as queue:
            with pytest.raises(EnqueueError) as raised:
                await queue.enqueue("a.job", {}, queue="nowhere", dedupe_key="k")
            assert "1 of 1 jobs could not be enqueued" in str(raised.value)
            assert await queue.counts() == {}
            assert (await backend.ledger.record([]), await queue.counts()) == ([], {})

    asyncio.run(main())


# -- retries, dead letters, replay ------------------------------------------------------------------------------


def test_failures_retry_as_successor_tasks_then_dead_letter_and_replay(
    gcp_tasks_factory: Factory, tasks_emulator: TasksEmulator
) -> None:
    catalog = JobCatalog()
    flaky = define_job_type(
        type="flaky.job",
        catalog=catalog,
        options=JobOptions(max_retries=2, backoff_ms=300, backoff="fixed", jitter=0.0),
    )
    attempts: list[tuple[int, float]] = []
    fixed = threading.Event()

    def handler(job: Job[Any]) -> None:
        attempts.append((job.attempt, time.monotonic()))
        if not fixed.is_set():
            raise RuntimeError(f"down on attempt {job.attempt}")

    async def main() -> None:
        backend = gcp_tasks_factory()
        async with _queue(backend, catalog=catalog) as queue:
            queue.register(flaky, handler)
            job = await queue.enqueue(flaky, {})
            await queue.start()
            await wait_until(lambda: queue.dead_letters.get(job.id), timeout=20, message="dead-lettered")
            assert [attempt for attempt, _ in attempts] == [1, 2, 3]
            gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
            assert all(gap >= 0.28 for gap in gaps), gaps  # the backoff, not the emulator's pace
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None and dead.attempts == 3 and "down on attempt 3" in (dead.error or "")
            fixed.set()
            assert await queue.dead_letters.replay(job.id)
            await wait_until(
                lambda: _status(queue, job.id, JobStatus.COMPLETED),
                timeout=20,
                message="replayed job completed",
            )
            assert attempts[-1][0] == 1
            assert _tasks(tasks_emulator, backend) == []  # every task answered

    asyncio.run(main())


async def _status(queue: JobQueue, job_id: str, status: JobStatus) -> bool:
    job = await queue.get(job_id)
    return job is not None and job.status is status


# -- refused requests -------------------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _post(url: str, headers: dict[str, str], body: bytes = b"{}") -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_forged_and_unauthenticated_requests_are_refused(
    gcp_tasks_factory: Factory, oidc_keys: OidcKeys, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def main() -> None:
        backend = gcp_tasks_factory()
        url = backend.url or ""
        async with _queue(backend) as queue:
            queue.register("victim.job", lambda job: ran.append(job.id))
            job = await queue.enqueue("victim.job", {}, delay_ms=3_600_000)  # never delivered by the emulator
            await queue.start()
            await wait_until(lambda: _listening(backend.port), message="worker endpoint listening")
            routing = {"X-Lssm-Job-Id": job.id, "X-Lssm-Job-Generation": "1", "X-Lssm-Job-Queue": "default"}
            now = int(time.time())
            cases = {
                "no credentials": ({}, 401),
                "not a bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
                "garbage": ({"Authorization": "Bearer not.a.jwt"}, 401),
                "expired": (
                    {"Authorization": "Bearer " + oidc_keys.token(aud=url, iat=now - 7200, exp=now - 3600)},
                    401,
                ),
                "wrong audience": (
                    {"Authorization": "Bearer " + oidc_keys.token(aud="https://evil.example/")},
                    401,
                ),
                "wrong issuer": (
                    {"Authorization": "Bearer " + oidc_keys.token(aud=url, iss="https://evil.example")},
                    401,
                ),
                "forged signature": ({"Authorization": "Bearer " + oidc_keys.forged_token(url)}, 401),
                "someone else": (
                    {"Authorization": "Bearer " + oidc_keys.token(aud=url, email="x@evil.example")},
                    403,
                ),
                "wrong secret": ({"X-Lssm-Jobs-Secret": "guess"}, 401),
            }
            caplog.set_level(logging.WARNING, logger="lssm_jobs_gcp_tasks.auth")
            for name, (credentials, expected) in cases.items():
                status = await asyncio.to_thread(_post, url, {**routing, **credentials})
                assert status == expected, name
            # the real thing is accepted: the job is not due yet, so the worker asks to come back later
            good = {"Authorization": "Bearer " + oidc_keys.token(aud=url)}
            assert await asyncio.to_thread(_post, url, {**routing, **good}) == 503
        assert ran == []
        text = caplog.text
        assert text.count("refused a request") == len(cases)
        assert "Bearer" not in text and oidc_keys.token(aud=url)[:40] not in text

    asyncio.run(main())


def test_shared_secret_instead_of_oidc(gcp_tasks_factory: Factory) -> None:
    done: list[str] = []

    async def main() -> None:
        backend = gcp_tasks_factory(oidc_service_account=None, shared_secret="correct horse")
        async with _queue(backend) as queue:
            queue.register("secret.job", lambda job: done.append(job.id))
            job = await queue.enqueue("secret.job", {})
            await queue.start()
            await wait_until(lambda: done == [job.id], timeout=15, message="job with the shared secret ran")

    asyncio.run(main())


def test_an_endpoint_without_credentials_configured_refuses_to_start(gcp_tasks_factory: Factory) -> None:
    backend = gcp_tasks_factory(oidc_service_account=None)
    with pytest.raises(ValueError, match="oidc_audience"):
        backend.verifier()


# -- ASGI and WSGI -------------------------------------------------------------------------------------------


def test_asgi_app_runs_a_delivered_job(gcp_tasks_factory: Factory, oidc_keys: OidcKeys) -> None:
    """The ASGI app called as an ASGI server calls it (the emulator's own dispatches go to a port where
    nothing listens, and are retried meanwhile)."""
    ran: list[int] = []

    async def main() -> None:
        backend = gcp_tasks_factory()
        async with _queue(gcp_tasks_factory()) as producer:
            job = await producer.enqueue("asgi.job", {"x": 1})
        worker = _queue(backend)
        worker.register("asgi.job", lambda job: ran.append(job.attempt))
        app = CloudTasksASGIApp(worker)
        sent: list[dict[str, Any]] = []

        async def record(message: Any) -> None:
            sent.append(dict(message))

        served = asyncio.Event()
        lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def lifespan_receive() -> Any:
            message = next(lifespan)
            if message["type"] == "lifespan.shutdown":
                await served.wait()
            return message

        headers = [
            (b"x-lssm-job-id", job.id.encode()),
            (b"X-Lssm-Job-Generation", b"1"),  # header names in any case
            (b"x-lssm-job-queue", b"default"),
            (b"authorization", ("Bearer " + oidc_keys.token(aud=backend.url)).encode()),
        ]
        scope = {"type": "http", "method": "POST", "headers": headers, "client": ("127.0.0.1", 1)}
        body = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive() -> Any:
            return body.pop(0)

        lifespan_task = asyncio.ensure_future(app({"type": "lifespan"}, lifespan_receive, record))
        await asyncio.sleep(0)
        await app(scope, receive, record)
        response = next(message for message in sent if message["type"] == "http.response.start")
        assert response["status"] == 200
        served.set()
        await lifespan_task
        assert [m["type"] for m in sent if m["type"].startswith("lifespan")] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    asyncio.run(main())
    assert ran == [1]


def test_wsgi_app_serves_the_emulator(gcp_tasks_factory: Factory) -> None:
    ran: list[int] = []
    backend = gcp_tasks_factory()
    port = backend.port

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    worker = _queue(backend)
    worker.register("wsgi.job", lambda job: ran.append(job.attempt))
    app = CloudTasksWSGIApp(worker)
    server = make_server("127.0.0.1", port, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def produce() -> str:
            async with _queue(gcp_tasks_factory()) as producer:
                return (await producer.enqueue("wsgi.job", {})).id

        job_id = asyncio.run(produce())
        deadline = time.monotonic() + 15
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ran == [1], job_id
    finally:
        server.shutdown()
        server.server_close()
        app.close()


def test_settling_jobs_never_report_a_lost_lease(
    gcp_tasks_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's lease heartbeat never extends while the job settles (the core LeaseGuard): an extension
    queued behind the ledger's ``complete`` would find the job finished and warn that its lease was lost. A
    heartbeat every 10 ms over 40 settling jobs gives the race every chance."""
    done: list[str] = []

    async def briefly(job: Job[Any]) -> None:
        await asyncio.sleep(0.02)
        done.append(job.id)

    async def main() -> None:
        async with _queue(gcp_tasks_factory(), lease_ms=30, concurrency=20) as queue:
            queue.register("brief", briefly)
            await queue.enqueue_many([("brief", {"n": n}) for n in range(40)])
            await queue.start()
            await wait_until(lambda: len(done) >= 40, timeout=60, message="every job ran")

    caplog.set_level("WARNING", logger="lssm_jobs.worker")
    asyncio.run(main())
    lost = [record.getMessage() for record in caplog.records if "lost the lease" in record.getMessage()]
    assert lost == []
