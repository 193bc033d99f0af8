"""The no-op handler of the sqlite benchmark (``bench/sqlite.py``) for ``lssm-jobs worker``: it reports to
the recorder of :mod:`adapters.common` (``BENCH_MODE``, ``BENCH_COUNT``, ``BENCH_RESULT``, ``BENCH_READY``)."""

from __future__ import annotations

from typing import Any

from lssm_jobs.handlers import Handlers

from adapters.common import recorder

handlers = Handlers()


@handlers.register("bench.noop")
async def noop(job: Any) -> None:
    recorder.hit(job.payload["t"])
