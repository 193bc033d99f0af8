"""Direct access to each backend's storage for the fuzz tests: isolated spaces (a fresh memory store, sqlite
file or Redis prefix per example), queues on them, and writers that put records straight into the storage,
bypassing the queue, the way a bug, an operator's shell or an attacker would.

Every space knows how to write a job whose stored body is anything (``put_body``), to overwrite the body of
a stored job (``overwrite_body``), and whether a job id is still referenced by anything that would deliver
it again (``referenced``). sqlite and Redis also write whole malformed records (``put_record``), drawn from
their own strategies (``SQLITE_ROWS``, ``REDIS_RECORDS``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import attrs
from hypothesis import strategies as st
from lssm_jobs.backends.base import new_outgoing_job
from lssm_jobs.backends.memory import MemoryStore
from lssm_jobs.queue import JobQueue, MemoryJobQueue, open_queue

#: The job type malformed records claim to be (workers have a typed handler for it).
TARGET_TYPE = "fuzz.target"


def new_id() -> str:
    return os.urandom(16).hex()


# -- bodies: anything a stored envelope could be turned into --------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_ENVELOPE_FIELDS = ("id", "type", "version", "payload", "queue", "priority", "options", "created_at", "run_at",
                    "dedupe_key", "meta", "format")


#: The creation time of generated envelopes: fixed, so strategies draw the same way on every run.
CREATED = 1_700_000_000.25


def valid_envelope(job_id: str, now: float = CREATED, **changes: Any) -> dict[str, Any]:
    """A well-formed envelope of the target type, as plain data."""
    envelope: dict[str, Any] = {
        "id": job_id,
        "type": TARGET_TYPE,
        "version": 1,
        "payload": {"n": 1},
        "queue": "default",
        "priority": 0,
        "created_at": now,
        "run_at": now,
    }
    envelope.update(changes)
    return envelope


def _encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Bytes a stored body could hold: random, truncated, with a flipped byte, in another encoding, valid
    JSON that is no envelope, an envelope with a field of the wrong type or missing, an unknown envelope
    format or payload version, an unknown job type, a payload its type rejects, absurd nesting or numbers."""
    job_id = "e" * 32  # the envelope's own id; the storage files the record under another
    good = _encode(valid_envelope(job_id))
    kind = draw(
        st.sampled_from(
            [
                "random", "truncated", "flipped", "encoding", "json", "field", "missing", "format", "version",
                "type", "payload", "nesting", "number", "valid",
            ]
        )
    )
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(good) - 1))
        return good[:at] + bytes([draw(st.integers(0, 255))]) + good[at + 1 :]
    if kind == "encoding":
        text = json.dumps(valid_envelope(job_id, payload={"n": 1, "name": "Zoë ☃"}))
        codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
        raw = text.encode(codec, errors="replace")
        return raw if codec not in ("latin-1", "cp1252") else raw.replace(b"\\u00eb", "ë".encode(codec))
    if kind == "json":
        return _encode(draw(_JSON))
    if kind == "field":
        name = draw(st.sampled_from(_ENVELOPE_FIELDS))
        return _encode(valid_envelope(job_id, **{name: draw(_JSON)}))
    if kind == "missing":
        envelope = valid_envelope(job_id)
        del envelope[draw(st.sampled_from(sorted(envelope)))]
        return _encode(envelope)
    if kind == "format":
        return _encode(valid_envelope(job_id, format=draw(st.integers(2, 2**70) | st.integers(-5, 0))))
    if kind == "version":
        return _encode(valid_envelope(job_id, version=draw(st.integers(2, 2**70) | st.integers(-(2**70), 0))))
    if kind == "type":
        return _encode(valid_envelope(job_id, type=draw(st.text(max_size=20))))
    if kind == "payload":
        return _encode(valid_envelope(job_id, payload=draw(_JSON)))
    if kind == "nesting":
        depth = draw(st.sampled_from([1_000, 100_000]))
        return b'{"id":"x","type":"fuzz.target","version":1,"payload":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "number":
        number = draw(st.sampled_from([b"1e999", b"-1e999", b"9" * 5000, b"1" + b"0" * 400, b"NaN", b"Infinity"]))
        field = draw(st.sampled_from([b"version", b"priority", b"created_at", b"run_at", b"format"]))
        return good[:-1] + b',"' + field + b'":' + number + b"}"
    return good


# -- spaces ---------------------------------------------------------------------------------------------


