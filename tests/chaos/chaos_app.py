"""The application the chaos suite's workers run: ``lssm-jobs worker chaos_app:handlers --backend ...``.

Each job's payload says how it behaves (``plan``); the handler writes one line per run to an append-only
file of its own process (``$CHAOS_LOG_DIR/runs-<pid>.log``) before doing anything and one when it ends:

    start <job id> <attempt> <cid>
    ok|fail <job id> <attempt> <cid>

Each line is one ``os.write`` on an ``O_APPEND`` descriptor, so it is in the kernel before the handler goes
on: a SIGKILL cannot lose it, nor leave half a line. (``fsync`` would only matter if the machine itself
crashed, which the suite does not simulate.) These files, not the system under test, say what ran.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import attrs
from lssm_jobs import Job, JobOptions, PermanentJobError, define_job_type
from lssm_jobs.handlers import Handlers

#: What a job does. ``arg`` is the number of failing attempts (flaky) or milliseconds (slow).
PLANS = ("ok", "flaky", "doomed", "permanent", "slow")
#: Plans whose jobs must end in the dead letter queue; the others should complete (but may be dead-lettered
#: when worker kills used up their attempts, which the report counts apart).
DOOMED_PLANS = frozenset({"doomed", "permanent"})
MAX_RETRIES = 2


@attrs.frozen
class ChaosPayload:
    cid: str  # the producer's own id for the job: "<producer>-<n>"
    plan: str
    arg: int = 0


CHAOS_JOB = define_job_type(
    type="chaos.job",
    payload=ChaosPayload,
    options=JobOptions(max_retries=MAX_RETRIES, backoff_ms=100, backoff="fixed", jitter=0.5),
)

handlers = Handlers()
_log_fd: int | None = None


def _record(line: str) -> None:
    global _log_fd
    if _log_fd is None:
        directory = Path(os.environ["CHAOS_LOG_DIR"])
        _log_fd = os.open(directory / f"runs-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_log_fd, (line + "\n").encode())


@handlers.register(CHAOS_JOB)
async def run_chaos_job(job: Job[ChaosPayload]) -> None:
    payload = job.payload
    where = f"{job.id} {job.attempt} {payload.cid}"
    _record(f"start {where}")
    if payload.plan == "slow":
        await asyncio.sleep(payload.arg / 1000)
    failure: Exception | None = None
    if payload.plan == "flaky" and job.attempt <= payload.arg:
        failure = RuntimeError(f"flaky: attempt {job.attempt} of {payload.arg} failing")
    elif payload.plan == "doomed":
        failure = RuntimeError("doomed: fails on every attempt")
    elif payload.plan == "permanent":
        failure = PermanentJobError("permanent: fails without retries")
    if failure is not None:
        _record(f"fail {where}")
        raise failure
    _record(f"ok {where}")
