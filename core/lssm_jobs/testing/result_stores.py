"""The result store contract suite: what every :class:`~lssm_jobs.results.base.ResultStore` does.

Subclass :class:`ResultStoreConformance` and provide a fixture ``lssm_jobs_result_store_factory`` returning
a zero-argument callable that makes new, unopened stores; stores made by one factory share their storage
(like several processes on one database), and each factory is isolated from other tests::

    @pytest.fixture
    def lssm_jobs_result_store_factory(tmp_path):
        return lambda: SqliteResultStore(tmp_path / "results.db")

    class TestSqliteResultStore(ResultStoreConformance):
        pass
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from lssm_jobs.results.base import ResultStore, StoredResult
from lssm_jobs.testing.helpers import run_async

ResultStoreFactory = Callable[[], ResultStore]


def stored(
    *, job_id: str | None = None, ttl: float = 3600.0, value: bytes | None = b'{"ok":true}', failed: bool = False
) -> StoredResult:
    """A result as the worker stores it, expiring ``ttl`` seconds from now."""
    now = time.time()
    return StoredResult(
        job_id=job_id or uuid.uuid4().hex,
        job_type="results.test",
        status="failed" if failed else "completed",
        value=None if failed else value,
        error="ValueError: no" if failed else None,
        reason="failed after 1 attempt" if failed else None,
        finished_at=now,
        expires_at=now + ttl,
    )


@asynccontextmanager
async def _opened(factory: ResultStoreFactory) -> AsyncIterator[ResultStore]:
    store = factory()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class ResultStoreConformance:
    """The contract every result store meets. Requires fixture ``lssm_jobs_result_store_factory``."""

    #: How long a woken waiter may take to return (seconds), generous for loaded machines.
    wake_bound: float = 5.0

    @run_async()
    async def test_put_then_get_round_trips(self, lssm_jobs_result_store_factory: ResultStoreFactory) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            done = stored(value=b"\xff\x00 verbatim")
            failed = stored(failed=True)
            await store.put(done)
            await store.put(failed)
            now = time.time()
            found = await store.get(done.job_id, now=now)
            assert found is not None
            assert (found.job_id, found.job_type, found.status, found.value) == (
                done.job_id,
                "results.test",
                "completed",
                b"\xff\x00 verbatim",
            )
            assert abs(found.expires_at - done.expires_at) < 0.01
            assert abs(found.finished_at - done.finished_at) < 0.01
            bad = await store.get(failed.job_id, now=now)
            assert bad is not None
            assert (bad.status, bad.value, bad.error, bad.reason) == (
                "failed",
                None,
                "ValueError: no",
                "failed after 1 attempt",
            )
            assert await store.get(uuid.uuid4().hex, now=now) is None

    @run_async()
    async def test_stores_from_one_factory_share_results(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with (
            _opened(lssm_jobs_result_store_factory) as first,
            _opened(lssm_jobs_result_store_factory) as second,
        ):
            result = stored()
            await first.put(result)
            found = await second.get(result.job_id, now=time.time())
            assert found is not None and found.value == result.value

    @run_async()
    async def test_put_replaces_an_earlier_result(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            job_id = uuid.uuid4().hex
            await store.put(stored(job_id=job_id, value=b"1"))
            await store.put(stored(job_id=job_id, value=b"2"))
            found = await store.get(job_id, now=time.time())
            assert found is not None and found.value == b"2"

    @run_async()
    async def test_an_expired_result_is_never_returned(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            result = stored(ttl=600)
            await store.put(result)
            assert await store.get(result.job_id, now=result.expires_at - 1) is not None
            assert await store.get(result.job_id, now=result.expires_at) is None
            assert await store.get(result.job_id, now=result.expires_at + 3600) is None
            assert await store.wait(result.job_id, timeout=0) is not None  # still live by the clock

    @run_async()
    async def test_prune_deletes_expired_results_only(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            gone, kept = stored(ttl=0.05), stored(ttl=3600)
            await store.put(gone)
            await store.put(kept)
            await asyncio.sleep(0.1)  # let the short one's time pass on the store's clock too
            assert await store.prune(now=time.time()) >= 0
            assert await store.get(gone.job_id, now=gone.finished_at) is None, "an expired result survived prune"
            assert await store.get(kept.job_id, now=time.time()) is not None

    @run_async()
    async def test_delete(self, lssm_jobs_result_store_factory: ResultStoreFactory) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            result = stored()
            await store.put(result)
            assert await store.delete(result.job_id) is True
            assert await store.get(result.job_id, now=time.time()) is None
            assert await store.delete(result.job_id) is False

    @run_async()
    async def test_wait_returns_a_stored_result_at_once_and_none_after_its_timeout(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with _opened(lssm_jobs_result_store_factory) as store:
            result = stored()
            await store.put(result)
            found = await store.wait(result.job_id, timeout=10)
            assert found is not None and found.value == result.value
            started = time.monotonic()
            assert await store.wait(uuid.uuid4().hex, timeout=0.3) is None
            assert 0.25 <= time.monotonic() - started < self.wake_bound

    @run_async()
    async def test_every_waiter_wakes_when_the_result_is_stored(
        self, lssm_jobs_result_store_factory: ResultStoreFactory
    ) -> None:
        async with (
            _opened(lssm_jobs_result_store_factory) as waiting,
            _opened(lssm_jobs_result_store_factory) as writing,
        ):
            result = stored()
            waiters = [asyncio.ensure_future(waiting.wait(result.job_id, timeout=30)) for _ in range(3)]
            await asyncio.sleep(0.2)  # the waiters are waiting
            assert not any(waiter.done() for waiter in waiters)
            started = time.monotonic()
            await writing.put(result)
            found = await asyncio.wait_for(asyncio.gather(*waiters), self.wake_bound)
            assert all(each is not None and each.value == result.value for each in found)
            assert time.monotonic() - started < self.wake_bound
