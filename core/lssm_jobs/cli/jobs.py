"""Commands about one job: ``job show ID`` (state, attempts, timings, progress, result or error, payload)
and ``job cancel ID``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs

from lssm_jobs.backends.base import JobRecord
from lssm_jobs.cancellation import CancelResult
from lssm_jobs.cli.app import build_queue
from lssm_jobs.cli.escape import escape
from lssm_jobs.jobs import Job, JobProgress, JobStatus
from lssm_jobs.results.base import StoredResult

AddBackendFlags = Callable[[argparse.ArgumentParser], None]


def add_commands(commands: Any, add_backend_flags: AddBackendFlags) -> None:
    """Declare ``job show`` and ``job cancel`` on the ``lssm-jobs`` subcommand parser."""
    job = commands.add_parser("job", help="show or cancel one job")
    job_commands = job.add_subparsers(dest="job_command", metavar="ACTION")
    job_commands.required = True
    show = job_commands.add_parser(
        "show", help="one job: state, attempts, timings, progress, error and payload"
    )
    show.add_argument("job_id", metavar="ID", help="the job's id")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_backend_flags(show)
    cancel = job_commands.add_parser(
        "cancel", help="cancel a job: a waiting one never runs, a running one is asked to stop"
    )
    cancel.add_argument("job_id", metavar="ID", help="the job's id")
    cancel.add_argument("--json", action="store_true", help="print JSON")
    add_backend_flags(cancel)


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(value: Any) -> Any:
    """A payload as JSON data: attrs instances as dicts, anything else JSON cannot encode as its repr."""
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return value


def _progress_data(progress: JobProgress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    return {
        "fraction": progress.fraction,
        "message": progress.message,
        "data": dict(progress.data),
        "updated_at": progress.updated_at,
    }


def _result_data(stored: StoredResult | None) -> dict[str, Any] | None:
    """A stored result as JSON data: the return value decoded (it is stored as UTF-8 JSON), or the failure."""
    if stored is None:
        return None
    value: Any = None
    if stored.value is not None:
        try:
            value = json.loads(stored.value)
        except ValueError:  # written by something else: shown as it is
            value = stored.value.decode(errors="replace")
    return {
        "status": stored.status,
        "value": value,
        "error": stored.error,
        "reason": stored.reason,
        "finished_at": stored.finished_at,
        "expires_at": stored.expires_at,
    }


def job_data(
    job: Job[Any], record: JobRecord | None, dead_reason: str | None, stored: StoredResult | None = None
) -> dict[str, Any]:
    """Everything ``job show --json`` prints about a job (``result``: what the queue's result store keeps
    of it, for job types with a result type; None otherwise)."""
    return {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "status": job.status.value,
        "cancel_requested": job.cancel_requested,
        "attempts": job.attempt,
        "max_retries": job.max_retries,
        "priority": job.priority,
        "created_at": job.created_at,
        "run_at": job.run_at,
        "updated_at": record.updated_at if record is not None else None,
        "dedupe_key": job.dedupe_key,
        "last_error": job.last_error,
        "dead_letter_reason": dead_reason,
        "progress": _progress_data(job.last_progress),
        "result": _result_data(stored),
        "payload": _plain(job.payload),
        "meta": dict(job.meta),
    }


def _describe_progress(progress: JobProgress | None) -> str:
    if progress is None:
        return "-"
    text = f"{progress.fraction:.0%}"
    if progress.message:
        text += f" {escape(progress.message)}"
    if progress.data:
        text += f" {escape(json.dumps(dict(progress.data), default=repr))}"
    return f"{text} (at {_when(progress.updated_at)})"


def job_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """``job show``'s lines as (label, value) pairs, stored text escaped (a newline in an error or payload
    must not forge a line)."""
    state = data["status"] + (" (cancel requested)" if data["cancel_requested"] else "")
    lines = [
        ("id", escape(data["id"])),
        ("type", escape(data["type"])),
        ("queue", escape(data["queue"])),
        ("state", state),
        ("attempts", f"{data['attempts']} of at most {data['max_retries'] + 1}"),
        ("priority", str(data["priority"])),
        ("created", _when(data["created_at"]) or "-"),
        ("run at", _when(data["run_at"]) or "-"),
        ("updated", _when(data["updated_at"]) or "-"),
        ("progress", _describe_progress(_progress_of(data["progress"]))),
        ("error", escape(data["last_error"] or "-")),
    ]
    if data["dedupe_key"] is not None:
        lines.insert(6, ("dedupe key", escape(data["dedupe_key"])))
    if data["dead_letter_reason"]:
        lines.append(("dead because", escape(data["dead_letter_reason"])))
    result = data.get("result")
    if result is not None and result["status"] == "completed":
        lines.append(("result", escape(json.dumps(result["value"], default=repr))))
    elif result is not None:
        failure = "; ".join(part for part in (result["reason"], result["error"]) if part) or "-"
        lines.append(("result", f"failed: {escape(failure)}"))
    lines.append(("payload", escape(json.dumps(data["payload"], default=repr))))
    return lines


def _progress_of(data: dict[str, Any] | None) -> JobProgress | None:
    return None if data is None else JobProgress(**data)


async def job_command(args: argparse.Namespace) -> int:
    queue = build_queue(args.backend, args.url, args.option)
    try:
        await queue.open()
        if args.job_command == "cancel":
            result = await queue.cancel(args.job_id)
        else:
            job = await queue.get(args.job_id)
            if job is None:
                print(f"lssm-jobs: error: no job with id {escape(args.job_id)}", file=sys.stderr)
                return 1
            record = await queue.backend.get(args.job_id)
            dead_reason = None
            if job.status is JobStatus.DEAD:
                letter = await queue.dead_letters.get(args.job_id)
                dead_reason = letter.reason if letter is not None else None
            data = job_data(job, record, dead_reason, await queue.stored_result(args.job_id))
    finally:
        await queue.close()
    if args.job_command == "cancel":
        return _print_cancel(args.job_id, result, as_json=args.json)
    if args.json:
        print(json.dumps(data, default=repr))
        return 0
    width = max(len(label) for label, _ in job_lines(data)) + 2
    for label, value in job_lines(data):
        print(f"{label + ':':<{width}}{value}")
    return 0


_CANCEL_TEXT = {
    CancelResult.REMOVED: "cancelled: it was waiting and will never run",
    CancelResult.REQUESTED: "running: its worker was asked to stop it (see 'lssm-jobs job show')",
    CancelResult.FINISHED: "already finished (completed, dead or cancelled): nothing changed",
    CancelResult.NOT_FOUND: "not found",
}


def _print_cancel(job_id: str, result: CancelResult, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"id": job_id, "result": result.value}))
    elif result is CancelResult.NOT_FOUND:
        print(f"lssm-jobs: error: no job with id {escape(job_id)}", file=sys.stderr)
    else:
        print(f"job {escape(job_id)} {_CANCEL_TEXT[result]}")
    return 1 if result is CancelResult.NOT_FOUND else 0
