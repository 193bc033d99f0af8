"""Random arguments and payloads against a typed job definition, on memory, sqlite and Redis: each enqueue
either stores a job that can be read back and runs once, or raises the documented error (a ValueError, a
TypeError or an lssm-jobs error such as JobValidationError / SerializationError, never a raw OverflowError,
UnicodeEncodeError or RecursionError) and stores nothing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest
from fuzz_storage import Space
from hypothesis import given
from hypothesis import strategies as st
from lssm_jobs import Job, JobCatalog, JobStatus, LssmJobsError, define_job_type
from lssm_jobs.testing import run_async, wait_until


@attrs.frozen
class Order:
    sku: str
    quantity: int
    price: float
    gift: bool
    tags: list[str]
    attributes: dict[str, str]
    placed_at: datetime
    note: str | None = None


CATALOG = JobCatalog()
ORDER = define_job_type(type="fuzz.order", payload=Order, catalog=CATALOG)
#: Raw errors that mean an argument slipped through unchecked, even where they subclass ValueError.
RAW = (UnicodeError, OverflowError, RecursionError, KeyError, AttributeError, IndexError)
#: How far ahead an accepted job may be due and still be waited for.
RUN_WITHIN_S = 2.0

_ANY_TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)  # lone surrogates too
_TEXT = st.text(max_size=12) | _ANY_TEXT
_WEIRD = st.sampled_from(
    [None, 1.5, -1, 0, 5, "1", "", True, b"x", [], {}, 10**400, 2**63, -(2**63) - 1, math.nan, math.inf]
)
_DATETIMES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)


@attrs.frozen
class Deep:
    """Stands for a payload nested ``depth`` lists deep, built only when enqueued (hypothesis would hit the
    recursion limit printing it)."""

    depth: int

    def build(self) -> Any:
        value: Any = "bottom"
        for _ in range(self.depth):
            value = [value]
        return {"sku": "x", "tags": value}


_ORDERS = st.builds(
    Order,
    sku=_TEXT,
    quantity=st.integers(-(2**70), 2**70),
    price=st.floats(),
    gift=st.booleans(),
    tags=st.lists(_TEXT, max_size=3),
    attributes=st.dictionaries(_TEXT, _TEXT, max_size=3),
    placed_at=_DATETIMES,
    note=st.none() | _TEXT,
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=10,
)
PAYLOADS = (
    _ORDERS
    | _ORDERS.map(attrs.asdict)  # plain data of a valid shape (a datetime where JSON wants text)
    | st.builds(  # plain data as JSON would carry it, some fields of the wrong type
        lambda order, broken: {**attrs.asdict(order), "placed_at": order.placed_at.isoformat(), **broken},
        _ORDERS,
        st.dictionaries(st.sampled_from(["sku", "quantity", "price", "gift", "tags", "extra"]), _JSON, max_size=2),
    )
    | _JSON
    | st.sampled_from([200, 900, 1_000, 3_000, 100_000]).map(Deep)
)
JOB_TYPES = st.sampled_from([ORDER, ORDER.type, "fuzz.untyped"]) | _WEIRD | _ANY_TEXT
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "delay_ms": st.integers(0, 1500) | _WEIRD,
        "run_at": _DATETIMES | st.datetimes() | st.floats() | _WEIRD,
        "priority": st.integers(-(2**63), 2**63 - 1) | _WEIRD,
        "dedupe_key": _TEXT | _WEIRD,
        "queue": st.sampled_from(["default", "other", "q:1", "{tag}"]) | _TEXT | _WEIRD,
        "max_retries": st.integers(0, 5) | _WEIRD,
        "timeout_ms": st.integers(1_000, 10**6) | _WEIRD,
        "meta": st.dictionaries(_TEXT, _TEXT, max_size=2) | st.sampled_from([{1: "a"}, {"a": 1}, "x"]),
    },
)


@given(calls=st.lists(st.tuples(JOB_TYPES, PAYLOADS, OPTIONS), min_size=1, max_size=4))
def test_enqueue_stores_what_it_can_run_or_refuses_with_the_documented_error(
    storage: Callable[[], Space], calls: list[tuple[Any, Any, dict[str, Any]]]
) -> None:
    space = storage()

    @run_async(timeout=60)
    async def scenario() -> None:
        ran: dict[str, int] = {}

        def order(job: Job[Any]) -> None:
            assert isinstance(job.payload, Order)
            ran[job.id] = ran.get(job.id, 0) + 1

        queue = space.queue(concurrency=4, poll_interval=0.05, sinks=[], catalog=CATALOG)
        queue.register(ORDER, order)
        accepted: list[tuple[Job[Any], float]] = []
        async with queue:
            for job_type, payload, options in calls:
                if isinstance(payload, Deep):
                    payload = payload.build()
                before = await queue.counts()
                try:
                    job = await queue.enqueue(job_type, payload, **options)
                except RAW as error:
                    pytest.fail(f"raw {type(error).__name__} from enqueue({job_type!r}, ..., {options!r}): {error}")
                except (ValueError, TypeError, LssmJobsError):
                    assert await queue.counts() == before, "a refused enqueue stored something"
                    continue
                stored = await queue.get(job.id)  # what was accepted can be read back
                assert stored is not None and stored.status in (JobStatus.SCHEDULED, JobStatus.PENDING)
                if job_type in (ORDER, ORDER.type) and isinstance(payload, Order):
                    assert stored.payload == payload
                accepted.append((job, stored.run_at))
            await queue.start()
            due = [job for job, run_at in accepted if run_at <= time.time() + RUN_WITHIN_S]

            async def settled() -> bool:
                for job in due:
                    record = await queue.backend.get(job.id)
                    dead = await queue.backend.get_dead(job.id)
                    if dead is None and (record is None or record.status is not JobStatus.COMPLETED):
                        return False
                return True

            await wait_until(settled, timeout=RUN_WITHIN_S + 10, message="accepted jobs completed or dead")
        for job in due:
            if job.type == ORDER.type:  # it has a handler: it ran, once
                assert ran.get(job.id) == 1, f"{job.id} ran {ran.get(job.id, 0)} times"

    scenario()

