"""Job ids: 48 bits of creation time in milliseconds, then 80 random bits, as 32 hex digits."""

from __future__ import annotations

import re

from lssm_jobs.job_ids import new_job_id, new_job_ids
from lssm_jobs.queue import open_queue
from lssm_jobs.testing import run_async

_ID = re.compile(r"[0-9a-f]{32}")


def test_ids_start_with_their_millisecond_and_sort_by_it() -> None:
    single = new_job_id(1_700_000_000.1234)
    assert _ID.fullmatch(single) and int(single[:12], 16) == 1_700_000_000_123
    earlier, later = new_job_ids(1000, 1_700_000_000.0), new_job_ids(1000, 1_700_000_000.002)
    assert all(_ID.fullmatch(job_id) for job_id in earlier + later)
    assert max(earlier) < min(later)
    assert len(set(earlier)) == 1000  # 80 random bits each


def test_the_random_part_differs_between_ids_of_one_millisecond() -> None:
    ids = [*new_job_ids(2, 1_700_000_000.0), new_job_id(1_700_000_000.0)]
    assert len({job_id[12:] for job_id in ids}) == 3


@run_async()
async def test_enqueued_jobs_carry_ids_of_their_creation_time() -> None:
    async with open_queue("memory", sinks=[]) as queue:
        job = await queue.enqueue("t", {"n": 1})
        batch = await queue.enqueue_many([("t", {"n": n}) for n in range(3)])
    assert int(job.id[:12], 16) == int(job.created_at * 1000)
    assert {int(j.id[:12], 16) for j in batch} == {int(batch[0].created_at * 1000)}
