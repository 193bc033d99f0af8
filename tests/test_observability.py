"""Operating a worker: Prometheus metrics scraped over HTTP (one process and a supervisor of two), health
probes, JSON logs without credentials, OpenTelemetry traces, and strict/weighted queue selection."""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.jobs import JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.observability.health import Health
from lssm_jobs.observability.logs import JsonFormatter, redact
from lssm_jobs.queue import EnqueueRequest, JobQueue, open_queue
from lssm_jobs.queue_selection import StrictOrder, WeightedQueues, parse_queues
from lssm_jobs.testing import wait_until
from lssm_jobs.testing.processes import CliProcess, http_get, http_json
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

APP = """
from lssm_jobs.handlers import Handlers

handlers = Handlers()


@handlers.register("obs.ok")
async def ok(job):
    return None


@handlers.register("obs.flaky")
async def flaky(job):
    if job.attempt == 1:
        raise RuntimeError("the first try fails")


@handlers.register("obs.doomed")
async def doomed(job):
    raise RuntimeError("it always fails")


@handlers.register("obs.slow")
async def slow(job):
    import asyncio

    await asyncio.sleep(job.payload["seconds"])
"""

RETRY_FAST = JobOptions(max_retries=1, backoff="fixed", backoff_ms=50, jitter=0.0)
CATALOG = JobCatalog()
OK = define_job_type(type="obs.ok", catalog=CATALOG)
FLAKY = define_job_type(type="obs.flaky", options=RETRY_FAST, catalog=CATALOG)
DOOMED = define_job_type(type="obs.doomed", options=RETRY_FAST, catalog=CATALOG)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "obs_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _enqueue_mix(path: Path) -> None:
    async def go() -> None:
        async with open_queue("sqlite", path=str(path), sinks=[], catalog=CATALOG) as queue:
            for _ in range(3):
                await queue.enqueue(OK, None)
            await queue.enqueue(FLAKY, None)
            await queue.enqueue(DOOMED, None)

    asyncio.run(go())


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape_until(url: str, done: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(url)
        assert status == 200
        samples = metric_samples(body)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise TimeoutError(body)
        time.sleep(0.1)


def _all_settled(samples: Any) -> bool:
    return (
        value(samples, "lssm_jobs_completed_total", job_type="obs.ok", queue="default") == 3
        and value(samples, "lssm_jobs_completed_total", job_type="obs.flaky", queue="default") == 1
        and value(samples, "lssm_jobs_dead_lettered_total", job_type="obs.doomed", queue="default") == 1
    )


def _check_job_metrics(samples: Any) -> None:
    def job(name: str, job_type: str) -> float:
        return value(samples, name, job_type=job_type, queue="default")

    assert [job("lssm_jobs_started_total", t) for t in ("obs.ok", "obs.flaky", "obs.doomed")] == [3, 2, 2]
    assert job("lssm_jobs_retried_total", "obs.flaky") == 1
    assert job("lssm_jobs_retried_total", "obs.doomed") == 1
    assert job("lssm_jobs_retried_total", "obs.ok") == 0
    assert job("lssm_jobs_failed_total", "obs.doomed") == 1
    assert job("lssm_jobs_failed_total", "obs.flaky") == 0
    assert job("lssm_jobs_dead_lettered_total", "obs.flaky") == 0
    assert job("lssm_jobs_completed_total", "obs.doomed") == 0
    for job_type in ("obs.ok", "obs.flaky", "obs.doomed"):
        assert job("lssm_jobs_in_flight", job_type) == 0
    assert job("lssm_jobs_queue_wait_seconds_count", "obs.ok") == 3
    runs = "lssm_jobs_run_seconds_count"
    assert value(samples, runs, job_type="obs.ok", queue="default", outcome="completed") == 3
    assert value(samples, runs, job_type="obs.flaky", queue="default", outcome="retried") == 1
    assert value(samples, runs, job_type="obs.doomed", queue="default", outcome="failed") == 1
    assert value(samples, "lssm_jobs_queue_depth", queue="default", state="completed") == 4
    assert value(samples, "lssm_jobs_queue_depth", queue="default", state="dead") == 1
    assert value(samples, "lssm_jobs_queue_depth", queue="default", state="pending") == 0
    assert value(samples, "lssm_jobs_backend_up") == 1


@pytest.mark.parametrize("processes", [None, 2], ids=["one-process", "two-processes"])
def test_metrics_endpoint_counts_successes_retries_and_dead_letters(
    app_dir: Path, processes: int | None
) -> None:
    database = app_dir / "jobs.db"
    _enqueue_mix(database)
    flags = ["--processes", str(processes)] if processes else ["--no-progress"]
    command = ["worker", "obs_app:handlers", "--url", f"sqlite:///{database}", "--metrics-port", "0", *flags]
    with CliProcess(command, cwd=app_dir) as worker:
        url = worker.served_url("/metrics")
        assert url.startswith("http://127.0.0.1:")  # loopback unless --metrics-host says otherwise
        samples = _scrape_until(url, _all_settled)
        _check_job_metrics(samples)
        if processes:
            worker.wait_for(r"is consuming", count=processes)
            assert value(samples, "lssm_jobs_worker_restarts_total", reason="crash") == 0
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()


def test_prometheus_sink_counts_enqueues_but_not_deduplicated_ones() -> None:
    from lssm_jobs.observability.prometheus import PrometheusSink

    registry = CollectorRegistry()

    async def go() -> None:
        queue = JobQueue(MemoryBackend(), sinks=[PrometheusSink(registry)], catalog=JobCatalog())
        async with queue:
            await queue.enqueue("obs.counted", {}, queue="mail")
            await queue.enqueue("obs.counted", {}, queue="mail", dedupe_key="k")
            await queue.enqueue("obs.counted", {}, queue="mail", dedupe_key="k")

    asyncio.run(go())
    enqueued = registry.get_sample_value(
        "lssm_jobs_enqueued_total", {"job_type": "obs.counted", "queue": "mail"}
    )
    assert enqueued == 2


def test_prometheus_sink_is_a_registered_event_sink() -> None:
    from lssm_jobs.observability.prometheus import PrometheusSink
    from lssm_jobs.plugins import get_plugins

    spec = get_plugins().event_sink("prometheus")
    assert isinstance(spec.factory(registry=CollectorRegistry()), PrometheusSink)
    owners = [
        info for info in get_plugins().plugins() if "prometheus" in info.provides.get("event sinks", [])
    ]
    assert owners and owners[0].builtin


# -- health ------------------------------------------------------------------------------------------------


def test_health_probes_of_a_worker(app_dir: Path) -> None:
    database = app_dir / "jobs.db"

    async def slow_job_running() -> None:
        async with open_queue("sqlite", path=str(database), sinks=[]) as queue:
            job = await queue.enqueue("obs.slow", {"seconds": 3})

            async def active() -> bool:
                found = await queue.get(job.id)
                return found is not None and found.status is JobStatus.ACTIVE

            await wait_until(active, timeout=30, message="the slow job runs")

    command = ["worker", "obs_app:handlers", "--url", f"sqlite:///{database}", "--health-port", "0"]
    with CliProcess([*command, "--no-progress", "-o", "poll_interval=0.1"], cwd=app_dir) as worker:
        base = worker.served_url("/readyz").removesuffix("/readyz")
        status, live = http_json(base + "/livez")
        assert status == 200 and live["checks"]["event_loop"] == "ok"

        def ready() -> bool:
            return http_json(base + "/readyz")[0] == 200

        deadline = time.monotonic() + 30
        while not ready():
            assert time.monotonic() < deadline, http_json(base + "/readyz")
            time.sleep(0.05)
        assert http_json(base + "/readyz")[1] == {
            "status": "ok",
            "checks": {"state": "ok", "backend": "ok"},
        }
        assert http_get(base + "/nope")[0] == 404
        asyncio.run(slow_job_running())
        worker.signal(signal.SIGTERM)
        worker.wait_for(r"draining")
        status, body = http_json(base + "/readyz")  # a slow job is still running: the worker drains
        assert status == 503 and body["checks"]["state"] == "draining"
        assert http_json(base + "/livez")[0] == 200
        assert worker.wait(60) == 0, worker.tail()


def test_a_worker_drains_before_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Whoever reads the "draining" line finds the worker draining: a readiness probe sent on seeing it
    answered "running" in a CI run, the line having been printed before the state changed."""
    from lssm_jobs.cli.worker import Shutdown

    printed_when_draining: list[str] = []

    async def first_signal() -> Shutdown:
        shutdown = Shutdown(asyncio.Event())
        shutdown.on_drain.append(lambda: printed_when_draining.append(capsys.readouterr().err))
        shutdown.signal(signal.SIGTERM)
        return shutdown

    shutdown = asyncio.run(first_signal())
    assert shutdown.stopping.is_set()
    assert printed_when_draining == [""]
    assert "SIGTERM received, draining" in capsys.readouterr().err


def test_supervisor_health_needs_a_consuming_worker_process(app_dir: Path) -> None:
    database = app_dir / "jobs.db"
    command = ["worker", "obs_app:handlers", "--url", f"sqlite:///{database}", "--processes", "2"]
    with CliProcess([*command, "--health-port", "0"], cwd=app_dir) as worker:
        base = worker.served_url("/readyz").removesuffix("/readyz")
        worker.wait_for(r"is consuming")
        status, body = http_json(base + "/readyz")
        assert status == 200, body
        assert body["checks"]["workers"] == "ok"
        status, body = http_json(base + "/livez")
        assert status == 200 and body["checks"] == {"event_loop": "ok", "workers": "ok"}
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0


def test_liveness_fails_when_the_event_loop_stalls() -> None:
    async def go() -> None:
        async def reachable() -> None:
            return None

        health = Health(asyncio.get_running_loop(), backend_check=reachable, stall_timeout=10)
        health.start()
        await asyncio.sleep(0)
        assert health.liveness()[0] == 200
        health.last_tick -= 11  # as if the loop had been blocked for 11 s
        status, checks = health.liveness()
        assert status == 503 and "blocked" in checks["event_loop"]
        await health.close()

    asyncio.run(go())


# -- logs --------------------------------------------------------------------------------------------------


def test_json_logs_carry_event_fields(app_dir: Path) -> None:
    database = app_dir / "jobs.db"
    _enqueue_mix(database)
    command = ["worker", "obs_app:handlers", "--url", f"sqlite:///{database}", "--no-progress"]
    with CliProcess(
        command, cwd=app_dir, global_args=("--log-level", "DEBUG", "--log-format", "json")
    ) as worker:
        worker.wait_for(r'"event": "job.dead_lettered"')
        worker.wait_for(r'"event": "job.completed"', count=4)
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()
    lines = [json.loads(line) for line in worker.stderr if line.strip()]  # every line is one JSON object
    retrying = next(line for line in lines if line.get("event") == "job.retrying")
    assert retrying["job_type"] == "obs.flaky" and retrying["queue"] == "default"
    assert retrying["attempt"] == 1 and "the first try fails" in retrying["error"]
    assert retrying["duration_ms"] >= 0 and len(retrying["job_id"]) == 32
    assert retrying["level"] == "INFO" and retrying["logger"] == "lssm_jobs.events"
    assert any(line.get("level") == "NOTICE" and "draining" in line["message"] for line in lines)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("cannot reach Redis at redis://:hunter2@127.0.0.1:6379/0", "hunter2"),
        ("connecting to redis://admin:s3cr3t@db.example:6379", "s3cr3t"),
        ("amqp://u:p%40ss@host/vh failed", "p%40ss"),
        ("url=postgresql://app:pa55word@localhost/db?sslmode=require", "pa55word"),
        ("redis://127.0.0.1:6379/0?password=topsecret&db=1", "topsecret"),
        ('options {"password": "opensesame", "db": 1}', "opensesame"),
        ("api_token=abc123 rest", "abc123"),
    ],
)
def test_credentials_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "***" in redact(text)


def test_redaction_keeps_ordinary_lines() -> None:
    line = "job.completed job_id=abc job_type=email.send queue=default attempt=1 duration_ms=3.2"
    assert redact(line) == line
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_json_formatter_redacts_messages_and_exceptions() -> None:
    import logging

    try:
        raise ConnectionError("cannot connect to redis://:hunter2@10.0.0.1:6379")
    except ConnectionError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "url %s", ("redis://u:pw1@h",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "hunter2" not in line and "pw1" not in line
    assert json.loads(line)["message"] == "url redis://u:***@h"


# -- traces ------------------------------------------------------------------------------------------------


def test_one_trace_from_enqueue_to_completion_across_a_retry(tmp_path: Path) -> None:
    from lssm_jobs.observability.tracing import instrument
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    catalog = JobCatalog()
    flaky = define_job_type(type="trace.flaky", options=RETRY_FAST, catalog=catalog)
    database = str(tmp_path / "jobs.db")
    done = asyncio.Event()

    async def handler(job: Any) -> None:
        with tracer.start_as_current_span("inside the handler"):
            pass
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")
        done.set()

    async def go() -> str:
        producer = open_queue("sqlite", path=database, sinks=[], catalog=catalog)
        instrument(producer, tracer_provider=provider)
        async with producer:
            with tracer.start_as_current_span("web request"):
                job = await producer.enqueue(flaky, None)
        consumer = open_queue("sqlite", path=database, sinks=[], catalog=catalog, poll_interval=0.05)
        consumer.register(flaky, handler)
        instrument(consumer, tracer_provider=provider)
        async with consumer:
            await consumer.start()
            await asyncio.wait_for(done.wait(), 20)
            await wait_until(lambda: len(exporter.get_finished_spans()) >= 6, message="every span ended")
            stored = await consumer.get(job.id)
            assert stored is not None and stored.status is JobStatus.COMPLETED
        return job.id

    job_id = asyncio.run(go())
    spans = {span.name: span for span in exporter.get_finished_spans()}
    runs = [span for span in exporter.get_finished_spans() if span.name == "process trace.flaky"]
    request, enqueue = spans["web request"], spans["enqueue trace.flaky"]
    assert len({span.context.trace_id for span in exporter.get_finished_spans()}) == 1  # one trace
    assert enqueue.kind is SpanKind.PRODUCER and enqueue.parent.span_id == request.context.span_id
    assert enqueue.attributes["messaging.message.id"] == job_id
    assert sorted(span.attributes["lssm_jobs.attempt"] for span in runs) == [1, 2]
    for run in runs:  # every attempt, the retry included, is a child of the enqueue span
        assert run.kind is SpanKind.CONSUMER and run.parent.span_id == enqueue.context.span_id
    first = next(span for span in runs if span.attributes["lssm_jobs.attempt"] == 1)
    second = next(span for span in runs if span.attributes["lssm_jobs.attempt"] == 2)
    assert first.status.status_code is StatusCode.ERROR and first.events[0].name == "exception"
    assert second.status.status_code is not StatusCode.ERROR
    inner = [span for span in exporter.get_finished_spans() if span.name == "inside the handler"]
    assert {span.parent.span_id for span in inner} == {first.context.span_id, second.context.span_id}


def test_without_a_tracer_provider_nothing_is_instrumented() -> None:
    from lssm_jobs.observability.tracing import instrument, tracing_configured

    queue = JobQueue(MemoryBackend(), sinks=[])
    handler = queue.register("x.y", lambda job: None)
    assert not tracing_configured()
    assert instrument(queue) is None
    assert queue.meta_providers == [] and queue.handlers["x.y"] is handler


# -- queue selection -----------------------------------------------------------------------------------------


def test_parse_queues() -> None:
    assert parse_queues("a,b") == ["a", "b"]
    assert parse_queues("a,b", strict=True) == StrictOrder(["a", "b"])
    assert parse_queues("high>low") == StrictOrder(["high", "low"])
    weighted = parse_queues("high=3, low=1")
    assert isinstance(weighted, WeightedQueues) and weighted.weights == {"high": 3, "low": 1}
    assert list(weighted) == ["high", "low"]
    for bad in ("", "a,,b", "a=3,b", "a=0", "a=x", "a,a", "a>b,c", "a=1,a=2"):
        with pytest.raises(ValueError):
            parse_queues(bad)
    with pytest.raises(ValueError):
        parse_queues("a=3,b=1", strict=True)


def _run_order(selection: Any, jobs: dict[str, int], *, concurrency: int = 1) -> list[str]:
    order: list[str] = []

    async def go() -> None:
        queue = JobQueue(
            MemoryBackend(), sinks=[], queues=selection, concurrency=concurrency, poll_interval=0.05
        )
        queue.register("sel.job", lambda job: order.append(job.queue))
        async with queue:
            requests = [
                EnqueueRequest(job_type="sel.job", payload={}, queue=name)
                for name, count in jobs.items()
                for _ in range(count)
            ]
            await queue.enqueue_many(requests)
            await queue.start()
            await wait_until(lambda: len(order) == sum(jobs.values()), timeout=20, message="every job ran")

    asyncio.run(go())
    return order


def test_strict_order_runs_a_queue_only_when_the_ones_before_it_are_empty() -> None:
    order = _run_order(StrictOrder(["high", "low"]), {"low": 20, "high": 20})
    assert order == ["high"] * 20 + ["low"] * 20


def test_weighted_queues_share_slots_by_weight_and_starve_none() -> None:
    import random

    order = _run_order(WeightedQueues({"high": 3, "low": 1}, rng=random.Random(7)), {"high": 200, "low": 200})
    first = order[:200]
    share = first.count("high") / len(first)
    assert 0.6 < share < 0.9, share  # about 3 of 4 while both have work
    assert "low" in order[:40]  # the light queue is not starved
