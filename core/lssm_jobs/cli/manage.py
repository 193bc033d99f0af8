"""Commands that manage a running system: ``queue purge``, ``schedules list|pause|resume|trigger``,
``workers`` (the live workers) and ``top`` (a live view of every queue)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from lssm_jobs.cli.app import UsageError, build_queue, load_object
from lssm_jobs.cli.escape import escape
from lssm_jobs.errors import LssmJobsError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.queue import JobQueue

AddBackendFlags = Callable[[argparse.ArgumentParser], None]


def add_commands(commands: Any, add_backend_flags: AddBackendFlags) -> None:
    """Declare ``queue``, ``schedules``, ``workers`` and ``top`` on the ``lssm-jobs`` subcommand parser."""
    queue = commands.add_parser("queue", help="manage one queue's waiting jobs")
    queue_commands = queue.add_subparsers(dest="queue_command", metavar="ACTION")
    queue_commands.required = True
    purge = queue_commands.add_parser("purge", help="delete a queue's pending and scheduled jobs")
    purge.add_argument("name", metavar="NAME", help="the queue")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    purge.add_argument("--json", action="store_true", help="print JSON")
    add_backend_flags(purge)

    schedules = commands.add_parser("schedules", help="list, pause, resume or trigger schedules")
    schedule_commands = schedules.add_subparsers(dest="schedules_command", metavar="ACTION")
    schedule_commands.required = True
    for action, text in (
        ("list", "every schedule the store knows (with --app, also what each one runs)"),
        ("pause", "pause a schedule for every scheduler instance"),
        ("resume", "resume a paused schedule"),
        ("trigger", "fire a schedule once now (needs --app: the store knows when, not what)"),
    ):
        sub = schedule_commands.add_parser(action, help=text)
        if action != "list":
            sub.add_argument("schedule", metavar="NAME", help="the schedule")
        sub.add_argument(
            "--app", help="module:attribute of the JobScheduler (or its queue); else the backend's store"
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
        add_backend_flags(sub)

    workers = commands.add_parser("workers", help="list the live workers (host, pid, queues, jobs done, running)")
    workers.add_argument("--json", action="store_true", help="print JSON")
    add_backend_flags(workers)

    top = commands.add_parser("top", help="live view of throughput, in-flight, failures and depth per queue")
    top.add_argument("--interval", type=_interval, default=2.0, help="seconds between refreshes (default 2)")
    top.add_argument("--once", action="store_true", help="show one view (rates over one interval) and exit")
    top.add_argument("--json", action="store_true", help="print each view as one JSON object per line")
    top.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        metavar="URL",
        help="a worker's /metrics (repeatable): exact rates from its counters instead of estimates",
    )
    add_backend_flags(top)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.05 and 3600 seconds, got {text}")
    return value


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- queue purge ----------------------------------------------------------------------------------------------


async def queue_command(args: argparse.Namespace) -> int:
    queue = build_queue(args.backend, args.url, args.option)
    try:
        await queue.open()
        backend = queue.backend
        if not type(backend).capabilities.purge_queue:
            raise LssmJobsError(
                f"the {type(backend).name or type(backend).__name__} backend cannot purge queues"
            )
        counts = (await queue.counts()).get(args.name, {})
        waiting = counts.get(JobStatus.PENDING, 0) + counts.get(JobStatus.SCHEDULED, 0)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(f"purging queue {args.name!r} needs --yes (no terminal to confirm on)")
            answer = await asyncio.to_thread(
                input,
                f"Delete the {waiting} pending and scheduled jobs of queue {escape(repr(args.name))}? "
                "Running jobs and dead letters stay. [y/N] ",
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing purged", file=sys.stderr)
                return 1
        purged = await backend.purge_queue(args.name)
    finally:
        await queue.close()
    if args.json:
        print(json.dumps({"queue": args.name, "purged": purged}))
    else:
        print(f"purged {purged} jobs from queue {escape(args.name)}")
    return 0


# -- workers --------------------------------------------------------------------------------------------------


async def workers_command(args: argparse.Namespace) -> int:
    from lssm_jobs.backends.base import WorkerRegistry

    queue = build_queue(args.backend, args.url, args.option)
    try:
        await queue.open()
        backend = queue.backend
        if not (type(backend).capabilities.worker_registry and isinstance(backend, WorkerRegistry)):
            raise LssmJobsError(
                f"the {type(backend).name or type(backend).__name__} backend does not keep a list of live "
                "workers (no worker_registry capability)"
            )
        workers = await backend.list_workers()
    finally:
        await queue.close()
    if args.json:
        print(json.dumps([_worker_data(worker) for worker in workers]))
        return 0
    if not workers:
        print("(no live workers)")
        return 0
    now = time.time()
    rows = [
        (
            escape(worker.id),
            escape(f"{worker.host}:{worker.pid}"),
            escape(",".join(worker.queues) if worker.queues is not None else "(all)"),
            f"{worker.in_flight}/{worker.concurrency}",
            f"{worker.jobs_done:,}",
            _ago(now - worker.started_at),
            _ago(now - worker.last_seen),
        )
        for worker in workers
    ]
    header = ("worker", "host:pid", "queues", "running", "done", "up", "seen")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    print("  ".join(title.ljust(width) for title, width in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _worker_data(worker: Any) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": None if worker.queues is None else list(worker.queues),
        "concurrency": worker.concurrency,
        "started_at": worker.started_at,
        "last_seen": worker.last_seen,
        "jobs_done": worker.jobs_done,
        "in_flight": worker.in_flight,
        "current_jobs": list(worker.current_jobs),
    }


def _ago(seconds: float) -> str:
    """``42s``, ``5m03s``, ``2h07m``, ``3d04h`` (a clock behind another shows as ``0s``)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


