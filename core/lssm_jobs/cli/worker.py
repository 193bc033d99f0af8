"""``lssm-jobs worker``: one worker process, or a supervisor of several (``--processes``), with health and
metrics endpoints, traces when OpenTelemetry is configured, and the three-step stop (drain, stop at once
releasing jobs, exit now)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from lssm_jobs.cli.app import (
    BACKEND_ENV,
    DEFAULT_BACKEND,
    OPTIONS_ENV,
    URL_ENV,
    UsageError,
    backend_options,
    build_queue,
    load_object,
)
from lssm_jobs.cli.progress import Progress
from lssm_jobs.consumer import cancel_for_stop
from lssm_jobs.handlers import Handlers
from lssm_jobs.observability.http import DEFAULT_HOST, OpsHTTPServer, Route
from lssm_jobs.observability.logs import notice
from lssm_jobs.queue import JobQueue
from lssm_jobs.queue_selection import parse_queues
from lssm_jobs.supervisor.memory import parse_size
from lssm_jobs.supervisor.protocol import CHANNEL_FLAG, INDEX_ENV, INDEX_FLAG, METRICS_FLAG

log = logging.getLogger("lssm_jobs.cli")

#: Seconds a supervised worker process may go without a heartbeat before liveness fails.
WORKER_SILENCE_LIMIT = 60.0
_HURRIED_EXIT = 130


# -- flags ----------------------------------------------------------------------------------------------------


def _processes(text: str) -> int:
    if text == "auto":
        from lssm_jobs.supervisor import cpu_count

        return cpu_count()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_worker_flags(worker: argparse.ArgumentParser) -> None:
    """The worker's process, stop and observability flags (``--queues`` is declared with the others)."""
    worker.add_argument(
        "--strict",
        action="store_true",
        help="lease from --queues in strict order (a,b: b only when a is idle)",
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight jobs may finish before they are released (default 30)",
    )
    processes = worker.add_argument_group("worker processes")
    processes.add_argument(
        "--processes",
        type=_processes,
        metavar="N",
        help="run N worker processes under a supervisor ('auto': one per CPU); default: this process only",
    )
    processes.add_argument(
        "--max-jobs", type=_count, metavar="N", help="replace a worker process after it ran N jobs"
    )
    processes.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="replace a worker process whose memory (RSS) is above SIZE, e.g. 512MB",
    )
    endpoints = worker.add_argument_group("health and metrics endpoints (HTTP)")
    endpoints.add_argument("--health-port", type=_port, metavar="PORT", help="serve /livez and /readyz")
    endpoints.add_argument("--health-host", default=DEFAULT_HOST, help="address to serve health on")
    endpoints.add_argument(
        "--metrics-port", type=_port, metavar="PORT", help="serve Prometheus /metrics (lssm-jobs[prometheus])"
    )
    endpoints.add_argument("--metrics-host", default=DEFAULT_HOST, help="address to serve metrics on")
    # Set by the supervisor on the worker processes it starts.
    worker.add_argument(CHANNEL_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    worker.add_argument(INDEX_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    worker.add_argument(METRICS_FLAG, action="store_true", help=argparse.SUPPRESS)


# -- stopping -------------------------------------------------------------------------------------------------


def running_dispatches() -> list[asyncio.Task[Any]]:
    """The tasks running a job through the dispatcher now (each releases its job when cancelled)."""
    from lssm_jobs.worker import Dispatcher

    code = Dispatcher.__call__.__code__
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "cr_code", None) is code
    ]


