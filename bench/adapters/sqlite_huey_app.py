"""huey's ``SqliteHuey`` for the sqlite benchmark (``bench/sqlite.py``): the database file comes from
``BENCH_SQLITE_PATH``; the consumer is huey's own CLI, ``huey_consumer adapters.sqlite_huey_app.huey``."""

from __future__ import annotations

import os

from huey import SqliteHuey

from adapters.common import recorder

# BENCH_HUEY_FSYNC: "" (huey's default: sqlite's synchronous=FULL), "0" (synchronous=OFF), "1" (FULL).
_FSYNC = os.environ.get("BENCH_HUEY_FSYNC", "")
huey = SqliteHuey(
    "bench", filename=os.environ["BENCH_SQLITE_PATH"], fsync=bool(int(_FSYNC)) if _FSYNC else None
)


@huey.task()
def noop(t: float) -> None:
    recorder.hit(t)
