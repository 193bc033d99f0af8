"""A set of job handlers that is not yet tied to a queue, so one app module can run on any backend.

Example (``myapp/jobs.py``)::

    handlers = Handlers()

    @handlers.register(SendEmailJob)
    async def send_email(job): ...

Then ``lssm-jobs worker myapp.jobs:handlers --backend redis --url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

from lssm_jobs.jobs import Job, JobType
from lssm_jobs.worker import Handler

H = TypeVar("H", bound=Handler)
P = TypeVar("P")
#: A job type's result type (``JobType[P, ResultT]``).
ResultT = TypeVar("ResultT")
R = TypeVar("R")


class Handlers:
    """Job type name -> handler, registered like ``JobQueue.register`` and attached with
    ``queue.include(handlers)``."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[str | JobType[Any], Handler]] = {}

    @overload
    def register(
        self, job_type: JobType[P, ResultT], handler: Callable[[Job[P, ResultT]], R]
    ) -> Callable[[Job[P, ResultT]], R]: ...

    @overload
    def register(
        self, job_type: JobType[P, ResultT], handler: None = None
    ) -> Callable[[Callable[[Job[P, ResultT]], R]], Callable[[Job[P, ResultT]], R]]: ...

    @overload
    def register(self, job_type: str, handler: H) -> H: ...

    @overload
    def register(self, job_type: str, handler: None = None) -> Callable[[H], H]: ...

    def register(self, job_type: str | JobType[Any], handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` for ``job_type``; usable as a decorator. The handler of a ``JobType[P]``
        receives a ``Job[P]``.

        :raises ValueError: a handler is already registered for that type.
        """
        name = job_type.type if isinstance(job_type, JobType) else job_type

        def add(function: H) -> H:
            if name in self._handlers and self._handlers[name][1] is not function:
                raise ValueError(f"a handler for job type {name!r} is already registered")
            self._handlers[name] = (job_type, function)
            return function

        return add(handler) if handler is not None else add

    def __iter__(self) -> Iterator[tuple[str | JobType[Any], Handler]]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    def types(self) -> list[str]:
        return sorted(self._handlers)
