"""Enqueue checks every argument before storing anything, on every path in (``enqueue``, ``enqueue_many``
with requests and with (type, payload) pairs, the blocking facade), on the memory and sqlite backends: each
bad value gets one TypeError, ValueError or SerializationError naming the argument, nothing is stored, and
whatever is accepted (up to every bound) is read back and run."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from lssm_jobs import JobOptions, SerializationError, define_job_type
from lssm_jobs.blocking import BlockingQueue
from lssm_jobs.jobs import Job, JobCatalog, JobStatus
from lssm_jobs.limits import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PAYLOAD_DEPTH,
    MAX_DEDUPE_KEY_BYTES,
    MAX_DELAY_MS,
    MAX_META_ENTRIES,
    MAX_META_KEY_BYTES,
    MAX_META_VALUE_BYTES,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_DEPTH,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_TIMEOUT_MS,
    MIN_PRIORITY,
)
from lssm_jobs.queue import EnqueueRequest, JobQueue
from lssm_jobs.testing import run_async, wait_until

Factory = Callable[..., JobQueue]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Each bad enqueue keyword argument, the exception, and a word its message must contain.
BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"priority": 1.5}, TypeError, "priority"),
    ({"priority": "1"}, TypeError, "priority"),
    ({"priority": True}, TypeError, "priority"),
    ({"priority": 2**63}, ValueError, "priority"),
    ({"priority": -(2**31) - 1}, ValueError, "priority"),
    ({"priority": 10**400}, ValueError, "priority"),
    ({"queue": 5}, TypeError, "queue"),
    ({"queue": ""}, ValueError, "queue"),
    ({"queue": "a\nb"}, ValueError, "queue"),
    ({"queue": "x\ud800"}, ValueError, "queue"),
    ({"queue": "q" * (MAX_NAME_LENGTH + 1)}, ValueError, "queue"),
    ({"timeout_ms": 10**400}, ValueError, "timeout_ms"),
    ({"timeout_ms": MAX_TIMEOUT_MS + 1}, ValueError, "timeout_ms"),
    ({"timeout_ms": -1}, ValueError, "timeout_ms"),
    ({"timeout_ms": 1.5}, TypeError, "timeout_ms"),
    ({"delay_ms": 10**400}, ValueError, "delay_ms"),
    ({"delay_ms": MAX_DELAY_MS + 1}, ValueError, "delay_ms"),
    ({"delay_ms": -5}, ValueError, "delay_ms"),
    ({"delay_ms": "10"}, TypeError, "delay_ms"),
    ({"delay_ms": 1, "run_at": 1.0}, ValueError, "not both"),
    ({"run_at": 10**400}, ValueError, "run_at"),
    ({"run_at": 1e300}, ValueError, "run_at"),
    ({"run_at": float("nan")}, ValueError, "run_at"),
    ({"run_at": float("inf")}, ValueError, "run_at"),
    ({"run_at": -1.0}, ValueError, "run_at"),
    ({"run_at": "2030-01-01"}, TypeError, "run_at"),
    ({"run_at": True}, TypeError, "run_at"),
    ({"run_at": datetime(2030, 1, 1)}, ValueError, "timezone-aware"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"max_retries": MAX_RETRIES + 1}, ValueError, "max_retries"),
    ({"max_retries": "3"}, TypeError, "max_retries"),
    ({"max_retries": False}, TypeError, "max_retries"),
    ({"dedupe_key": 5}, TypeError, "dedupe_key"),
    ({"dedupe_key": ""}, ValueError, "dedupe_key"),
    ({"dedupe_key": "k\udc00"}, ValueError, "dedupe_key"),
    ({"dedupe_key": "k" * (MAX_DEDUPE_KEY_BYTES + 1)}, ValueError, "dedupe_key"),
    ({"meta": [("a", "b")]}, TypeError, "meta"),
    ({"meta": {"a": 1}}, TypeError, "meta"),
    ({"meta": {1: "a"}}, TypeError, "meta"),
    ({"meta": {"": "a"}}, ValueError, "meta"),
    ({"meta": {"a": "\ud800"}}, ValueError, "meta"),
    ({"meta": {"\ud800": "a"}}, ValueError, "meta"),
    ({"meta": {"k" * (MAX_META_KEY_BYTES + 1): "a"}}, ValueError, "meta"),
    ({"meta": {"a": "v" * (MAX_META_VALUE_BYTES + 1)}}, ValueError, "meta"),
    ({"meta": {f"k{i}": "v" for i in range(MAX_META_ENTRIES + 1)}}, ValueError, "meta"),
]

# Each bad job type (as enqueue's first argument).
BAD_TYPES: list[tuple[Any, type[Exception], str]] = [
    (5, TypeError, "job_type"),
    (1.5, TypeError, "job_type"),
    (True, TypeError, "job_type"),
    (b"email.send", TypeError, "job_type"),
    (["email.send"], TypeError, "job_type"),
    (None, TypeError, "job_type"),
    ("", ValueError, "job_type"),
    ("email\n.send", ValueError, "job_type"),
    ("email.send\x1b[2J", ValueError, "job_type"),
    ("t\udcff", ValueError, "job_type"),
    ("t" * (MAX_NAME_LENGTH + 1), ValueError, "job_type"),
]

# Each bad payload (for an untyped job type), with the queue's default limits.
BAD_PAYLOADS: list[tuple[Any, type[Exception], str]] = [
    ({"name": "\ud800"}, SerializationError, "lone surrogate"),
    ({"\udcff": 1}, SerializationError, "lone surrogate"),
    ({"items": ["ok", {"deep": "x\udfff"}]}, SerializationError, "$.items[1].deep"),
    (_nested(DEFAULT_MAX_PAYLOAD_DEPTH + 1), SerializationError, "max_payload_depth"),
    (_nested(5_000), SerializationError, "max_payload_depth"),
    ("x" * (DEFAULT_MAX_PAYLOAD_BYTES + 1), SerializationError, "max_payload_bytes"),
    ({"e": "é" * (DEFAULT_MAX_PAYLOAD_BYTES // 2)}, SerializationError, "max_payload_bytes"),
    ({"n": float("nan")}, SerializationError, "payload"),
    ({"s": {1, 2}}, SerializationError, "payload"),
    ({"big": 10**5000}, SerializationError, "payload"),
]


def _ways_in(
    queue: JobQueue, blocking: BlockingQueue
) -> Iterator[tuple[str, Callable[[Any, Any, dict[str, Any]], Any]]]:
    """Every way a job gets in, as ``(name, call(job_type, payload, options))``; a call either returns a
    coroutine (async API) or does the work (blocking facade)."""
    yield "enqueue", lambda t, p, o: queue.enqueue(t, p, **o)
    yield (
        "enqueue_many request",
        lambda t, p, o: queue.enqueue_many(
            [EnqueueRequest(job_type="ok.first"), EnqueueRequest(job_type=t, payload=p, **o)]
        ),
    )
    yield "blocking enqueue", lambda t, p, o: blocking.enqueue(t, p, **o)
    yield (
        "blocking enqueue_many",
        lambda t, p, o: blocking.enqueue_many(
            [EnqueueRequest(job_type="ok.first"), EnqueueRequest(job_type=t, payload=p, **o)]
        ),
    )


def _pairs_in(queue: JobQueue, blocking: BlockingQueue) -> Iterator[tuple[str, Callable[[Any, Any], Any]]]:
    """The (type, payload) pair paths of enqueue_many, which are prepared by their own inline code."""
    yield "enqueue_many pair", lambda t, p: queue.enqueue_many([("ok.first", {}), (t, p)])
    yield "blocking enqueue_many pair", lambda t, p: blocking.enqueue_many([("ok.first", {}), (t, p)])


async def _outcome(call: Callable[[], Any]) -> Any:
    result = call()
    if asyncio.iscoroutine(result):
        return await result
    return result


def _stored(blocking: BlockingQueue) -> dict[str, Any]:
    return {queue: dict(states) for queue, states in blocking.counts().items()}


def test_every_bad_argument_on_every_path_is_refused_and_nothing_is_stored(make_queue: Factory) -> None:
    # The blocking facade runs the queue on its own loop; the async paths use a second queue on the same
    # backend storage (the sqlite file; for memory, the facade's own queue through its loop).
    blocking = BlockingQueue(make_queue())
    queue = blocking.queue

    def check(path: str, call: Callable[[], Any], error: type[Exception], word: str) -> None:
        with pytest.raises(error) as raised:
            blocking._call(_outcome(call)) if "blocking" not in path else call()
        assert word in str(raised.value), (path, str(raised.value))
        if "enqueue_many" in path:
            assert "[1]" in str(raised.value), (path, str(raised.value))
        assert type(raised.value) is error or issubclass(type(raised.value), error)
        assert _stored(blocking) == {}, path  # not even the valid job before it

    try:
        for path, enqueue in _ways_in(queue, blocking):
            for options, error, word in BAD_OPTIONS:
                check(path, lambda: enqueue("ok.type", {}, options), error, word)  # noqa: B023
            for job_type, error, word in BAD_TYPES:
                check(path, lambda: enqueue(job_type, {}, {}), error, word)  # noqa: B023
            for payload, error, word in BAD_PAYLOADS:
                check(path, lambda: enqueue("ok.type", payload, {}), error, word)  # noqa: B023
        for path, pair in _pairs_in(queue, blocking):
            for job_type, error, word in BAD_TYPES:
                check(path, lambda: pair(job_type, {}), error, word)  # noqa: B023
            for payload, error, word in BAD_PAYLOADS:
                check(path, lambda: pair("ok.type", payload), error, word)  # noqa: B023
    finally:
        blocking.close()


@attrs.frozen
class Tree:
    label: str
    children: list[Tree] = attrs.field(factory=list)


def test_typed_payloads_are_checked_the_same_way(make_queue: Factory) -> None:
    catalog = JobCatalog()
    tree = define_job_type(type="tree.walk", payload=Tree, catalog=catalog)
    with BlockingQueue(make_queue(catalog=catalog)) as blocking:
        deep: dict[str, Any] = {"label": "leaf"}
        for _ in range(40):  # 80 levels of JSON: objects in lists
            deep = {"label": "node", "children": [deep]}
        very_deep: dict[str, Any] = {"label": "leaf"}
        for _ in range(400):  # beyond what cattrs can structure within the recursion limit
            very_deep = {"label": "node", "children": [very_deep]}
        for payload, error, word in [
            ({"label": "\ud800"}, SerializationError, "lone surrogate"),
            (deep, SerializationError, "max_payload_depth"),
            # refused at validation (JobValidationError) where cattrs runs out of recursion first, else by the
            # depth check (CPython 3.10's deeper C stack lets cattrs structure it)
            (very_deep, (ValueError, SerializationError), "too deeply|max_payload_depth"),
        ]:
            for enqueue in (
                lambda p: blocking.enqueue(tree, p),
                lambda p: blocking.enqueue_many([(tree, {"label": "ok"}), (tree, p)]),
            ):
                with pytest.raises(error, match=word):
                    enqueue(payload)
            assert _stored(blocking) == {}


def test_job_options_and_definitions_are_checked() -> None:
    catalog = JobCatalog()
    for options, error in [
        ({"max_retries": True}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.0}, TypeError),
        ({"backoff_ms": 10**400}, ValueError),
        ({"max_backoff_ms": -1}, ValueError),
        ({"jitter": float("nan")}, ValueError),
        ({"jitter": float("inf")}, ValueError),
        ({"jitter": "0.1"}, TypeError),
        ({"timeout_ms": 10**400}, ValueError),
        ({"timeout_ms": "1000"}, TypeError),
        ({"queue": ""}, ValueError),
        ({"queue": "a\tb"}, ValueError),
        ({"queue": 7}, TypeError),
        ({"priority": 2**31}, ValueError),
        ({"priority": 0.5}, TypeError),
        ({"backoff": "exponentail"}, ValueError),
        ({"backoff": 3}, TypeError),
        ({"backoff": None}, TypeError),
    ]:
        with pytest.raises(error):
            JobOptions(**options)
    # one clear message naming the field and what it accepts (not attrs' tuple of internals)
    with pytest.raises(ValueError) as raised:
        JobOptions(backoff="Exponential")  # type: ignore[arg-type]
    assert str(raised.value) == "backoff must be one of exponential, linear, fixed; got 'Exponential'"
    for arguments, error in [
        ({"type": 5}, TypeError),
        ({"type": ""}, ValueError),
        ({"type": "bad\nname"}, ValueError),
        ({"type": "v", "version": "2"}, TypeError),
        ({"type": "v", "version": 0}, ValueError),
        ({"type": "v", "version": 2**31}, ValueError),
        ({"type": "o", "options": {"max_retries": 1}}, TypeError),
        ({"type": "u", "version": 2, "upgraders": {1: "not a function"}}, TypeError),
        ({"type": "d", "description": 5}, TypeError),
    ]:
        with pytest.raises(error):
            define_job_type(catalog=catalog, **arguments)
    assert catalog.names() == []


class Urgency(enum.IntEnum):
    HIGH = 10


class Queues(str, enum.Enum):
    REPORTS = "reports"


def test_queue_limits_are_options_and_are_checked(make_queue: Factory) -> None:
    for limits, error in [
        ({"max_payload_bytes": 0}, ValueError),
        ({"max_payload_bytes": "1"}, TypeError),
        ({"max_payload_depth": MAX_PAYLOAD_DEPTH + 1}, ValueError),
        ({"max_payload_depth": 0}, ValueError),
        ({"concurrency": 0}, ValueError),
        ({"lease_ms": 1.5}, TypeError),
    ]:
        with pytest.raises(error):
            make_queue(**limits)
    with BlockingQueue(make_queue(max_payload_bytes=100, max_payload_depth=3)) as blocking:
        with pytest.raises(SerializationError, match="max_payload_bytes"):
            blocking.enqueue("limited", "x" * 99)  # 101 bytes of JSON
        with pytest.raises(SerializationError, match="max_payload_depth"):
            blocking.enqueue("limited", [[[["four"]]]])
        assert _stored(blocking) == {}
        blocking.enqueue("limited", "x" * 98)
        blocking.enqueue("limited", [[["three"]]])


@run_async()
async def test_what_is_accepted_at_every_bound_is_read_back_and_run(make_queue: Factory) -> None:
    catalog = JobCatalog()
    ran: list[Job[Any]] = []
    now = datetime.now(timezone.utc)
    async with make_queue(catalog=catalog, lease_ms=2_000) as queue:
        queue.register("bounds", ran.append)
        accepted = [
            await queue.enqueue("bounds", {"i": 0}, priority=MAX_PRIORITY, timeout_ms=MAX_TIMEOUT_MS),
            await queue.enqueue("bounds", {"i": 1}, priority=MIN_PRIORITY, max_retries=MAX_RETRIES),
            await queue.enqueue(
                "b" * MAX_NAME_LENGTH,
                {"i": 2, "text": "é🙂" * 1000},
                queue="q" * MAX_NAME_LENGTH,
                dedupe_key="k" * MAX_DEDUPE_KEY_BYTES,
                meta={
                    f"k{i:02}" + "m" * (MAX_META_KEY_BYTES - 3): "v" * MAX_META_VALUE_BYTES for i in range(64)
                },
            ),
            await queue.enqueue("bounds", _nested(DEFAULT_MAX_PAYLOAD_DEPTH)),
            await queue.enqueue("bounds", "x" * (DEFAULT_MAX_PAYLOAD_BYTES - 2)),
            await queue.enqueue("bounds", {"i": 5}, priority=Urgency.HIGH, queue=Queues.REPORTS),
        ]
        later = [
            await queue.enqueue("bounds", {"i": 6}, delay_ms=MAX_DELAY_MS),
            await queue.enqueue("bounds", {"i": 7}, run_at=now + timedelta(days=3649)),
        ]
        for job in [*accepted, *later]:
            stored = await queue.get(job.id)
            assert stored is not None
            assert (stored.payload, stored.priority, stored.queue, stored.meta) == (
                job.payload,
                job.priority,
                job.queue,
                job.meta,
            )
            assert type(stored.priority) is int and type(stored.queue) is str
        assert (await queue.get(later[0].id)).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
        assert later[1].run_at_datetime.year >= now.year + 9
        queue.register("b" * MAX_NAME_LENGTH, ran.append)
        await queue.start()
        for job in accepted:
            await wait_until(
                lambda job=job: _completed(queue, job.id), timeout=20, message=f"{job.id} completed"
            )
    assert len(ran) == len(accepted)  # each ran once, the long timeout included
    assert sorted(job.attempt for job in ran) == [1] * len(accepted)


async def _completed(queue: JobQueue, job_id: str) -> bool:
    job = await queue.get(job_id)
    return job is not None and job.status is JobStatus.COMPLETED


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max([_depth(child) for child in value.values()], default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max([_depth(child) for child in value], default=0)
    return 0


def test_the_depth_measured_on_the_json_text_is_exact() -> None:
    """The depth check reads the encoded text; brackets inside strings (escaped quotes and backslashes
    around them, non-ASCII text) neither hide nor add a level."""
    from lssm_jobs.limits import depth_exceeds, json_depth_exceeds
    from lssm_jobs.serialization import JsonSerializer

    def tricky(depth: int) -> Any:
        value: Any = {"leaf": "x"}
        for _ in range(depth):
            value = {"k": value, "s": "}{][", "e": 'a\\n"q"\\\\', "é[": "ü]"}
        return value

    payloads = [
        _nested(64),
        _nested(65),
        {"rows": [[i, i] for i in range(300)]},
        {"s": "[" * 300, "l": [[1]] * 70},
        ["]", _nested(70), "["] * 3,  # string brackets that would balance each other out
        ['\\"]', _nested(66), '\\\\"['],
        ['\n"[', _nested(65), "]\\"] * 2,
        tricky(20),
        tricky(40),
        [{"x": [[]]}] * 100,
    ]
    encode = JsonSerializer().encode_value
    for payload in payloads:
        text = encode(payload)
        for limit in range(1, 80):
            expected = _depth(payload) > limit
            assert depth_exceeds(payload, limit) is expected, (limit, text[:60])
            assert json_depth_exceeds(text, payload, limit) is expected, (limit, text[:60])
