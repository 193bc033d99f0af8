"""Job results: what handlers return, kept in a result store for ``queue.result(job_id)`` / ``job.wait()``.

* :mod:`lssm_jobs.results.base`: the :class:`ResultStore` contract and the :class:`StoredResult` record;
* :mod:`lssm_jobs.results.memory` and :mod:`lssm_jobs.results.sqlite`: the built-in stores (Redis has its
  own in ``lssm_jobs_redis``); plugins register more with the ``lssm_jobs_result_stores`` hook;
* :mod:`lssm_jobs.results.recording` (worker side) and :mod:`lssm_jobs.results.waiting` (caller side).
"""

from __future__ import annotations

from lssm_jobs.results.base import ResultStatus, ResultStore, StoredResult
from lssm_jobs.results.recording import DEFAULT_RESULT_TTL_MS

__all__ = ["DEFAULT_RESULT_TTL_MS", "ResultStatus", "ResultStore", "StoredResult"]
