"""Typed records that plugins return from the registration hooks in :mod:`lssm_jobs.hookspecs`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from lssm_jobs.backends.base import BackendCapabilities, QueueBackend

if TYPE_CHECKING:
    from lssm_jobs.events import EventSink
    from lssm_jobs.ledger.base import JobLedger
    from lssm_jobs.results.base import ResultStore
    from lssm_jobs.serialization import Serializer

_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


def _lowercase_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} {value!r} must be lowercase: a letter, then letters, digits, '_', '-' or '.'"
        )


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen(kw_only=True)
class QueueBackendSpec:
    """A queue backend a plugin provides.

    :param name: what users select it by (``open_queue(name)``, ``--backend name``); by convention the
        plugin's entry-point name.
    :param factory: ``factory(**options) -> QueueBackend``; options come from ``open_queue`` keywords or
        the CLI (``--url`` becomes ``url=``).
    :param capabilities: what the backend supports.
    :param options_help: option name -> one line of help, shown by ``lssm-jobs plugins``.
    :param worker_flags: backend options that ``lssm-jobs worker`` offers as flags of their own (a push
        backend's ``bind`` and ``port`` become ``--bind`` and ``--port``), with their ``options_help`` line.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., QueueBackend]
    capabilities: BackendCapabilities = BackendCapabilities()
    description: str = ""
    options_help: dict[str, str] = attrs.field(factory=dict)
    worker_flags: tuple[str, ...] = attrs.field(default=(), converter=_names)


@attrs.frozen(kw_only=True)
class SerializerSpec:
    """A serializer for job envelopes. ``factory()`` returns a :class:`~lssm_jobs.serialization.Serializer`."""

    name: str = attrs.field(validator=_lowercase_name)
    content_type: str
    factory: Callable[[], Serializer]
    description: str = ""


@attrs.frozen(kw_only=True)
class TriggerSpec:
    """A kind of schedule trigger (``cron``, ``interval``, ``date``, ...).

    ``factory(expression, **options)`` returns a :class:`lssm_jobs.scheduler.triggers.Trigger`; ``accepts``
    tells, for a plain expression given to ``scheduler.schedule``, whether this kind understands it.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., Any]
    accepts: Callable[[Any], bool] = attrs.field(default=lambda expression: False)
    description: str = ""


@attrs.frozen(kw_only=True)
class SchedulerStoreSpec:
    """A store for scheduler state (last fired tick per schedule) and the per-tick claims that keep several
    scheduler instances from firing one tick twice.

    :param factory: ``factory(backend=None, **options)`` returns a
        :class:`lssm_jobs.scheduler.stores.SchedulerStore`.
    :param backend: name of the queue backend whose connection this store can reuse; ``JobScheduler(queue)``
        picks the store registered for the queue's backend by default.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., Any]
    backend: str | None = None
    description: str = ""


@attrs.frozen(kw_only=True)
class EventSinkSpec:
    """An event sink: ``factory(**options)`` returns an :class:`~lssm_jobs.events.EventSink`.

    Sinks are attached to a queue when named in ``open_queue(..., sinks=[name])`` or ``LSSM_JOBS_SINKS``.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., EventSink]
    description: str = ""


@attrs.frozen(kw_only=True)
class JobLedgerSpec:
    """A job ledger: the store of job records and dead letters that a backend whose service keeps no history
    (Cloud Tasks, Pub/Sub) is paired with. ``factory(**options)`` returns an unopened
    :class:`~lssm_jobs.ledger.base.JobLedger`.

    :param name: what backends' ``ledger=`` option and :func:`lssm_jobs.ledger.open_ledger` name.
    :param options_help: option name -> one line of help, shown by ``lssm-jobs plugins``.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., JobLedger]
    description: str = ""
    options_help: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ResultStoreSpec:
    """A result store: where the values handlers return (and final failures) are kept for
    ``queue.result(job_id)``. ``factory(backend=None, **options)`` returns an unopened
    :class:`~lssm_jobs.results.base.ResultStore`.

    :param name: what the queue option ``result_store=`` names.
    :param backend: name of the queue backend whose storage this store can share; a queue on that backend
        uses it by default (``factory`` then receives the backend as ``backend=``).
    :param options_help: option name -> one line of help, shown by ``lssm-jobs plugins``.
    """

    name: str = attrs.field(validator=_lowercase_name)
    factory: Callable[..., ResultStore]
    backend: str | None = None
    description: str = ""
    options_help: dict[str, str] = attrs.field(factory=dict)
