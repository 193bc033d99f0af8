"""Typed job definitions: options, job types, the catalog that resolves type names, and the Job record."""

from __future__ import annotations

import builtins
import enum
import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Generic, Literal, Protocol, overload

import attrs
from typing_extensions import TypeVar

from lssm_jobs._slots import slot_setters
from lssm_jobs.errors import JobTypeConflictError, LssmJobsError
from lssm_jobs.limits import (
    MAX_DELAY_MS,
    MAX_RETRIES,
    MAX_TIMEOUT_MS,
    MAX_VERSION,
    check_int,
    check_name,
    check_priority,
)

P = TypeVar("P")
#: What a job type's handler returns (``result=``); ``Any`` where a type does not say.
R = TypeVar("R", default=Any)

BackoffKind = Literal["exponential", "fixed", "linear"]

#: Upgrades a payload (as plain JSON data) written by version ``v`` of a job type to version ``v + 1``.
PayloadUpgrader = Callable[[Any], Any]


class JobStatus(str, enum.Enum):
    """Where a job is in its life. ``str`` valued so it prints and serializes as its name."""

    SCHEDULED = "scheduled"  # waiting for its run_at (delayed, or backing off before a retry)
    PENDING = "pending"  # ready to run
    ACTIVE = "active"  # leased by a worker
    COMPLETED = "completed"  # kept while the backend's completed-job retention lasts
    DEAD = "dead"  # in the dead letter queue (failed for good, or could not run)
    CANCELLED = "cancelled"  # removed before it ran, or stopped on a cancel request (queue.cancel)


LIVE_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.ACTIVE})


