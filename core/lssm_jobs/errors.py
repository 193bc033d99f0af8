"""Exceptions raised by lssm-jobs, and the ones handlers raise to steer retries."""

from __future__ import annotations

from collections.abc import Sequence

import attrs


class LssmJobsError(Exception):
    """Base class of every error lssm-jobs raises."""


@attrs.frozen(kw_only=True)
class FieldError:
    """One invalid field of a payload: where it is (``$.items[0].sku``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class JobValidationError(LssmJobsError, ValueError):
    """A payload does not match its job type; raised at enqueue, so nothing was stored.

    ``errors`` names every bad field with its path from the payload root (``$``).
    """

    def __init__(self, job_type: str, errors: Sequence[FieldError]) -> None:
        self.job_type = job_type
        self.errors = list(errors)
        lines = "; ".join(str(error) for error in self.errors)
        super().__init__(f"invalid payload for job type {job_type!r}: {lines}")


class JobTypeConflictError(LssmJobsError):
    """The same job type name and version was defined twice with different payload classes."""


class SerializationError(LssmJobsError):
    """A job envelope could not be encoded or decoded."""


class DedupeConflictError(LssmJobsError):
    """A dead letter cannot be replayed because a live job (scheduled, pending or active) holds its dedupe
    key now: replaying it would make two live jobs with one key. The dead letter stays where it is.

    ``live_job_id`` names the job holding the key; replay again once it has finished.
    """

    def __init__(self, job_id: str, dedupe_key: str, live_job_id: str) -> None:
        self.job_id = job_id
        self.dedupe_key = dedupe_key
        self.live_job_id = live_job_id
        super().__init__(
            f"dead letter {job_id} was not replayed: its dedupe key {dedupe_key!r} is held by live job "
            f"{live_job_id}"
        )


class PluginError(LssmJobsError):
    """A plugin is broken: it failed to load, or registered something invalid."""


class DuplicateRegistrationError(PluginError):
    """Two plugins registered the same name for the same kind of thing."""


class PluginNotFoundError(LssmJobsError, LookupError):
    """The backend, serializer, trigger, store or sink asked for is not installed, blocked, or its plugin
    failed to load (the message says which, and lists what is available)."""


class BackendNotFoundError(PluginNotFoundError):
    """The queue backend asked for is not installed, blocked, or its plugin failed to load."""


class UnsupportedOptionError(LssmJobsError, ValueError):
    """An enqueue option the queue's backend cannot honour, as its capabilities declare (a delay on a
    backend without ``delay``, a priority without ``priority``, a dedupe key without ``dedupe``). Raised
    before anything is stored."""


class QueueClosedError(LssmJobsError, RuntimeError):
    """The queue was used after ``close()``, or before it could be opened."""


class JobTimeoutError(LssmJobsError, TimeoutError):
    """A handler ran longer than its job's ``timeout_ms``."""


class PermanentJobError(LssmJobsError):
    """Raise from a handler to fail the job at once, without retries (it goes to the dead letter queue).

    Example::

        if not user_exists(job.payload.user_id):
            raise PermanentJobError("user was deleted; retrying will not help")
    """


#: Dramatiq and Taskiq users know this name; it is the same exception.
DoNotRetry = PermanentJobError


class RetryJob(LssmJobsError):
    """Raise from a handler to retry after exactly ``delay_ms`` (still counts as an attempt).

    Example::

        except RateLimited as error:
            raise RetryJob(delay_ms=error.retry_after_ms) from error
    """

    def __init__(self, message: str = "retry requested", *, delay_ms: int) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.delay_ms = delay_ms
        super().__init__(message)


class JobCancelledError(LssmJobsError):
    """Raised inside a handler to stop on a cancel request (``job.raise_if_cancelled()`` raises it once a
    request arrived): the job is settled ``cancelled``, neither retried nor dead-lettered. Raised without a
    request, it is an ordinary failure."""


class InvalidResultError(PermanentJobError):
    """A handler returned a value that does not fit its job type's declared ``result`` type (or cannot be
    serialized). It is that job's failure, without retries: running the handler again would return the same
    wrong value."""


class JobFailedError(LssmJobsError):
    """The job whose result was asked for failed for good (retries exhausted, a permanent failure, or it
    could not run at all) and is in the dead letter queue.

    :param job_id: the job.
    :param error: the last attempt's error (``"ValueError: ..."``), when the job ran.
    :param reason: why it was dead-lettered (``"failed after 4 attempts"``, ``"invalid payload: ..."``).
    """

    def __init__(self, job_id: str, *, error: str | None, reason: str | None) -> None:
        self.job_id = job_id
        self.error = error
        self.reason = reason
        detail = "; ".join(part for part in (reason, error) if part) or "no error recorded"
        super().__init__(f"job {job_id} failed: {detail}")


class ResultTimeoutError(LssmJobsError, TimeoutError):
    """The job did not finish within the time ``queue.result(..., timeout=)`` waited for it. The job is not
    affected: it may still finish later (ask again)."""


class ResultNotFoundError(LssmJobsError, LookupError):
    """No result can come for this job id: the job is unknown, or it finished and its result (or its record)
    outlived its retention (``result_ttl_ms``)."""


class ResultStoreUnavailableError(LssmJobsError, RuntimeError):
    """The queue has no result store: its backend stores no results (its capabilities declare
    ``results=False``) and no ``result_store=`` was given."""