# -- schedules ------------------------------------------------------------------------------------------------


def _scheduler(args: argparse.Namespace) -> Any:
    from lssm_jobs.scheduler import JobScheduler, resolve_scheduler

    if args.app:
        if args.backend or args.url or args.option:
            raise UsageError("--app brings its own queue and store; drop --backend/--url/--option")
        target = load_object(args.app)
        try:
            return resolve_scheduler(target, args.app.partition(":")[0])
        except (LookupError, TypeError) as error:
            raise UsageError(f"{args.app}: {error}") from error
    if args.schedules_command == "trigger":
        raise UsageError(
            "schedules trigger needs --app module:attribute of the JobScheduler: the store knows when a "
            "schedule fires, not what it runs"
        )
    return JobScheduler(build_queue(args.backend, args.url, args.option))


async def schedules_command(args: argparse.Namespace) -> int:
    scheduler = _scheduler(args)
    try:
        await scheduler.queue.open()
        await scheduler.store.open()
        if args.schedules_command == "list":
            return await _list_schedules(scheduler, args.json)
        name = args.schedule
        if args.schedules_command == "trigger":
            job_id = await scheduler.trigger(name)
            result: dict[str, Any] = {"schedule": name, "triggered": True, "job_id": job_id}
            text = f"triggered {escape(name)}" + (
                f": enqueued job {escape(job_id)}" if job_id else ": ran its callable"
            )
        else:
            paused = args.schedules_command == "pause"
            await (scheduler.pause(name) if paused else scheduler.resume(name))
            result = {"schedule": name, "paused": paused}
            text = f"{'paused' if paused else 'resumed'} {escape(name)}"
        print(json.dumps(result) if args.json else text)
        return 0
    finally:
        await scheduler.store.close()
        await scheduler.queue.close()


async def _list_schedules(scheduler: Any, as_json: bool) -> int:
    states = {state.name: state for state in await scheduler.store.states()}
    defined = {info.name: info for info in scheduler.list()}
    rows = []
    for name in sorted(set(states) | set(defined)):
        state, info = states.get(name), defined.get(name)
        rows.append(
            {
                "name": name,
                "paused": state.paused if state is not None else bool(info and info.paused),
                "trigger": info.trigger if info is not None else None,
                "target": info.target if info is not None else None,
                "last_tick": _when(state.last_tick) if state is not None else None,
                "next_tick": _when(state.next_tick) if state is not None else None,
                "stored": state is not None,
            }
        )
    if as_json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("(no schedules)")
        return 0
    # Schedule names come from the store (anyone who can write to it): escaped, so no control sequence
    # reaches the terminal and no newline forges a row.
    names = {row["name"]: escape(row["name"]) for row in rows}
    width = max(4, *(len(shown) for shown in names.values()))
    print(f"{'name':<{width}}  {'state':<7}  {'last tick':<23}  {'next tick':<23}  trigger / target")
    for row in rows:
        state = "paused" if row["paused"] else "active"
        described = escape(" / ".join(filter(None, [row["trigger"], row["target"]])) or "-")
        print(
            f"{names[row['name']]:<{width}}  {state:<7}  {row['last_tick'] or '-':<23}  "
            f"{row['next_tick'] or '-':<23}  {described}"
        )
    return 0


# -- top --------------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(lssm_jobs_\w+)_total\{([^}]*)\}\s+([0-9.eE+-]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_RATE_COUNTERS = ("completed", "retried", "failed", "dead_lettered")


def scrape_counters(urls: Sequence[str], timeout: float = 3.0) -> dict[str, dict[str, float]]:
    """Sum the job counters of the given ``/metrics`` endpoints per queue: {queue: {counter: value}}.

    :raises LssmJobsError: an endpoint cannot be read.
    """
    totals: dict[str, dict[str, float]] = {}
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise LssmJobsError(f"cannot read metrics from {url}: {error}") from None
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match:
                continue
            counter = match.group(1).removeprefix("lssm_jobs_")
            if counter not in _RATE_COUNTERS:
                continue
            labels = dict(_LABEL.findall(match.group(2)))
            per_queue = totals.setdefault(labels.get("queue", "?"), {})
            per_queue[counter] = per_queue.get(counter, 0.0) + float(match.group(3))
    return totals