def _int_in(low: int, high: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_int(value, attribute.name, low, high)

    return check


def _optional_int_in(low: int, high: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_int(value, attribute.name, low, high)

    return check


def _jitter(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"jitter must be a number, got {builtins.type(value).__name__}")
    if not (value >= 0 and math.isfinite(value)):  # also refuses NaN
        raise ValueError(f"jitter must be >= 0 (a fraction: 0.1 means +/-10%), got {value!r}")


_BACKOFF_KINDS = ("exponential", "linear", "fixed")


def _backoff(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"backoff must be a string, one of {', '.join(_BACKOFF_KINDS)}; got {builtins.type(value).__name__}"
        )
    if value not in _BACKOFF_KINDS:
        raise ValueError(f"backoff must be one of {', '.join(_BACKOFF_KINDS)}; got {value!r}")


def _queue_name(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_name(value, attribute.name)


def _priority(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_priority(value, attribute.name)


@attrs.frozen(kw_only=True, cache_hash=True)  # hashed once: it keys per-type caches on hot paths
class JobOptions:
    """How a job runs: retries, backoff, timeout, queue and priority.

    Backoff before retry ``n`` (1-based) is ``backoff_ms`` for ``fixed``, ``backoff_ms * n`` for
    ``linear`` and ``backoff_ms * 2 ** (n - 1)`` for ``exponential``, capped at ``max_backoff_ms``, then
    spread by ``jitter`` (a fraction: 0.1 means +/-10%) so retries of many jobs do not arrive together.

    Every field is checked on construction (see :mod:`lssm_jobs.limits` for the bounds).

    :raises TypeError: a field of the wrong type (``max_retries=True``, ``queue=5``).
    :raises ValueError: a field out of range, or an empty or unprintable queue name.
    """

    max_retries: int = attrs.field(default=3, validator=_int_in(0, MAX_RETRIES))
    backoff_ms: int = attrs.field(default=1000, validator=_int_in(0, MAX_DELAY_MS))
    backoff: BackoffKind = attrs.field(default="exponential", validator=_backoff)
    max_backoff_ms: int = attrs.field(default=3_600_000, validator=_int_in(0, MAX_DELAY_MS))
    jitter: float = attrs.field(default=0.1, validator=_jitter)
    timeout_ms: int | None = attrs.field(default=None, validator=_optional_int_in(0, MAX_TIMEOUT_MS))
    queue: str = attrs.field(default="default", validator=_queue_name)
    priority: int = attrs.field(default=0, validator=_priority)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


DEFAULT_OPTIONS = JobOptions()


def _type_name(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_name(value, "job type name")


def _options(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, JobOptions):
        raise TypeError(f"options must be a JobOptions, got {builtins.type(value).__name__}")


def _upgraders(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"upgraders must map versions to functions, got {builtins.type(value).__name__}")
    for version, upgrade in value.items():
        check_int(version, "upgraders version", 1, MAX_VERSION)
        if not callable(upgrade):
            raise TypeError(f"upgraders[{version}] must be a function, got {builtins.type(upgrade).__name__}")


def _result_type(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    # A class (attrs, dataclass, TypedDict, int, str, ...) or a typing form cattrs structures
    # (``list[int]``, ``dict[str, float]``); a value such as ``result=3`` is a mistake.
    if value is not None and not isinstance(value, builtins.type) and not hasattr(value, "__origin__"):
        raise TypeError(
            f"result must be a type (an attrs class, dataclass, TypedDict or builtin), got {value!r}"
        )


@attrs.frozen(kw_only=True, eq=False)
class JobType(Generic[P, R]):
    """A named, versioned kind of job with a typed payload and, optionally, a typed result. Create with
    :func:`define_job_type`.

    ``result`` is the type of what the handler returns (None: the job returns nothing anyone waits for);
    ``result_ttl_ms`` how long a stored result stays readable (None: the queue's ``result_ttl_ms``).
    """

    type: str = attrs.field(validator=_type_name)
    version: int = attrs.field(validator=_int_in(1, MAX_VERSION))
    payload: builtins.type[P] | None
    options: JobOptions = attrs.field(default=DEFAULT_OPTIONS, validator=_options)
    upgraders: Mapping[int, PayloadUpgrader] = attrs.field(factory=dict, validator=_upgraders)
    description: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    result: Any = attrs.field(default=None, validator=_result_type)
    result_ttl_ms: int | None = attrs.field(default=None, validator=_optional_int_in(1, MAX_DELAY_MS))

    def __repr__(self) -> str:
        payload = self.payload.__qualname__ if self.payload is not None else "Any"
        return f"JobType({self.type!r}, version={self.version}, payload={payload})"


class JobCatalog:
    """Resolves job type names to their definitions (validation and typed payloads).

    :func:`define_job_type` records into :data:`default_catalog`; pass your own catalog to a queue to keep
    separate applications (or tests) apart.
    """

    def __init__(self) -> None:
        self._types: dict[str, JobType[Any]] = {}
        self._lock = threading.Lock()

    def add(self, job_type: JobType[Any]) -> None:
        """Record ``job_type``; a newer version replaces an older one under the same name.

        :raises JobTypeConflictError: the same name and version is already defined with another payload.
        """
        with self._lock:
            known = self._types.get(job_type.type)
            if known is not None and known.version == job_type.version:
                same = _qualified(known.payload) == _qualified(job_type.payload)
                if not same:
                    raise JobTypeConflictError(
                        f"job type {job_type.type!r} version {job_type.version} is already defined with "
                        f"payload {_qualified(known.payload)}, not {_qualified(job_type.payload)}"
                    )
            if known is None or job_type.version >= known.version:
                self._types[job_type.type] = job_type

    def get(self, name: str) -> JobType[Any] | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


def _qualified(payload: type[Any] | None) -> str:
    return "Any" if payload is None else f"{payload.__module__}.{payload.__qualname__}"


default_catalog = JobCatalog()


@overload
def define_job_type(
    *,
    type: str,
    version: int = 1,
    payload: builtins.type[P],
    options: JobOptions = DEFAULT_OPTIONS,
    upgraders: Mapping[int, PayloadUpgrader] | None = None,
    description: str = "",
    catalog: JobCatalog | None = None,
    result: builtins.type[R],
    result_ttl_ms: int | None = None,
) -> JobType[P, R]: ...


@overload
def define_job_type(
    *,
    type: str,
    version: int = 1,
    payload: builtins.type[P],
    options: JobOptions = DEFAULT_OPTIONS,
    upgraders: Mapping[int, PayloadUpgrader] | None = None,
    description: str = "",
    catalog: JobCatalog | None = None,
    result: None = None,
    result_ttl_ms: int | None = None,
) -> JobType[P, None]: ...


@overload
def define_job_type(
    *,
    type: str,
    version: int = 1,
    payload: None = None,
    options: JobOptions = DEFAULT_OPTIONS,
    upgraders: Mapping[int, PayloadUpgrader] | None = None,
    description: str = "",
    catalog: JobCatalog | None = None,
    result: builtins.type[R],
    result_ttl_ms: int | None = None,
) -> JobType[Any, R]: ...


@overload
def define_job_type(
    *,
    type: str,
    version: int = 1,
    payload: None = None,
    options: JobOptions = DEFAULT_OPTIONS,
    upgraders: Mapping[int, PayloadUpgrader] | None = None,
    description: str = "",
    catalog: JobCatalog | None = None,
    result: None = None,
    result_ttl_ms: int | None = None,
) -> JobType[Any, Any]: ...


def define_job_type(
    *,
    type: str,
    version: int = 1,
    payload: builtins.type[P] | None = None,
    options: JobOptions = DEFAULT_OPTIONS,
    upgraders: Mapping[int, PayloadUpgrader] | None = None,
    description: str = "",
    catalog: JobCatalog | None = None,
    result: Any = None,
    result_ttl_ms: int | None = None,
) -> JobType[Any, Any]:
    """Define a job type and record it in the catalog, so its name resolves to it.

    ``define_job_type(type=..., payload=SendEmail)`` is a ``JobType[SendEmail]``: ``queue.enqueue`` then
    takes a ``SendEmail`` and returns a ``Job[SendEmail]``, and its handler receives one (checked by mypy
    and pyright). Without ``payload`` it is a ``JobType[Any]`` whose payload is plain data.

    :param type: the job type's name, e.g. ``"email.send"``.
    :param version: the payload schema version, carried on every envelope.
    :param payload: an attrs class, dataclass or TypedDict; payloads are structured and validated by cattrs.
    :param options: defaults for retries, backoff, timeout, queue and priority.
    :param upgraders: ``{old_version: fn}``; ``fn`` turns a version ``old_version`` payload (plain data) into
        a version ``old_version + 1`` payload, so jobs enqueued before a deploy still run after it.
    :param result: the type the handler returns (attrs class, dataclass, TypedDict or builtin); the return
        value is validated and stored, and ``queue.result(job)`` / ``job.wait()`` return it typed
        (``JobType[P, R]``). Without it nothing is stored when the job completes.
    :param result_ttl_ms: how long a stored result stays readable (default: the queue's ``result_ttl_ms``).
    :raises TypeError: an argument of the wrong type (a name that is not a string, options that are not a
        :class:`JobOptions`, a version that is not an integer).
    :raises ValueError: the name is empty, longer than 255 characters or holds a control character, or the
        version is out of range (1 to 2**31 - 1).
    :raises JobTypeConflictError: the name and version are already defined with another payload class.
    """
    if isinstance(type, str) and not type:
        raise ValueError("a job type needs a non-empty string name")
    job_type: JobType[Any, Any] = JobType(
        type=type,
        version=version,
        payload=payload,
        options=options,
        upgraders=dict(upgraders) if isinstance(upgraders, Mapping) else upgraders or {},
        description=description,
        result=result,
        result_ttl_ms=result_ttl_ms,
    )
    (catalog if catalog is not None else default_catalog).add(job_type)
    return job_type


def utc_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class JobControl(Protocol):
    """What a running :class:`Job` uses of its worker (:class:`lssm_jobs.cancellation.JobControl`)."""

    @property
    def cancelled(self) -> bool: ...

    async def report(self, fraction: Any, message: Any, data: Mapping[str, Any]) -> None: ...

    def report_from_thread(self, fraction: Any, message: Any, data: Mapping[str, Any]) -> None: ...


@attrs.frozen(kw_only=True)
class JobProgress:
    """A running job's last progress report (``await job.progress(...)``), as stored with the job.

    :param fraction: how much is done, from 0.0 to 1.0.
    :param message: an optional human-readable note (``"page 3 of 10"``).
    :param data: optional extra JSON data the handler passed as keywords.
    :param updated_at: when the handler reported it (epoch seconds).
    """

    fraction: float
    message: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    updated_at: float = 0.0


@attrs.frozen(kw_only=True)
class JobDetails:
    """What ``queue.get`` read about a job beside its envelope: its last progress report and whether a
    cancel request waits for it (:attr:`Job.last_progress`, :attr:`Job.cancel_requested`)."""

    progress: JobProgress | None = None
    cancel_requested: bool = False


@attrs.frozen(kw_only=True)
class Job(Generic[P, R]):
    """A job as users see it: what ``enqueue`` and ``get`` return and what handlers receive.

    ``payload`` is an instance of the job type's payload class when the type is known, else plain data.
    ``attempt`` is 1 on the first run, 2 on the first retry, and so on (0 before it first ran).
    Times are seconds since the epoch (UTC); ``run_at_datetime`` and friends give aware datetimes.
    """

    id: str
    type: str
    version: int
    payload: P
    queue: str
    status: JobStatus
    attempt: int
    max_retries: int
    priority: int
    run_at: float
    created_at: float
    dedupe_key: str | None = None
    last_error: str | None = None
    options: JobOptions = DEFAULT_OPTIONS
    meta: Mapping[str, str] = attrs.field(factory=dict)
    # One slot for what only some jobs have (one slot to set for every job built on the hot paths): the
    # running job's link to its worker (progress, cancel requests) on the Job a handler gets, or what
    # ``queue.get`` read beside the envelope (:class:`JobDetails`).
    _extra: JobControl | JobDetails | None = attrs.field(default=None, eq=False, repr=False)
    #: The queue that returned this job (``enqueue``, ``get``), which :meth:`wait` asks; None in handlers.
    origin: Any = attrs.field(default=None, eq=False, repr=False)

    async def wait(self, *, timeout: float | None = None) -> R:
        """Wait for this job to finish and return its result: ``queue.result(job, timeout=timeout)``.

        :raises JobFailedError: the job failed for good (dead-lettered).
        :raises ResultTimeoutError: it did not finish within ``timeout`` seconds.
        :raises ResultNotFoundError: its result or record is gone (retention), or the job is unknown.
        :raises LssmJobsError: this job did not come from a queue (a handler's job).
        """
        if self.origin is None:
            raise LssmJobsError(
                "this Job was not returned by a queue (enqueue, get): call queue.result(job_id) instead"
            )
        result: R = await self.origin.result(self, timeout=timeout)
        return result

    @property
    def run_at_datetime(self) -> datetime:
        return utc_datetime(self.run_at)

    @property
    def last_progress(self) -> JobProgress | None:
        """The last progress its handler reported, as ``queue.get`` read it (None before any report, on
        backends without progress, and on the Job a handler gets)."""
        extra = self._extra
        return extra.progress if isinstance(extra, JobDetails) else None

    @property
    def cancel_requested(self) -> bool:
        """Whether a cancel request waits for the running job (as ``queue.get`` read it), or reached it
        (on the Job a handler gets, like :attr:`cancelled`)."""
        extra = self._extra
        if isinstance(extra, JobDetails):
            return extra.cancel_requested
        return extra is not None and extra.cancelled

    @property
    def cancelled(self) -> bool:
        """Whether a cancel request reached this running job (``queue.cancel``). Sync handlers check it
        between steps (or call :meth:`raise_if_cancelled`); async handlers are interrupted at their next
        ``await`` anyway. Thread-safe; always False outside a handler."""
        extra = self._extra
        return extra is not None and not isinstance(extra, JobDetails) and extra.cancelled

    def raise_if_cancelled(self) -> None:
        """Stop here when a cancel request arrived: raises :class:`~lssm_jobs.errors.JobCancelledError`,
        which settles the job ``cancelled``.

        :raises JobCancelledError: a cancel request reached this job.
        """
        if self.cancelled:
            from lssm_jobs.errors import JobCancelledError

            raise JobCancelledError(f"job {self.id} was cancelled")

    async def progress(self, fraction: float, message: str | None = None, **data: Any) -> None:
        """Report how far the running job is: stored with the job (``queue.get(id).last_progress``,
        ``lssm-jobs job show``) and emitted as a ``job.progress`` event. Rate-limited per job: at most one
        write per progress interval (0.5 s by default); a report within it replaces the waiting one, which
        is written when the interval ends or the handler returns, so the last report is always stored.
        Storing is best effort: a backend error is logged, never raised into the handler.

        :param fraction: 0.0 to 1.0.
        :param message: an optional note, at most 1,000 characters.
        :param data: extra JSON-encodable values (at most 4 KiB encoded).
        :raises ValueError: ``fraction`` out of range, a message too long, data too large.
        :raises TypeError: ``fraction`` not a number, ``message`` not a string, data not JSON-encodable.
        :raises UnsupportedOptionError: the queue's backend cannot store progress (``progress=False``).
        :raises LssmJobsError: called on a job that is not running in this handler (``queue.get``'s).
        """
        await self._running_control().report(fraction, message, data)

    def progress_sync(self, fraction: float, message: str | None = None, **data: Any) -> None:
        """:meth:`progress` for sync handlers (they run in a worker thread): the same checks and limits;
        returns once the report is accepted (a write, when one is due, is made on the event loop).

        :raises LssmJobsError: called from the event loop's own thread (use ``await job.progress``), or on
            a job that is not running in this handler.
        """
        self._running_control().report_from_thread(fraction, message, data)

    def _running_control(self) -> JobControl:
        control = self._extra
        if control is None or isinstance(control, JobDetails):
            from lssm_jobs.errors import LssmJobsError

            raise LssmJobsError(
                f"job {self.id}: progress can be reported only from inside its running handler, on a "
                "backend that stores progress (capabilities progress=True)"
            )
        return control

    @property
    def created_at_datetime(self) -> datetime:
        return utc_datetime(self.created_at)

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_retries + 1 - self.attempt)


_new = object.__new__
(
    _set_id,
    _set_type,
    _set_version,
    _set_payload,
    _set_queue,
    _set_status,
    _set_attempt,
    _set_max_retries,
    _set_priority,
    _set_run_at,
    _set_created_at,
    _set_dedupe_key,
    _set_last_error,
    _set_options,
    _set_meta,
    set_extra,
    _set_origin,
) = slot_setters(Job)


def new_job(
    id: str,
    type: str,
    version: int,
    payload: Any,
    queue: str,
    status: JobStatus,
    attempt: int,
    max_retries: int,
    priority: int,
    run_at: float,
    created_at: float,
    dedupe_key: str | None,
    last_error: str | None,
    options: JobOptions,
    meta: Mapping[str, str],
    origin: Any = None,
) -> Job[Any]:
    """``Job(...)`` with every field given, in order, at about half the cost (see :mod:`lssm_jobs._slots`)."""
    job: Job[Any] = _new(Job)
    _set_id(job, id)
    _set_type(job, type)
    _set_version(job, version)
    _set_payload(job, payload)
    _set_queue(job, queue)
    _set_status(job, status)
    _set_attempt(job, attempt)
    _set_max_retries(job, max_retries)
    _set_priority(job, priority)
    _set_run_at(job, run_at)
    _set_created_at(job, created_at)
    _set_dedupe_key(job, dedupe_key)
    _set_last_error(job, last_error)
    _set_options(job, options)
    _set_meta(job, meta)
    set_extra(job, None)
    _set_origin(job, origin)
    return job
