"""What type checkers see of job results. Never run: tests/typing/test_typing.py type-checks it."""

from __future__ import annotations

import attrs
from lssm_jobs import JobQueue, define_job_type, open_blocking_queue
from typing_extensions import reveal_type


@attrs.frozen
class SendEmail:
    to: str


@attrs.frozen
class SendReceipt:
    message_id: str


SendEmailJob = define_job_type(type="email.send.result", payload=SendEmail, result=SendReceipt)
reveal_type(SendEmailJob)  # revealed: JobType[SendEmail, SendReceipt]
Count = define_job_type(type="count", result=int)
reveal_type(Count)  # revealed: JobType[Any, int]
Fire = define_job_type(type="fire.and.forget", payload=SendEmail)
reveal_type(Fire)  # revealed: JobType[SendEmail, None]


async def wait(queue: JobQueue) -> None:
    job = await queue.enqueue(SendEmailJob, SendEmail(to="a@example.com"))
    reveal_type(job)  # revealed: Job[SendEmail, SendReceipt]
    reveal_type(await job.wait(timeout=10))  # revealed: SendReceipt
    reveal_type(await queue.result(job, timeout=10))  # revealed: SendReceipt
    reveal_type(await queue.result(job.id))  # revealed: Any
    _wrong: str = await job.wait()  # error
    counted = await queue.enqueue(Count, {})
    reveal_type(await counted.wait())  # revealed: int
    fired = await queue.enqueue(Fire, SendEmail(to="b@example.com"))
    reveal_type(await fired.wait())  # revealed: None
    await queue.result(42)  # error


def blocking() -> None:
    jobs = open_blocking_queue("memory")
    job = jobs.enqueue(SendEmailJob, SendEmail(to="a@example.com"))
    reveal_type(jobs.result(job, timeout=10))  # revealed: SendReceipt