class Shutdown:
    """The worker's stop: first signal (or order) drains, the second stops at once, the third exits.

    Stopping at once cancels the jobs running now: the dispatcher releases each back to its queue (ready
    again, the attempt not counted), so nothing waits for a lease to expire; then the process exits 130
    without waiting for sync handlers still running in threads.
    """

    def __init__(self, stopping: asyncio.Event, *, quiet: bool = False) -> None:
        self.stopping = stopping
        self.quiet = quiet
        self.hurried = False
        self.signals = 0
        self.on_drain: list[Callable[[], None]] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.signal, signum)

    def signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            # Drain first, then say so: whoever reads the line finds the worker draining (its readiness too).
            self.drain()
            if not self.quiet:
                notice(f"\nlssm-jobs: {name} received, draining (again to stop at once)")
        elif self.signals == 2:
            self.hurry()
        else:
            notice("lssm-jobs: exiting now")
            os._exit(_HURRIED_EXIT)

    def drain(self, reason: str = "signal") -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        for callback in self.on_drain:
            callback()

    def hurry(self) -> None:
        self.drain()
        if self.hurried:
            return
        self.hurried = True
        running = running_dispatches()
        if not self.quiet:
            notice(f"lssm-jobs: stopping now: releasing {len(running)} running jobs back to their queues")
        for task in running:
            cancel_for_stop(task)


# -- the worker -----------------------------------------------------------------------------------------------


def _scheduler_for(spec: str, target: Any) -> Any:
    from lssm_jobs.scheduler import resolve_scheduler

    try:
        return resolve_scheduler(target, spec.partition(":")[0])
    except (LookupError, TypeError) as error:
        raise UsageError(f"{spec}: {error}") from error


def _queue_selection(args: argparse.Namespace) -> Any:
    if args.queues is None:
        if args.strict:
            raise UsageError("--strict needs --queues (the order to lease in)")
        return None
    try:
        return parse_queues(args.queues, strict=args.strict)
    except ValueError as error:
        raise UsageError(f"--queues: {error}") from None


def _build(args: argparse.Namespace) -> tuple[JobQueue, Any]:
    """The worker's queue and scheduler (None unless --with-scheduler), checked but not opened."""
    from lssm_jobs.scheduler import JobScheduler

    target = load_object(args.app)
    if callable(target) and not isinstance(target, (JobQueue, Handlers, JobScheduler)):
        target = target()  # an app factory: returns a JobQueue, Handlers set or JobScheduler
    scheduler: Any = None
    if isinstance(target, JobScheduler):
        scheduler, target = target, target.queue
    queue = build_queue(
        args.backend,
        args.url,
        args.option,
        app=target,
        queue_options={
            "concurrency": args.concurrency,
            "queues": _queue_selection(args),
            "shutdown_timeout": args.shutdown_timeout,
        },
    )
    if args.with_scheduler is None:
        scheduler = None  # APP may name a scheduler only to find its queue; it runs with --with-scheduler
    elif args.with_scheduler:
        scheduler = _scheduler_for(args.with_scheduler, load_object(args.with_scheduler))
    elif scheduler is None:
        scheduler = _scheduler_for(args.app, queue)
    if scheduler is not None and scheduler.queue is not queue:
        raise UsageError("the scheduler must be built on the worker's queue (JobScheduler(queue))")
    if not queue.handlers:
        raise UsageError(f"{args.app} registers no job handlers; nothing to run")
    return queue, scheduler


def _describe(queue: JobQueue) -> str:
    queues = queue.consume_options.queues
    shown = getattr(queues, "describe", None)
    names = shown() if callable(shown) else ", ".join(queues or ["(all)"])
    return (
        f"{type(queue.backend).__name__}, concurrency {queue.consume_options.concurrency}, queues {names}, "
        f"handlers {', '.join(sorted(queue.handlers))}"
    )


def _serve(args: argparse.Namespace, routes: dict[str, dict[str, Route]]) -> list[OpsHTTPServer]:
    """Start the HTTP endpoints: ``routes`` by kind ("health", "metrics"); one server when they share a
    port."""
    wanted: dict[tuple[str, int], dict[str, Route]] = {}
    for kind, host, port in (
        ("health", args.health_host, args.health_port),
        ("metrics", args.metrics_host, args.metrics_port),
    ):
        if port is not None and kind in routes:
            wanted.setdefault((host, port), {}).update(routes[kind])
    servers = []
    try:
        for (host, port), served in wanted.items():
            server = OpsHTTPServer(host, port, served)
            servers.append(server)
            notice(f"lssm-jobs: serving {', '.join(sorted(served))} on {server.url}")
    except OSError as error:
        for server in servers:
            server.close()
        raise UsageError(str(error)) from None
    return servers