class Space(ABC):
    """One isolated piece of a backend's storage; every queue made here shares it."""

    name: str

    @abstractmethod
    def queue(self, **options: Any) -> JobQueue:
        """A new, unopened queue on this space."""

    @abstractmethod
    async def put_body(self, job_id: str, body: Any) -> None:
        """Store a job, ready now, whose routing data is sound and whose body is ``body`` (for sqlite and Redis
        ``body`` may be of any type the storage holds)."""

    @abstractmethod
    async def overwrite_body(self, job_id: str, body: bytes) -> None:
        """Replace a stored job's body."""

    @abstractmethod
    async def referenced(self, job_id: str) -> bool:
        """Whether something would still deliver the job (it is live in the storage)."""

    async def put_record(self, job_id: str, record: Any) -> None:
        """Write a whole malformed record (drawn from the backend's own strategy)."""
        raise NotImplementedError(f"{self.name} has no raw records")


class MemorySpace(Space):
    """In process there is no foreign writer; bodies are pushed as they are."""

    name = "memory"

    def __init__(self) -> None:
        self.store = MemoryStore()

    def queue(self, **options: Any) -> JobQueue:
        return MemoryJobQueue(store=self.store, **options)

    async def put_body(self, job_id: str, body: Any) -> None:
        async with self.queue(sinks=[]) as queue:
            now = time.time()
            await queue.backend.push([new_outgoing_job(job_id, TARGET_TYPE, "default", 0, now, now, None, body)])

    async def overwrite_body(self, job_id: str, body: bytes) -> None:
        self.store.jobs[job_id].body = body

    async def referenced(self, job_id: str) -> bool:
        job = self.store.jobs.get(job_id)
        return job is not None and job.status.value in ("scheduled", "pending", "active")


# sqlite: rows of lssm_jobs with any value in any column (sqlite keeps the type of what is written).
_SQL_VALUE = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
    | st.binary(max_size=30)
)


@attrs.frozen
class SqliteRow:
    values: dict[str, Any]


SQLITE_ROWS = st.builds(
    SqliteRow,
    st.fixed_dictionaries(
        {},
        optional={
            "type": _SQL_VALUE,
            "queue": _SQL_VALUE,
            "priority": _SQL_VALUE,
            "run_at": _SQL_VALUE,
            "created_at": _SQL_VALUE,
            "updated_at": _SQL_VALUE,
            "attempts": _SQL_VALUE,
            "dedupe_key": _SQL_VALUE,
            "last_error": _SQL_VALUE,
            "body": bodies() | _SQL_VALUE,
        },
    ),
)


class SqliteSpace(Space):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def queue(self, **options: Any) -> JobQueue:
        return open_queue("sqlite", path=str(self.path), **options)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    async def put_record(self, job_id: str, record: Any) -> None:
        assert isinstance(record, SqliteRow)
        now = time.time()
        values: dict[str, Any] = {
            "id": job_id,
            "type": TARGET_TYPE,
            "queue": "default",
            "status": "pending",
            "attempts": 0,
            "priority": 0,
            "run_at": now,
            "created_at": now,
            "updated_at": now,
            "body": _encode(valid_envelope(job_id, now)),
        }
        values.update(record.values)
        async with self.queue(sinks=[]):  # the schema exists once a queue opened the file
            pass
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        with self._connect() as connection:
            connection.execute(f"INSERT INTO lssm_jobs ({columns}) VALUES ({marks})", tuple(values.values()))

    async def put_body(self, job_id: str, body: Any) -> None:
        await self.put_record(job_id, SqliteRow({"body": body}))

    async def overwrite_body(self, job_id: str, body: bytes) -> None:
        with self._connect() as connection:
            connection.execute("UPDATE lssm_jobs SET body = ? WHERE id = ?", (body, job_id))

    async def referenced(self, job_id: str) -> bool:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT 1 FROM lssm_jobs WHERE id = ? AND status IN ('scheduled', 'pending', 'active')", (job_id,)
            ).fetchone()
        return row is not None


# Redis: a job is a hash j:<id> and a body b:<id>, referenced from its queue's line, ready, sched or active
# structures (see lssm_jobs_redis.keys). Any of them may be missing, of another type, or hold garbage.
_REDIS_VALUE = (
    st.binary(max_size=24)
    | st.integers().map(lambda n: str(n).encode())
    | st.floats().map(lambda f: repr(f).encode())
    | st.sampled_from([b"", b"pending", b"active", b"scheduled", b"-1", b"1e400", b"nan", b"0x10", b" 1"])
)
_KEY_KINDS = ("missing", "string", "list", "set", "zset", "hash")


