"""What type checkers see of the typed API. Never run: tests/typing/test_typing.py type-checks it.

A comment "revealed: T" after ``reveal_type(...)`` is the type the checkers must reveal there (module names
left out); a comment "error" marks a line they must reject. Every other line must pass.
"""

from __future__ import annotations

from typing import Any

import attrs
from lssm_jobs import (
    Handlers,
    Job,
    JobQueue,
    MemoryJobQueue,
    define_job_type,
    open_blocking_queue,
    open_queue,
)
from typing_extensions import reveal_type


@attrs.frozen
class SendEmail:
    to: str
    subject: str


@attrs.frozen
class Resize:
    width: int


SendEmailJob = define_job_type(type="email.send", payload=SendEmail)
reveal_type(SendEmailJob)  # revealed: JobType[SendEmail, None]
Ping = define_job_type(type="ping")
reveal_type(Ping)  # revealed: JobType[Any, Any]


async def enqueue(queue: JobQueue) -> None:
    job = await queue.enqueue(SendEmailJob, SendEmail(to="a@example.com", subject="Hi"), delay_ms=1000)
    reveal_type(job)  # revealed: Job[SendEmail, None]
    reveal_type(job.payload.to)  # revealed: str
    await queue.enqueue(SendEmailJob, Resize(width=3))  # error
    await queue.enqueue(SendEmailJob, {"to": "a@example.com", "subject": "Hi"})  # error
    by_name = await queue.enqueue("email.send", {"to": "a@example.com", "subject": "Hi"})
    reveal_type(by_name)  # revealed: Job[Any, Any]
    await queue.enqueue(Ping, {"any": "data"})
    await queue.enqueue(SendEmailJob, SendEmail(to="a@example.com", subject="Hi"), delay_ms="soon")  # error


async def resize_image(job: Job[Resize]) -> None: ...


def register(queue: JobQueue, handlers: Handlers, email: Job[SendEmail]) -> None:
    @queue.register(SendEmailJob)
    async def send(job: Job[SendEmail]) -> None:
        reveal_type(job.payload)  # revealed: SendEmail

    @queue.register(SendEmailJob)  # error
    async def resize(job: Job[Resize]) -> None: ...

    queue.register(SendEmailJob, lambda job: job.payload.subject.upper())
    queue.register(SendEmailJob, lambda job: job.payload.width)  # error
    queue.register(SendEmailJob, resize_image)  # error

    @handlers.register(SendEmailJob)
    def send_now(job: Job[SendEmail]) -> str:
        return job.payload.subject

    reveal_type(send_now(email))  # revealed: str
    handlers.register(SendEmailJob, resize_image)  # error

    @queue.register("email.send")
    async def by_name(job: Job[Any]) -> None: ...


def blocking() -> None:
    jobs = open_blocking_queue("memory")
    job = jobs.enqueue(SendEmailJob, SendEmail(to="a@example.com", subject="Hi"))
    reveal_type(job)  # revealed: Job[SendEmail, None]
    jobs.enqueue(SendEmailJob, Resize(width=1))  # error


def entry_points() -> None:
    reveal_type(open_queue("memory"))  # revealed: JobQueue
    reveal_type(MemoryJobQueue())  # revealed: MemoryJobQueue
