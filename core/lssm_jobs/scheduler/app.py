"""How a command line finds an application's scheduler, and runs it until told to stop.

An application exposes its scheduler as a module attribute (``lssm-jobs scheduler myapp.tasks:scheduler``):

* a :class:`JobScheduler` (built on the app's queue: ``scheduler = JobScheduler(queue)``);
* a function returning one (called once, with no arguments), for apps that build things lazily;
* the app's :class:`~lssm_jobs.queue.JobQueue`, when the same module also defines a ``JobScheduler`` on that
  queue (conventionally named ``scheduler``), so ``APP`` can name the queue for both ``worker`` and
  ``worker --with-scheduler``.
"""

from __future__ import annotations

import asyncio
import sys
from types import ModuleType
from typing import Any

from lssm_jobs.scheduler.job_scheduler import JobScheduler


def resolve_scheduler(target: Any, module: ModuleType | str | None = None) -> JobScheduler:
    """The :class:`JobScheduler` that ``target`` (an APP attribute) stands for.

    :param module: the module ``target`` came from (object or name); searched when ``target`` is a queue.
    :raises LookupError: ``target`` is a queue and its module defines no scheduler on it.
    :raises TypeError: ``target`` is none of the accepted shapes.
    """
    from lssm_jobs.queue import JobQueue

    if isinstance(target, JobScheduler):
        return target
    if isinstance(target, JobQueue):
        namespace = sys.modules.get(module) if isinstance(module, str) else module
        found = [
            value
            for value in (vars(namespace).values() if namespace is not None else ())
            if isinstance(value, JobScheduler) and value.queue is target
        ]
        preferred = getattr(namespace, "scheduler", None)
        if isinstance(preferred, JobScheduler) and preferred.queue is target:
            return preferred
        if len(found) == 1:
            return found[0]
        where = f"module {namespace.__name__!r}" if namespace is not None else "its module"
        if not found:
            raise LookupError(
                f"{where} defines no JobScheduler on this queue; add scheduler = JobScheduler(queue)"
            )
        raise LookupError(f"{where} defines several JobSchedulers on this queue; name one as APP")
    if callable(target):
        built = target()
        if isinstance(built, JobScheduler):
            return built
        raise TypeError(f"{target!r} returned {type(built).__name__}, not a JobScheduler")
    raise TypeError(
        f"expected a JobScheduler, a function returning one, or a JobQueue; got {type(target).__name__}"
    )


async def run_scheduler(scheduler: JobScheduler, stopping: asyncio.Event) -> None:
    """Run ``scheduler`` until ``stopping`` is set, then stop it promptly (running callables get its
    ``shutdown_timeout``). What ``lssm-jobs scheduler`` and ``worker --with-scheduler`` run."""
    await scheduler.run(stopping)
