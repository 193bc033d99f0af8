"""The no-op handler of the multi-process drain benchmark (``bench/run.py --processes 1,2``).

Each worker process records when it ran its first and last job and how many it ran, and writes that to
``$BENCH_RESULT_DIR/<pid>.json`` when it exits (the supervisor drains it on SIGTERM).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

from lssm_jobs.handlers import Handlers

handlers = Handlers()
_seen = {"first": 0.0, "last": 0.0, "seen": 0}


@handlers.register("bench.noop")
async def noop(job: Any) -> None:
    now = time.time()
    if not _seen["seen"]:
        _seen["first"] = now
    _seen["seen"] += 1
    _seen["last"] = now


def _write() -> None:
    directory = os.environ.get("BENCH_RESULT_DIR")
    if directory and os.environ.get("LSSM_JOBS_WORKER_INDEX") is not None:
        Path(directory, f"{os.getpid()}.json").write_text(json.dumps(_seen))


atexit.register(_write)