def _metrics_available(args: argparse.Namespace) -> None:
    if args.metrics_port is not None:
        from lssm_jobs.observability.prometheus import MissingExtraError, require_prometheus

        try:
            require_prometheus()
        except MissingExtraError as error:
            raise UsageError(f"--metrics-port: {error}") from None


def _supervising(args: argparse.Namespace) -> bool:
    if args.supervised is not None:
        return False
    return args.processes is not None or args.max_jobs is not None or args.max_memory is not None


async def run_worker(args: argparse.Namespace) -> int:
    _metrics_available(args)
    queue, scheduler = _build(args)
    if _supervising(args):
        return await _run_supervisor(args, queue)
    return await _run_one(args, queue, scheduler)


async def _run_one(args: argparse.Namespace, queue: JobQueue, scheduler: Any) -> int:
    from lssm_jobs.observability.health import Health, backend_reachable
    from lssm_jobs.observability.tracing import instrument

    loop = asyncio.get_running_loop()
    supervised = args.supervised is not None
    stopping = asyncio.Event()
    shutdown = Shutdown(stopping, quiet=supervised)
    shutdown.install()
    instrument(queue)  # only when OpenTelemetry is installed and configured
    routes: dict[str, dict[str, Route]] = {}
    if args.metrics_port is not None or args.supervised_metrics:
        from lssm_jobs.observability.prometheus import QueueDepthCollector, metrics_route, require_prometheus

        queue.events.add_sink(queue.plugins.event_sink("prometheus").factory())
        if args.metrics_port is not None:
            registry = require_prometheus().REGISTRY
            registry.register(QueueDepthCollector(queue, loop))
            routes["metrics"] = {"/metrics": metrics_route(registry)}
    health = Health(loop, backend_check=lambda: backend_reachable(queue.backend, 3.0))
    shutdown.on_drain.append(lambda: setattr(health, "state", "draining"))
    routes["health"] = health.routes()
    link = None
    if supervised:
        from lssm_jobs.supervisor.child import SupervisorLink

        link = SupervisorLink(
            args.supervised,
            queue,
            drain=shutdown.drain,
            hurry=shutdown.hurry,
            max_jobs=args.max_jobs,
            max_memory=args.max_memory,
        )
    progress = None
    if not args.no_progress and not supervised:
        progress = Progress(queue, label="worker", as_json=args.json)
    if not supervised:
        notice(
            f"lssm-jobs worker: {_describe(queue)}"
            + (f", scheduler with {len(scheduler.list())} schedules" if scheduler is not None else "")
        )
    servers = _serve(args, routes)
    try:
        health.start()
        if link is not None:
            await link.start()
        if progress:
            progress.start()
        if scheduler is not None:
            await scheduler.start()
        runner = asyncio.create_task(queue.run(stopping), name="lssm-jobs worker")
        while not queue.running and not runner.done():
            await asyncio.sleep(0.02)
        if queue.running and not stopping.is_set():
            health.state = "running"
            if link is not None:
                link.ready()
        await runner
    finally:
        health.state = "draining"
        for server in servers:
            server.close()
        await health.close()
        if scheduler is not None:
            await scheduler.stop()
        if progress:
            await progress.stop()
        await queue.close()
        if link is not None:
            await link.close()
    if shutdown.hurried:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(_HURRIED_EXIT)  # sync handlers may still run in threads; their jobs were released
    return 0


# -- the supervisor -------------------------------------------------------------------------------------------


