"""Malformed records written straight into each backend's storage end in the dead letter queue with a
reason (or are dropped with a log line when nothing of them can be read), never crash the worker, and never
touch the healthy jobs around them (each of those runs exactly once, on its first attempt)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fuzz_storage import (
    REDIS_RECORDS,
    SQLITE_ROWS,
    RedisRecord,
    RedisSpace,
    Space,
    SqliteRow,
    SqliteSpace,
    bodies,
    new_id,
)
from fuzz_worker import check_outcome, run_among_healthy
from hypothesis import example, given
from hypothesis import strategies as st
from lssm_jobs.testing import run_async


@given(body=bodies())
def test_a_stored_body_of_any_shape_never_harms_the_worker_or_other_jobs(
    storage: Callable[[], Space], body: bytes
) -> None:
    space = storage()
    bad = new_id()

    @run_async(timeout=60)
    async def run() -> Any:
        return await run_among_healthy(space, [bad], lambda s: s.put_body(bad, body))

    check_outcome(run(), [bad])


@pytest.fixture
def sqlite_spaces(tmp_path: Path) -> Callable[[], Space]:
    counter = iter(range(1_000_000))
    return lambda: SqliteSpace(tmp_path / f"rows-{next(counter)}.db")


def _run_records(space: Space, records: Sequence[Any], *, followed: Callable[[Any], bool] = lambda _: True) -> None:
    """Write each record under a new id among healthy jobs, run a worker, check every followed record's fate."""
    bad = [new_id() for _ in records]
    follow = [job_id for job_id, record in zip(bad, records, strict=True) if followed(record)]

    async def write(space: Space) -> None:
        for job_id, record in zip(bad, records, strict=True):
            await space.put_record(job_id, record)

    @run_async(timeout=60)
    async def run() -> Any:
        return await run_among_healthy(space, bad, write, follow=follow)

    check_outcome(run(), follow)


@given(rows=st.lists(SQLITE_ROWS, min_size=1, max_size=3))
def test_sqlite_rows_with_any_value_in_any_column(sqlite_spaces: Callable[[], Space], rows: list[SqliteRow]) -> None:
    _run_records(sqlite_spaces(), rows)


@pytest.fixture
def redis_spaces(fuzz_redis_server: Any) -> Callable[[], Space]:
    return lambda: RedisSpace(fuzz_redis_server)


_BODY = (
    b'{"id":"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee","type":"fuzz.target","version":1,"payload":{"n":1},'
    b'"queue":"default","priority":0,"created_at":1700000000.25,"run_at":1700000000.25}'
)


@given(records=st.lists(REDIS_RECORDS, min_size=1, max_size=3))
# A status that sends the job somewhere it is not (its entry looks stale, but dropping it loses the job):
@example(records=[RedisRecord("ready", "hash", {"s": b"scheduled"}, "string", _BODY, 7)])
@example(records=[RedisRecord("sched", "hash", {"s": b"pending"}, "string", _BODY, 7)])
@example(records=[RedisRecord("active", "hash", {"s": b"scheduled"}, "string", _BODY, 7)])
@example(records=[RedisRecord("line", "hash", {"s": b"waiting"}, "string", _BODY, 7)])
def test_redis_records_of_any_type_and_content(redis_spaces: Callable[[], Space], records: list[RedisRecord]) -> None:
    # A garbage member of the ready set names no job: it has no fate to check, only no harm to do.
    _run_records(redis_spaces(), records, followed=lambda record: record.placement != "garbage")
