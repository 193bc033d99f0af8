"""The caller's side of results: wait for a job to finish and return what it returned, or raise why not.

The wait is the result store's (an event or a blocking pop where the store has one, else a backing-off
poll), in slices that grow from 50 ms to 1 s; between slices the backend is asked where the job is, which is
how jobs without a result type (nothing stored) and jobs that failed before a result could be stored are
followed. No loop runs faster than the slices.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.errors import JobFailedError, ResultNotFoundError, ResultTimeoutError
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.results.base import ResultStore, StoredResult
from lssm_jobs.results.codec import decode_result

FIRST_SLICE = 0.05
LONGEST_SLICE = 1.0


def _outcome(found: StoredResult, catalog: JobCatalog) -> Any:
    if found.status == "failed":
        raise JobFailedError(found.job_id, error=found.error, reason=found.reason)
    definition = catalog.get(found.job_type)
    result_type = definition.result if definition is not None else None
    return None if found.value is None else decode_result(result_type, found.value)


async def await_result(
    job_id: str,
    *,
    backend: QueueBackend,
    store: ResultStore | None,
    catalog: JobCatalog,
    timeout: float | None,
) -> Any:
    """What job ``job_id`` returned, once it finished (None for a job type without a result type).

    :raises JobFailedError: the job was dead-lettered (its last error and the reason).
    :raises ResultTimeoutError: it did not finish within ``timeout`` seconds (None: wait as long as it takes).
    :raises ResultNotFoundError: the job is unknown, or its result expired.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
    slice_s = FIRST_SLICE
    while True:
        left = None if deadline is None else deadline - loop.time()
        if store is not None:
            found = await store.wait(job_id, timeout=slice_s if left is None else max(0.0, min(slice_s, left)))
            if found is not None:
                return _outcome(found, catalog)
        record = await backend.get(job_id)
        # The result is stored before the job is acknowledged: a finished job's result is there by now.
        found = await store.get(job_id, now=time.time()) if store is not None else None
        if found is not None:
            return _outcome(found, catalog)
        if record is None:
            raise ResultNotFoundError(
                f"no job {job_id} is known: it never existed, or it finished and both its record and its "
                "result outlived their retention"
            )
        definition = catalog.get(record.type)
        declares_result = definition is not None and definition.result is not None
        if record.status == JobStatus.DEAD:
            dead = await backend.get_dead(job_id)
            raise JobFailedError(
                job_id,
                error=dead.error if dead is not None else record.last_error,
                reason=dead.reason if dead is not None else None,
            )
        if record.status == JobStatus.COMPLETED:
            if declares_result:
                raise ResultNotFoundError(
                    f"job {job_id} completed, but its result is gone (past its result_ttl_ms, or its queue "
                    "had no result store when it ran)"
                )
            return None
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            raise ResultTimeoutError(
                f"job {job_id} did not finish within {timeout:g} s (it is {record.status.value}); it may "
                "still finish: ask again"
            )
        if store is None:
            await asyncio.sleep(slice_s if left is None else min(slice_s, left))
        slice_s = min(slice_s * 2, LONGEST_SLICE)