def _child_command(args: argparse.Namespace, index: int) -> list[str]:
    argv = [sys.executable, "-m", "lssm_jobs.cli", "--log-level", str(args.log_level)]
    argv += ["--log-format", args.log_format]
    if args.debug:
        argv.append("--debug")
    argv += ["worker", args.app, "--no-progress", INDEX_FLAG, str(index)]
    if args.concurrency is not None:
        argv += ["--concurrency", str(args.concurrency)]
    if args.queues is not None:
        argv += ["--queues", args.queues]
    if args.strict:
        argv.append("--strict")
    if args.shutdown_timeout is not None:
        argv += ["--shutdown-timeout", repr(args.shutdown_timeout)]
    if args.max_jobs is not None:
        argv += ["--max-jobs", str(args.max_jobs)]
    if args.max_memory is not None:
        argv += ["--max-memory", str(args.max_memory)]
    if args.backend:
        argv += ["--backend", args.backend]
    if args.metrics_port is not None:
        argv.append(METRICS_FLAG)
    if args.with_scheduler is not None and index == 0:  # schedules fire once anyway; one process runs them
        argv.append(f"--with-scheduler={args.with_scheduler}" if args.with_scheduler else "--with-scheduler")
    return argv


def _child_environment(args: argparse.Namespace, metrics_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if args.url or args.option:
        # Backend settings travel in the environment, not on command lines (visible in `ps`): the URL and
        # options may hold credentials. Merged as the supervisor read them (flags over environment).
        name = args.backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
        options = backend_options(name, args.url or os.environ.get(URL_ENV), args.option)
        url = options.pop("url", None)
        if url is not None:
            env[URL_ENV] = str(url)
        env[OPTIONS_ENV] = json.dumps(options)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


async def _run_supervisor(args: argparse.Namespace, queue: JobQueue) -> int:
    from lssm_jobs.observability.health import Health, backend_reachable
    from lssm_jobs.supervisor import Supervisor

    loop = asyncio.get_running_loop()
    processes = args.processes or 1
    metrics_dir = tempfile.mkdtemp(prefix="lssm-jobs-metrics-") if args.metrics_port is not None else None
    base_env = _child_environment(args, metrics_dir)
    on_exit = None
    on_restart = None
    routes: dict[str, dict[str, Route]] = {}
    if metrics_dir is not None:
        from lssm_jobs.observability import prometheus

        registry = prometheus.multiprocess_registry(metrics_dir)
        registry.register(prometheus.QueueDepthCollector(queue, loop))
        restarts = prometheus.require_prometheus().Counter(
            "lssm_jobs_worker_restarts_total",
            "Worker processes started again by the supervisor, by reason (crash, recycle)",
            ["reason"],
            registry=registry,
        )
        routes["metrics"] = {"/metrics": prometheus.metrics_route(registry)}

        def on_exit(pid: int) -> None:
            prometheus.mark_process_dead(pid, metrics_dir)

        def on_restart(reason: str) -> None:
            restarts.labels(reason).inc()

    supervisor = Supervisor(
        lambda index: _child_command(args, index),
        processes=processes,
        env=lambda index: {**base_env, INDEX_ENV: str(index)},
        shutdown_timeout=(
            args.shutdown_timeout
            if args.shutdown_timeout is not None
            else queue.consume_options.shutdown_timeout
        ),
        channel_flag=CHANNEL_FLAG,
        on_exit=on_exit,
        on_restart=on_restart,
    )
    health = Health(
        loop,
        backend_check=lambda: backend_reachable(queue.backend, 3.0),
        live_checks=[("workers", lambda: "; ".join(supervisor.silent_workers(WORKER_SILENCE_LIMIT)) or None)],
        ready_checks=[
            ("workers", lambda: None if supervisor.ready_count() else "no worker process is consuming"),
            ("draining", lambda: "draining" if supervisor.draining else None),
        ],
    )
    routes["health"] = health.routes()
    limits = []
    if args.max_jobs is not None:
        limits.append(f"recycled after {args.max_jobs} jobs")
    if args.max_memory is not None:
        from lssm_jobs.supervisor import format_size

        limits.append(f"recycled above {format_size(args.max_memory)}")
    notice(
        f"lssm-jobs worker: supervising {processes} worker processes ({_describe(queue)}"
        + (f"; {', '.join(limits)}" if limits else "")
        + ")"
    )
    servers = _serve(args, routes)
    try:
        await queue.open()
        health.state = "running"
        health.start()
        return await supervisor.run()
    finally:
        health.state = "draining"
        for server in servers:
            server.close()
        await health.close()
        await queue.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
