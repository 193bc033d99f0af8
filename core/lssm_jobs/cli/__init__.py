"""The ``lssm-jobs`` command line. Bad arguments give one clear error line and a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import attrs

from lssm_jobs.cli import jobs as job_commands
from lssm_jobs.cli import manage
from lssm_jobs.cli.app import UsageError, build_queue, load_object
from lssm_jobs.cli.escape import escape, escape_lines
from lssm_jobs.cli.output import describe_capabilities, print_counts
from lssm_jobs.cli.progress import Progress
from lssm_jobs.cli.worker import add_worker_flags, run_worker
from lssm_jobs.errors import DedupeConflictError, LssmJobsError
from lssm_jobs.observability.logs import LOG_FORMATS, configure_logging, redact
from lssm_jobs.queue import JobQueue

log = logging.getLogger("lssm_jobs.cli")


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend (flags win over LSSM_JOBS_BACKEND / LSSM_JOBS_URL)")
    group.add_argument("--backend", "-b", help="backend plugin name (default: sqlite)")
    group.add_argument("--url", help="backend URL, e.g. redis://127.0.0.1:6379/0 or sqlite:///jobs.db")
    group.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra backend option (value parsed as JSON when it can be); repeatable",
    )


#: Destination prefix of the flags that backends declare for the worker command (``worker_flags``).
_WORKER_FLAG_DEST = "backend_flag_"


def _add_backend_worker_flags(parser: argparse.ArgumentParser) -> None:
    """The flags installed backends declare for ``worker`` (``QueueBackendSpec.worker_flags``), each passed
    to the chosen backend as the option of that name."""
    from lssm_jobs.plugins import get_plugins

    owners: dict[str, list[str]] = {}
    help_texts: dict[str, str] = {}
    for name, spec in sorted(get_plugins().queue_backends().items()):
        for option in spec.worker_flags:
            owners.setdefault(option, []).append(name)
            help_texts.setdefault(option, spec.options_help.get(option, ""))
    if not owners:
        return
    taken = {flag for action in parser._actions for flag in action.option_strings}
    group = parser.add_argument_group("options of the backends that declare them")
    for option, backends in sorted(owners.items()):
        flag = "--" + option.replace("_", "-")
        if flag in taken:
            log.warning("backend option %r of %s clashes with the worker flag %s; use -o", option, backends, flag)
            continue
        group.add_argument(
            flag,
            dest=_WORKER_FLAG_DEST + option,
            metavar=option.upper(),
            help=f"{help_texts[option]} (backend {', '.join(backends)})",
        )


def _worker_flag_options(args: argparse.Namespace, backend: str | None) -> list[str]:
    """The backend-declared worker flags given, as ``-o`` options for the chosen backend.

    :raises UsageError: a flag the chosen backend does not declare.
    """
    from lssm_jobs.cli.app import BACKEND_ENV, DEFAULT_BACKEND
    from lssm_jobs.plugins import get_plugins

    given = {
        key[len(_WORKER_FLAG_DEST) :]: value
        for key, value in vars(args).items()
        if key.startswith(_WORKER_FLAG_DEST) and value is not None
    }
    if not given:
        return []
    import os

    name = backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    declared = set(get_plugins().queue_backend(name).worker_flags)
    for option in given:
        if option not in declared:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is not an option of backend {name!r}")
    return [f"{option}={value}" for option, value in given.items()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lssm-jobs", description="Typed background jobs and scheduler.")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines (default) or one JSON object per line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    worker = commands.add_parser("worker", help="process jobs until SIGTERM/SIGINT (graceful drain)")
    worker.add_argument(
        "app", metavar="APP", help="module:attribute of a JobQueue, Handlers set or JobScheduler"
    )
    worker.add_argument("--concurrency", "-c", type=_positive_int, help="jobs run at once (default 10)")
    worker.add_argument(
        "--queues",
        "-q",
        metavar="QUEUES",
        help="queues to consume (default: all): a,b; weighted a=3,b=1; strict order a>b (or a,b --strict)",
    )
    worker.add_argument(
        "--with-scheduler",
        nargs="?",
        const="",
        metavar="SCHEDULER",
        help="also run a scheduler: APP itself if it is a JobScheduler, else module:attribute",
    )
    worker.add_argument("--no-progress", action="store_true", help="do not print live progress")
    worker.add_argument("--json", action="store_true", help="print progress as JSON lines")
    add_worker_flags(worker)
    _add_backend_flags(worker)
    _add_backend_worker_flags(worker)

    scheduler = commands.add_parser("scheduler", help="run a JobScheduler until SIGTERM/SIGINT")
    scheduler.add_argument("app", metavar="APP", help="module:attribute of a JobScheduler")
    scheduler.add_argument("--no-progress", action="store_true")
    scheduler.add_argument("--json", action="store_true", help="print progress as JSON lines")

    enqueue = commands.add_parser("enqueue", help="enqueue one job")
    enqueue.add_argument("type", metavar="TYPE")
    enqueue.add_argument("--payload", "-p", default="{}", help="JSON payload (default {})")
    enqueue.add_argument("--delay-ms", type=_non_negative_int)
    enqueue.add_argument("--priority", type=int)
    enqueue.add_argument("--queue")
    enqueue.add_argument("--dedupe-key")
    enqueue.add_argument(
        "--app", help="module:attribute to import first, so TYPE is validated by its definition"
    )
    enqueue.add_argument("--json", action="store_true", help="print the job as JSON (always: one line)")
    _add_backend_flags(enqueue)

    status = commands.add_parser("status", help="job counts per queue and state")
    status.add_argument("--json", action="store_true", help="print JSON")
    _add_backend_flags(status)

    dlq = commands.add_parser("dlq", help="inspect and manage the dead letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="ACTION")
    dlq_commands.required = True
    dlq_list = dlq_commands.add_parser("list", help="list dead letters, most recent first")
    dlq_list.add_argument("--limit", type=_positive_int, default=50)
    dlq_list.add_argument("--json", action="store_true")
    _add_backend_flags(dlq_list)
    dlq_show = dlq_commands.add_parser("show", help="show one dead letter with its error and traceback")
    dlq_show.add_argument("job_id", metavar="JOB_ID")
    dlq_show.add_argument("--json", action="store_true")
    _add_backend_flags(dlq_show)
    dlq_replay = dlq_commands.add_parser("replay", help="put dead letters back in their queues")
    dlq_replay.add_argument("job_ids", metavar="JOB_ID", nargs="*")
    dlq_replay.add_argument("--all", action="store_true", help="replay every dead letter")
    dlq_replay.add_argument("--json", action="store_true")
    _add_backend_flags(dlq_replay)
    dlq_purge = dlq_commands.add_parser("purge", help="delete dead letters")
    dlq_purge.add_argument("job_ids", metavar="JOB_ID", nargs="*")
    dlq_purge.add_argument("--all", action="store_true", help="delete every dead letter")
    dlq_purge.add_argument("--json", action="store_true")
    _add_backend_flags(dlq_purge)

    plugins = commands.add_parser("plugins", help="list plugins, what they provide, and failures")
    plugins.add_argument("--json", action="store_true")

    schema = commands.add_parser("schema", help="print the persistence schema")
    schema.add_argument("--format", choices=["prisma", "sql"], default="sql")
    schema.add_argument(
        "--dialect",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="SQL dialect (with --format sql; Prisma's datasource provider with prisma)",
    )
    schema.add_argument("--json", action="store_true", help='print {"format", "dialect", "schema"} as JSON')

    demo = commands.add_parser("demo", help="run a realistic demo on a fresh sqlite database")
    demo.add_argument("--path", default="lssm-jobs-demo.db", help="database file (default lssm-jobs-demo.db)")
    demo.add_argument("--keep", action="store_true", help="keep the database for 'status' and 'dlq list'")
    demo.add_argument(
        "--jobs", type=_positive_int, default=200, help="how many jobs to enqueue (default 200)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON (progress on stderr)")
    manage.add_commands(commands, _add_backend_flags)
    job_commands.add_commands(commands, _add_backend_flags)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- commands -------------------------------------------------------------------------------------------------


def _stop_on_signals(stopping: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    received = 0

    def handle(signum: int) -> None:
        nonlocal received
        received += 1
        if received == 1:
            stopping.set()  # before saying so
            print(
                f"\nlssm-jobs: {signal.Signals(signum).name} received, draining (again to exit at once)",
                file=sys.stderr,
            )
        else:
            print(
                "lssm-jobs: exiting now; unfinished jobs run again after their lease expires", file=sys.stderr
            )
            raise SystemExit(130)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle, signum)


def _scheduler_for(spec: str, target: Any) -> Any:
    from lssm_jobs.scheduler import resolve_scheduler

    try:
        return resolve_scheduler(target, spec.partition(":")[0])
    except (LookupError, TypeError) as error:
        raise UsageError(f"{spec}: {error}") from error


async def _run_scheduler(args: argparse.Namespace) -> int:
    from lssm_jobs.scheduler import run_scheduler

    scheduler = _scheduler_for(args.app, load_object(args.app))
    stopping = asyncio.Event()
    _stop_on_signals(stopping)
    progress = None if args.no_progress else Progress(scheduler.queue, label="scheduler", as_json=args.json)
    print(f"lssm-jobs scheduler: {len(scheduler.list())} schedules", file=sys.stderr)
    try:
        if progress:
            progress.start()
        await run_scheduler(scheduler, stopping)
    finally:
        if progress:
            await progress.stop()
        await scheduler.queue.close()
    return 0


async def _enqueue(args: argparse.Namespace) -> int:
    if args.app:
        load_object(args.app)  # importing defines the job types, so the payload is validated
    try:
        payload = json.loads(args.payload)
    except ValueError as error:
        raise UsageError(f"--payload is not valid JSON: {error}") from error
    queue = build_queue(args.backend, args.url, args.option)
    try:
        job = await queue.enqueue(
            args.type,
            payload,
            delay_ms=args.delay_ms,
            priority=args.priority,
            queue=args.queue,
            dedupe_key=args.dedupe_key,
        )
    finally:
        await queue.close()
    print(
        json.dumps(
            {
                "id": job.id,
                "type": job.type,
                "queue": job.queue,
                "status": job.status.value,
                "run_at": _when(job.run_at),
            }
        )
    )
    return 0


async def _status(args: argparse.Namespace) -> int:
    queue = build_queue(args.backend, args.url, args.option)
    try:
        counts = await queue.counts()
    finally:
        await queue.close()
    print_counts(counts, as_json=args.json)
    return 0


async def _dlq(args: argparse.Namespace) -> int:
    queue = build_queue(args.backend, args.url, args.option)
    try:
        return await _dlq_action(queue, args)
    finally:
        await queue.close()


async def _dlq_action(queue: JobQueue, args: argparse.Namespace) -> int:
    if args.dlq_command == "list":
        dead = await queue.dead_letters.list(limit=args.limit)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": d.id,
                            "type": d.type,
                            "queue": d.queue,
                            "reason": d.reason,
                            "error": d.error,
                            "attempts": d.attempts,
                            "failed_at": d.failed_at,
                        }
                        for d in dead
                    ]
                )
            )
        elif not dead:
            print("(dead letter queue is empty)")
        for d in [] if args.json else dead:
            # Stored text is escaped: a newline in an error must not forge a line of this list.
            print(
                f"{escape(d.id)}  {_when(d.failed_at)}  {escape(d.type)}  [{escape(d.queue)}]  "
                f"attempts={d.attempts}  {escape(d.reason)}" + (f": {escape(d.error)}" if d.error else "")
            )
        return 0
    if args.dlq_command == "show":
        found = await queue.dead_letters.get(args.job_id)
        if found is None:
            print(f"lssm-jobs: error: no dead letter with id {escape(args.job_id)}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(_dead_letter_data(found)))
            return 0
        print(
            f"id:        {escape(found.id)}\ntype:      {escape(found.type)}\nqueue:     {escape(found.queue)}\n"
            f"failed at: {_when(found.failed_at)}\nattempts:  {found.attempts}\n"
            f"reason:    {escape(found.reason)}\nerror:     {escape(found.error or '-')}"
        )
        try:
            body = escape(found.body.decode())
        except UnicodeDecodeError:
            body = repr(found.body)
        print(f"envelope:  {body}")
        if found.traceback:
            print("traceback:\n" + escape_lines(found.traceback))
        return 0
    if args.dlq_command == "replay":
        if args.all == bool(args.job_ids):
            raise UsageError("give JOB_IDs or --all (not both)")
        if args.all:
            report = await queue.dead_letters.replay_all()
            replayed, conflicts, missing_count = report.replayed, list(report.conflicts), report.missing
            missing: list[str] = []
        else:
            replayed, conflicts, missing = 0, [], []
            for job_id in args.job_ids:
                try:
                    if await queue.dead_letters.replay(job_id):
                        replayed += 1
                    else:
                        missing.append(job_id)
                except DedupeConflictError as conflict:
                    conflicts.append(conflict)
            missing_count = len(missing)
        if args.json:
            data: dict[str, Any] = {"replayed": replayed}
            data.update({"gone": missing_count} if args.all else {"missing": missing})
            data["conflicts"] = [
                {"id": left.job_id, "dedupe_key": left.dedupe_key, "live_job_id": left.live_job_id}
                for left in conflicts
            ]
            print(json.dumps(data))
        else:
            summary = f"replayed {replayed} dead letters"
            if conflicts:
                summary += f"; {len(conflicts)} left in place (a live job holds their dedupe key)"
            if args.all and missing_count:
                summary += f"; {missing_count} were gone before their turn"
            print(summary)
        for left in conflicts:
            print(f"lssm-jobs: error: {escape(str(left))}", file=sys.stderr)
        if missing:
            print(f"lssm-jobs: error: no dead letter with id {escape(', '.join(missing))}", file=sys.stderr)
        return 1 if conflicts or missing else 0
    if args.all == bool(args.job_ids):
        raise UsageError("give JOB_IDs or --all (not both)")
    purged = await queue.dead_letters.purge(None if args.all else args.job_ids)
    print(json.dumps({"purged": purged}) if args.json else f"purged {purged} dead letters")
    return 0


def _dead_letter_data(found: Any) -> dict[str, Any]:
    """A dead letter as JSON data; the envelope as text when it is UTF-8, else as a Python bytes literal."""
    try:
        body = found.body.decode()
    except UnicodeDecodeError:
        body = repr(found.body)
    return {
        "id": found.id,
        "type": found.type,
        "queue": found.queue,
        "reason": found.reason,
        "error": found.error,
        "traceback": found.traceback,
        "attempts": found.attempts,
        "failed_at": found.failed_at,
        "envelope": body,
    }


def _plugins(args: argparse.Namespace) -> int:
    from lssm_jobs.plugins import get_plugins

    registry = get_plugins()
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": p.name,
                            "distribution": p.distribution,
                            "version": p.version,
                            "builtin": p.builtin,
                            "provides": p.provides,
                        }
                        for p in registry.plugins()
                    ],
                    "failed": [
                        {"name": f.name, "distribution": f.distribution, "error": f.error}
                        for f in registry.failures()
                    ],
                    "backends": {
                        name: {
                            "description": spec.description,
                            "capabilities": attrs.asdict(spec.capabilities),
                            "options": spec.options_help,
                        }
                        for name, spec in sorted(registry.queue_backends().items())
                    },
                }
            )
        )
        return 0
    for info in registry.plugins():
        origin = "built in" if info.builtin else f"{info.distribution} {info.version}"
        provides = (
            "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "nothing"
        )
        print(f"{info.name:<12} {origin:<28} {provides}")
        for backend in info.provides.get("backends", []):
            spec = registry.queue_backends()[backend]
            print(f"{'':<12} {'':<28}   {backend} supports: {describe_capabilities(spec.capabilities)}")
            for option, help_text in spec.options_help.items():
                print(f"{'':<12} {'':<28}   {backend} option {option}: {help_text}")
    for failure in registry.failures():
        print(f"{failure.name:<12} FAILED ({failure.distribution or '?'}): {failure.error}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from lssm_jobs.entities import compose_schema, jobs_schema_contribution, render_prisma, render_sql

    schema = compose_schema({"modules": [jobs_schema_contribution]})
    if args.format == "prisma":
        text = render_prisma(schema, provider=args.dialect)
    else:
        text = render_sql(schema, dialect=args.dialect)
    print(json.dumps({"format": args.format, "dialect": args.dialect, "schema": text}) if args.json else text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        parser.error(f"unknown --log-level {args.log_level!r}")
    configure_logging(level, args.log_format)
    try:
        if args.command == "plugins":
            return _plugins(args)
        if args.command == "schema":
            return _schema(args)
        runners = {
            "worker": run_worker,
            "scheduler": _run_scheduler,
            "enqueue": _enqueue,
            "status": _status,
            "dlq": _dlq,
            "queue": manage.queue_command,
            "schedules": manage.schedules_command,
            "workers": manage.workers_command,
            "top": manage.top_command,
            "job": job_commands.job_command,
        }
        if args.command == "worker":
            args.option = [*_worker_flag_options(args, args.backend), *args.option]
        if args.command == "demo":
            from lssm_jobs.cli.demo import run_demo

            return asyncio.run(run_demo(path=args.path, keep=args.keep, jobs=args.jobs, as_json=args.json))
        return asyncio.run(runners[args.command](args))
    except UsageError as error:
        print(redact(f"lssm-jobs: error: {error}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        return 141
    except (LssmJobsError, ValueError, TypeError, OSError, ConnectionError) as error:
        if args.debug:
            raise
        print(escape(redact(f"lssm-jobs: error: {error}")), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        print(
            redact(
                f"lssm-jobs: unexpected error: {type(error).__name__}: {error} (--debug shows the traceback)"
            ),
            file=sys.stderr,
        )
        return 1