class TopSampler:
    """Two looks at the system, ``interval`` apart, give one view: depth from ``counts()``, rates from
    the workers' counters (``--metrics-url``) or, without them, estimated from changes in the counts."""

    def __init__(self, queue: JobQueue, metrics_urls: Sequence[str]) -> None:
        self.queue = queue
        self.metrics_urls = list(metrics_urls)
        self._previous: tuple[float, dict[str, dict[JobStatus, int]], dict[str, dict[str, float]]] | None = (
            None
        )

    async def sample(self) -> dict[str, Any] | None:
        now = time.monotonic()
        counts = await self.queue.counts()
        counters = await asyncio.to_thread(scrape_counters, self.metrics_urls) if self.metrics_urls else {}
        previous, self._previous = self._previous, (now, counts, counters)
        if previous is None:
            return None
        return self._view(now - previous[0], previous[1], counts, previous[2], counters)

    def _view(
        self,
        elapsed: float,
        old_counts: dict[str, dict[JobStatus, int]],
        counts: dict[str, dict[JobStatus, int]],
        old_counters: dict[str, dict[str, float]],
        counters: dict[str, dict[str, float]],
    ) -> dict[str, Any]:
        exact = bool(self.metrics_urls)
        queues: dict[str, dict[str, Any]] = {}
        for name in sorted(set(counts) | set(counters)):
            per = counts.get(name, {})
            row: dict[str, Any] = {
                "pending": per.get(JobStatus.PENDING, 0),
                "scheduled": per.get(JobStatus.SCHEDULED, 0),
                "in_flight": per.get(JobStatus.ACTIVE, 0),
                "dead": per.get(JobStatus.DEAD, 0),
            }
            if exact:
                now_c, old_c = counters.get(name, {}), old_counters.get(name, {})

                def rate(key: str, now_c: dict[str, float] = now_c, old_c: dict[str, float] = old_c) -> float:
                    return max(0.0, now_c.get(key, 0.0) - old_c.get(key, 0.0)) / elapsed

                row["completed_per_s"] = rate("completed")
                row["failures_per_s"] = rate("retried") + rate("failed")
                row["dead_lettered_per_s"] = rate("dead_lettered")
            else:
                old = old_counts.get(name, {})
                done = per.get(JobStatus.COMPLETED, 0) - old.get(JobStatus.COMPLETED, 0)
                died = per.get(JobStatus.DEAD, 0) - old.get(JobStatus.DEAD, 0)
                row["completed_per_s"] = max(0, done) / elapsed
                row["failures_per_s"] = None  # retries leave no trace in the counts
                row["dead_lettered_per_s"] = max(0, died) / elapsed
            queues[name] = row
        return {
            "time": time.time(),
            "interval_s": round(elapsed, 3),
            "rates": "metrics" if exact else "estimated from counts",
            "queues": queues,
        }


def render_top(view: dict[str, Any]) -> str:
    def number(value: Any, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    queues = view["queues"]
    shown = {name: escape(name) for name in queues}  # queue names come from whoever enqueued
    width = max(5, *(len(name) for name in shown.values())) if queues else 5
    lines = [
        f"lssm-jobs top  {_when(view['time'])}  every {view['interval_s']:.1f}s  (rates: {view['rates']})",
        "",
        f"{'queue':<{width}}  {'done/s':>9}  {'fail/s':>8}  {'dead/s':>7}  {'in flight':>9}  "
        f"{'pending':>9}  {'scheduled':>9}  {'dead':>7}",
    ]
    totals = {"completed_per_s": 0.0, "in_flight": 0, "pending": 0, "scheduled": 0, "dead": 0}
    for name, row in queues.items():
        lines.append(
            f"{shown[name]:<{width}}  {number(row['completed_per_s'], 1):>9}  {number(row['failures_per_s'], 1):>8}  "
            f"{number(row['dead_lettered_per_s'], 1):>7}  {row['in_flight']:>9,}  {row['pending']:>9,}  "
            f"{row['scheduled']:>9,}  {row['dead']:>7,}"
        )
        for key in totals:
            totals[key] += row[key] or 0
    if not queues:
        lines.append("(no jobs)")
    else:
        lines.append(
            f"{'all':<{width}}  {totals['completed_per_s']:>9,.1f}  {'':>8}  {'':>7}  {totals['in_flight']:>9,}  "
            f"{totals['pending']:>9,}  {totals['scheduled']:>9,}  {totals['dead']:>7,}"
        )
    return "\n".join(lines)


async def top_command(args: argparse.Namespace) -> int:
    queue = build_queue(args.backend, args.url, args.option)
    sampler = TopSampler(queue, args.metrics_url)
    tty = sys.stdout.isatty() and not args.json
    try:
        await sampler.sample()
        while True:
            await asyncio.sleep(args.interval)
            view = await sampler.sample()
            assert view is not None
            if args.json:
                print(json.dumps(view), flush=True)
            elif tty:
                sys.stdout.write("\x1b[H\x1b[2J" + render_top(view) + "\n\n(Ctrl-C to quit)\n")
                sys.stdout.flush()
            else:
                print(render_top(view) + "\n", flush=True)
            if args.once:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        await queue.close()