@attrs.frozen
class RedisRecord:
    placement: str  # where the id is: line, ready, sched (due), active (lease expired), garbage (ready member)
    job_kind: str  # what j:<id> is: a hash with these fields, or a key of another kind, or missing
    job_fields: dict[str, bytes]
    body_kind: str  # what b:<id> is
    body: Any
    seq: int


REDIS_RECORDS = st.builds(
    RedisRecord,
    placement=st.sampled_from(["line", "ready", "sched", "active", "garbage"]),
    job_kind=st.sampled_from(["hash", "hash", "hash", *_KEY_KINDS]),
    job_fields=st.dictionaries(st.sampled_from(list("tqprcusaknde")), _REDIS_VALUE, max_size=5),
    body_kind=st.sampled_from(["string", "string", "string", *_KEY_KINDS]),
    body=bodies(),
    seq=st.integers(0, 2**53),
)


class RedisSpace(Space):
    name = "redis"

    def __init__(self, server: Any) -> None:
        from lssm_jobs_redis.keys import KeyLayout

        self.server = server
        self.prefix = f"fz{new_id()[:12]}:"
        self.keys = KeyLayout.for_prefix(self.prefix)

    def queue(self, **options: Any) -> JobQueue:
        return open_queue("redis", url=self.server.url, prefix=self.prefix, **options)

    def _write(self, client: Any, key: str, kind: str, value: Any) -> None:
        client.delete(key)
        item = value if isinstance(value, bytes) else str(value).encode()
        if kind == "string":
            client.set(key, item)
        elif kind == "list":
            client.rpush(key, item)
        elif kind == "set":
            client.sadd(key, item)
        elif kind == "zset":
            client.zadd(key, {item: 1})
        elif kind == "hash":
            client.hset(key, mapping=value if isinstance(value, dict) and value else {"x": item})

    async def put_record(self, job_id: str, record: Any) -> None:
        assert isinstance(record, RedisRecord)
        keys = self.keys
        now = time.time()
        fields: dict[str, Any] = {"t": TARGET_TYPE, "q": "default", "c": repr(now), "s": "pending"}
        if record.placement == "active":
            fields.update({"s": "active", "a": "1", "k": "1", "n": str(record.seq)})
        if record.placement in ("ready", "garbage"):
            fields["n"] = str(record.seq)
        if record.placement == "sched":
            fields["s"] = "scheduled"
        fields.update(record.job_fields)
        with self.server.client() as client:
            client.sadd(keys.queues, "default")
            if record.job_kind == "hash":
                self._write(client, keys.job(job_id), "hash", fields)
            elif record.job_kind != "missing":
                self._write(client, keys.job(job_id), record.job_kind, b"junk")
            if record.body_kind != "missing":
                self._write(client, keys.body(job_id), record.body_kind, record.body)
            now_ms = int(now * 1000)
            if record.placement == "line":
                client.rpush(keys.queue("default", "line"), job_id)
            elif record.placement == "ready":
                client.zadd(keys.queue("default", "ready"), {f"{record.seq:016x}{job_id}": 0})
            elif record.placement == "garbage":
                client.zadd(keys.queue("default", "ready"), {job_id[: record.seq % 20]: 0})
            elif record.placement == "sched":
                client.zadd(keys.queue("default", "sched"), {job_id: now_ms - 1000})
            else:
                client.zadd(keys.queue("default", "active"), {job_id: now_ms - 1000})

    async def put_body(self, job_id: str, body: Any) -> None:
        await self.put_record(job_id, RedisRecord("line", "hash", {}, "string", body, 0))

    async def overwrite_body(self, job_id: str, body: bytes) -> None:
        with self.server.client() as client:
            client.set(self.keys.body(job_id), body)

    async def referenced(self, job_id: str) -> bool:
        keys = self.keys
        with self.server.client() as client:
            if job_id.encode() in client.lrange(keys.queue("default", "line"), 0, -1):
                return True
            if any(member.endswith(job_id.encode()) for member in client.zrange(keys.queue("default", "ready"), 0, -1)):
                return True
            return any(
                client.zscore(keys.queue("default", kind), job_id) is not None for kind in ("sched", "active")
            )
