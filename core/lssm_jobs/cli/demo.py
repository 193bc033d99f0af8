"""``lssm-jobs demo``: a realistic run on a fresh sqlite database, with live progress and a summary.

It defines a few typed job types, enqueues a mix (most succeed, some fail once and retry, one is
dead-lettered, some are delayed, one bad payload is rejected at enqueue), then runs a worker and a cron
scheduler until the work is done.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

import attrs

from lssm_jobs.cli.progress import Progress
from lssm_jobs.errors import JobValidationError, PermanentJobError
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.queue import EnqueueRequest, JobQueue, open_queue

catalog = JobCatalog()


@attrs.frozen
class SendEmail:
    to: str
    subject: str
    body: str


@attrs.frozen
class ResizeImage:
    image_id: int
    width: int


@attrs.frozen
class ChargeInvoice:
    invoice_id: str
    amount_cents: int


@attrs.frozen
class BuildReport:
    name: str


@attrs.frozen
class Heartbeat:
    source: str


SEND_EMAIL = define_job_type(
    type="demo.email.send",
    payload=SendEmail,
    catalog=catalog,
    options=JobOptions(max_retries=3, backoff_ms=200, timeout_ms=5_000, queue="mail"),
)
RESIZE_IMAGE = define_job_type(
    type="demo.image.resize",
    payload=ResizeImage,
    catalog=catalog,
    options=JobOptions(max_retries=3, backoff="fixed", backoff_ms=300, jitter=0.2, queue="media"),
)
CHARGE_INVOICE = define_job_type(
    type="demo.invoice.charge",
    payload=ChargeInvoice,
    catalog=catalog,
    options=JobOptions(max_retries=2, backoff_ms=150, queue="billing", priority=10),
)
BUILD_REPORT = define_job_type(type="demo.report.build", payload=BuildReport, catalog=catalog)
HEARTBEAT = define_job_type(type="demo.heartbeat", payload=Heartbeat, catalog=catalog)


DELAYED_REPORTS = 3


class StorageTimeout(Exception):
    pass


async def send_email(job: Job[SendEmail]) -> None:
    await asyncio.sleep(random.uniform(0.002, 0.02))  # an SMTP round trip


async def resize_image(job: Job[ResizeImage]) -> None:
    await asyncio.sleep(random.uniform(0.005, 0.03))
    if job.payload.image_id % 4 == 0 and job.attempt == 1:
        raise StorageTimeout(f"object store timed out reading image {job.payload.image_id}")


def charge_invoice(job: Job[ChargeInvoice]) -> None:  # a plain function: runs in the thread pool
    time.sleep(0.01)
    if job.payload.amount_cents > 1_000_000:
        raise RuntimeError(f"card declined for invoice {job.payload.invoice_id}")
    if job.payload.amount_cents <= 0:
        raise PermanentJobError("nothing to charge")


async def build_report(job: Job[BuildReport]) -> None:
    await asyncio.sleep(0.05)


async def heartbeat(job: Job[Heartbeat]) -> None:
    return None


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            candidate.unlink()


def _requests(jobs: int) -> list[EnqueueRequest]:
    rng = random.Random(7)
    requests: list[EnqueueRequest] = []
    for n in range(jobs):
        kind = n % 10
        if kind < 5:
            requests.append(
                EnqueueRequest(
                    job_type=SEND_EMAIL,
                    payload=SendEmail(
                        to=f"user{n}@example.com", subject="Your receipt", body="Thanks for your order."
                    ),
                )
            )
        elif kind < 8:
            requests.append(
                EnqueueRequest(
                    job_type=RESIZE_IMAGE, payload=ResizeImage(image_id=n, width=rng.choice([320, 640, 1280]))
                )
            )
        else:
            requests.append(
                EnqueueRequest(
                    job_type=CHARGE_INVOICE,
                    payload=ChargeInvoice(invoice_id=f"INV-{n:05d}", amount_cents=rng.randint(500, 50_000)),
                )
            )
    for n in range(DELAYED_REPORTS):
        requests.append(
            EnqueueRequest(
                job_type=BUILD_REPORT, payload=BuildReport(name=f"daily-{n}"), delay_ms=1_000 + 700 * n
            )
        )
    requests.append(
        EnqueueRequest(
            job_type=CHARGE_INVOICE, payload=ChargeInvoice(invoice_id="INV-99999", amount_cents=2_500_000)
        )
    )  # always declined: ends in the dead letter queue
    return requests


async def run_demo(*, path: str, keep: bool, jobs: int, as_json: bool = False) -> int:
    from lssm_jobs.scheduler import JobScheduler

    database = Path(path)
    _remove_database(database)
    out = sys.stderr if as_json else sys.stdout  # --json: the text goes to stderr, the summary to stdout
    queue: JobQueue = open_queue(
        "sqlite", path=str(database), catalog=catalog, concurrency=8, poll_interval=0.2, sinks=[]
    )
    queue.register(SEND_EMAIL, send_email)
    queue.register(RESIZE_IMAGE, resize_image)
    queue.register(CHARGE_INVOICE, charge_invoice)
    queue.register(BUILD_REPORT, build_report)
    queue.register(HEARTBEAT, heartbeat)
    print(
        f"lssm-jobs demo on sqlite ({database}): {jobs + 4} jobs, a worker with concurrency 8 and a "
        "scheduler firing every second",
        file=out,
    )

    started = time.monotonic()
    async with queue:
        try:
            await queue.enqueue(SEND_EMAIL, {"to": "ops@example.com", "subject": 42})
        except JobValidationError as error:
            print(f"  rejected at enqueue (nothing stored): {error}", file=out)
        batch = await queue.enqueue_many(_requests(jobs))
        ids = [job.id for job in batch]
        scheduler = JobScheduler(queue)
        scheduler.schedule(
            "demo-heartbeat", "* * * * * *", job=HEARTBEAT.type, payload={"source": "scheduler"}
        )
        progress = Progress(queue, label="demo", stream=out)
        progress.start()
        await scheduler.start()
        await queue.start()
        deadline = time.monotonic() + 50
        settled = 0
        work_started = time.monotonic()
        backlog_drained: float | None = None
        immediate = len(ids) - DELAYED_REPORTS
        while time.monotonic() < deadline:
            counts = await queue.counts()
            settled = sum(
                per.get(JobStatus.COMPLETED, 0) + per.get(JobStatus.DEAD, 0) for per in counts.values()
            )
            if backlog_drained is None and settled >= immediate:
                backlog_drained = time.monotonic() - work_started
            if settled >= len(ids) and progress.counts["fired"] >= 3:
                break
            await asyncio.sleep(0.2)
        await scheduler.stop()
        await queue.stop()
        await progress.stop()
        elapsed = time.monotonic() - started
        counts = await queue.counts()
        dead = await queue.dead_letters.list()

    c = progress.counts
    print("\nsummary", file=out)
    print(f"  completed       {c['completed']}", file=out)
    print(f"  retried         {c['retrying']}  (failed once, then succeeded or failed again)", file=out)
    print(f"  dead-lettered   {c['dead_lettered']}", file=out)
    print(f"  scheduler ticks {c['fired']}", file=out)
    if backlog_drained is not None:
        print(
            f"  throughput      {immediate / max(backlog_drained, 1e-6):,.0f} jobs/s while the backlog of "
            f"{immediate} drained ({backlog_drained:.2f}s, retries and their backoff included)",
            file=out,
        )
    print(f"  elapsed         {elapsed:.1f}s in all, waiting for delayed jobs and schedule ticks", file=out)
    for letter in dead:
        print(f"  dead letter     {letter.id} {letter.type}: {letter.reason}: {letter.error}", file=out)
    from lssm_jobs.cli import print_counts

    print("\njobs by queue and state", file=out)
    if as_json:
        summary = {
            "completed": c["completed"],
            "retried": c["retrying"],
            "dead_lettered": c["dead_lettered"],
            "scheduler_ticks": c["fired"],
            "elapsed_s": round(elapsed, 3),
            "dead_letters": [
                {"id": d.id, "type": d.type, "reason": d.reason, "error": d.error} for d in dead
            ],
            "counts": {queue: {s.value: n for s, n in per.items()} for queue, per in sorted(counts.items())},
        }
        print(json.dumps(summary))
    else:
        print_counts(counts)
    if keep:
        url = f"sqlite:///{database}"  # an absolute path gives sqlite:////abs/path, as SQLAlchemy writes it
        print(
            f"\nkept {database}; inspect it with:\n  lssm-jobs status --url {url}\n"
            f"  lssm-jobs dlq list --url {url}",
            file=out,
        )
    else:
        _remove_database(database)
    complete = settled >= len(ids)
    if not complete:
        print(f"lssm-jobs demo: only {settled} of {len(ids)} jobs settled in time", file=sys.stderr)
    return 0 if complete else 1


__all__ = ["run_demo"]
