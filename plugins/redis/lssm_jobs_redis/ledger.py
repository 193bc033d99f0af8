"""A job ledger in Redis (see :mod:`lssm_jobs.ledger`): job records and dead letters for backends whose
service keeps no history (Cloud Tasks, Pub/Sub), shared by every worker and producer that reaches the Redis.

Every operation is one Lua script, so dedupe checks and claims are atomic on the server. All keys carry the
prefix's Redis Cluster hash tag (one slot). With ``prefix="ledger:"``::

    {ledger}:j:<id>         hash  one job: routing fields, status, attempts, generation, lease, body
    {ledger}:dedupe         hash  dedupe key -> id of the live job holding it
    {ledger}:queues         set   queue names
    {ledger}:w:<queue>      zset  waiting jobs (scheduled and pending); score run_at
    {ledger}:a:<queue>      zset  active jobs; score lease expiry
    {ledger}:c:<queue>      zset  completed jobs kept for their retention; score finished time
    {ledger}:d:<queue>      zset  dead letters of the queue; score failed time
    {ledger}:dead           zset  every dead letter; score failed time (listing, most recent first)
    {ledger}:done           zset  every completed job; score finished time (pruning)

Times are epoch seconds from the calling process's clock, like the other ledgers' leases.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

from lssm_jobs.backends.base import DeadLetter, JobRecord, OutgoingJob, PushResult
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.ledger.base import Claim, ClaimOutcome, JobLedger
from lssm_jobs.registrations import JobLedgerSpec

from lssm_jobs_redis.connection import RedisClient
from lssm_jobs_redis.keys import hash_tagged
from lssm_jobs_redis.script_store import ScriptStore
from lssm_jobs_redis.scripts import LuaScript

_LUA = r"""
local base, op = ARGV[1], ARGV[2]
local DEDUPE, QUEUES, DEAD, DONE = base .. 'dedupe', base .. 'queues', base .. 'dead', base .. 'done'
local function jkey(id) return base .. 'j:' .. id end
local function qkey(kind, queue) return base .. kind .. ':' .. queue end
local function num(value) return tonumber(value) or 0 end

local function free_key(id, key)
  if key and key ~= '' and redis.call('HGET', DEDUPE, key) == id then redis.call('HDEL', DEDUPE, key) end
end

local function forget(id)
  local queue, key = unpack(redis.call('HMGET', jkey(id), 'queue', 'dedupe_key'))
  if queue then
    for _, kind in ipairs({'w', 'a', 'c', 'd'}) do redis.call('ZREM', qkey(kind, queue), id) end
  end
  redis.call('ZREM', DEAD, id)
  redis.call('ZREM', DONE, id)
  free_key(id, key)
  redis.call('DEL', jkey(id))
end

local function prune(now, retention)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', DONE, '-inf', now - retention, 'LIMIT', 0, 100)) do
    forget(id)
  end
end

-- the job's status, or false when unknown or completed past its retention
local function status_of(id, now, retention)
  local status, finished = unpack(redis.call('HMGET', jkey(id), 'status', 'finished_at'))
  if not status then return false end
  if status == 'completed' and num(finished) <= now - retention then
    forget(id)
    return false
  end
  return status
end

local function held(id, token)
  local status, current = unpack(redis.call('HMGET', jkey(id), 'status', 'token'))
  return status == 'active' and current == token
end

local function waiting(run_at, now) if run_at > now then return 'scheduled' end return 'pending' end

if op == 'record' then
  local now, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
  prune(now, retention)
  local results = {}
  local i = 5
  while i <= #ARGV do
    local id, jtype, queue, priority, run_at, created_at, has_key, key, body =
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    i = i + 9
    local holder = false
    if has_key == '1' then holder = redis.call('HGET', DEDUPE, key) end
    if status_of(id, now, retention) then
      table.insert(results, {id, 0})
    elseif holder then
      table.insert(results, {holder, 0})
    else
      local fields = {'type', jtype, 'queue', queue, 'status', waiting(tonumber(run_at), now), 'attempts', 0,
        'priority', priority, 'run_at', run_at, 'created_at', created_at, 'updated_at', ARGV[3],
        'generation', 1, 'issued', 1, 'body', body}
      if has_key == '1' then
        table.insert(fields, 'dedupe_key'); table.insert(fields, key)
        redis.call('HSET', DEDUPE, key, id)
      end
      redis.call('HSET', jkey(id), unpack(fields))
      redis.call('ZADD', qkey('w', queue), run_at, id)
      redis.call('SADD', QUEUES, queue)
      table.insert(results, {id, 1})
    end
  end
  return results
end

if op == 'discard' then
  local count = 0
  for i = 3, #ARGV do
    local id = ARGV[i]
    local status, attempts, generation = unpack(redis.call('HMGET', jkey(id), 'status', 'attempts', 'generation'))
    if (status == 'scheduled' or status == 'pending') and num(attempts) == 0 and num(generation) == 1 then
      forget(id)
      count = count + 1
    end
  end
  return count
end

if op == 'begin' then
  local id, generation, lease_ms, tolerance = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local now, retention, token = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
  local status = status_of(id, now, retention)
  if not status then return {'unknown'} end
  local current, lease_until, run_at, queue, attempts, issued, body = unpack(redis.call('HMGET', jkey(id),
    'generation', 'lease_until', 'run_at', 'queue', 'attempts', 'issued', 'body'))
  current = num(current)
  local head = {current, run_at, queue}
  local function answer(outcome) return {outcome, head[1], head[2], head[3]} end
  if generation > current then return answer('early') end
  if status == 'completed' or status == 'dead' then return answer('finished') end
  if generation < current then return answer('superseded') end
  if status == 'active' and num(lease_until) > now then return answer('busy') end
  if status == 'scheduled' and num(run_at) > now + tolerance then return answer('not_due') end
  local expiry = now + lease_ms / 1000
  redis.call('HSET', jkey(id), 'status', 'active', 'attempts', num(attempts) + 1, 'token', token,
    'lease_until', tostring(expiry), 'issued', num(issued) + 1, 'updated_at', ARGV[7])
  redis.call('ZREM', qkey('w', queue), id)
  redis.call('ZADD', qkey('a', queue), expiry, id)
  return {'run', current, run_at, queue, num(attempts) + 1, num(issued) + 1, body}
end

if op == 'extend' then
  local id, token, expiry = ARGV[3], ARGV[4], ARGV[5]
  if not held(id, token) then return 0 end
  redis.call('HSET', jkey(id), 'lease_until', expiry)
  redis.call('ZADD', qkey('a', redis.call('HGET', jkey(id), 'queue')), expiry, id)
  return 1
end

if op == 'complete' then
  local id, token, now, retention = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  if not held(id, token) then return 0 end
  if retention <= 0 then forget(id) return 1 end
  local queue, key = unpack(redis.call('HMGET', jkey(id), 'queue', 'dedupe_key'))
  redis.call('HSET', jkey(id), 'status', 'completed', 'finished_at', ARGV[5], 'updated_at', ARGV[5])
  redis.call('HDEL', jkey(id), 'token', 'lease_until')
  redis.call('ZREM', qkey('a', queue), id)
  redis.call('ZADD', qkey('c', queue), now, id)
  redis.call('ZADD', DONE, now, id)
  free_key(id, key)
  prune(now, retention)
  return 1
end

if op == 'reschedule' then
  local id, token, run_at, err, generation, now = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
    tonumber(ARGV[8])
  if not held(id, token) then return 0 end
  local queue, issued = unpack(redis.call('HMGET', jkey(id), 'queue', 'issued'))
  redis.call('HSET', jkey(id), 'status', waiting(run_at, now), 'run_at', ARGV[5], 'last_error', err,
    'updated_at', ARGV[8])
  if generation ~= '' then
    redis.call('HSET', jkey(id), 'generation', generation, 'issued', math.max(num(issued), tonumber(generation)))
  end
  redis.call('HDEL', jkey(id), 'token', 'lease_until')
  redis.call('ZREM', qkey('a', queue), id)
  redis.call('ZADD', qkey('w', queue), run_at, id)
  return 1
end

if op == 'release' then
  local id, token = ARGV[3], ARGV[4]
  if not held(id, token) then return 0 end
  local queue, attempts, run_at = unpack(redis.call('HMGET', jkey(id), 'queue', 'attempts', 'run_at'))
  redis.call('HSET', jkey(id), 'status', 'pending', 'attempts', math.max(num(attempts) - 1, 0),
    'updated_at', ARGV[5])
  redis.call('HDEL', jkey(id), 'token', 'lease_until')
  redis.call('ZREM', qkey('a', queue), id)
  redis.call('ZADD', qkey('w', queue), run_at, id)
  return 1
end

if op == 'dead_letter' then
  local id, token, now = ARGV[3], ARGV[4], tonumber(ARGV[5])
  if not held(id, token) then return 0 end
  local queue, key = unpack(redis.call('HMGET', jkey(id), 'queue', 'dedupe_key'))
  redis.call('HSET', jkey(id), 'status', 'dead', 'finished_at', ARGV[5], 'updated_at', ARGV[5],
    'reason', ARGV[6], 'last_error', ARGV[7], 'traceback', ARGV[8])
  if ARGV[9] == '0' then redis.call('HDEL', jkey(id), 'last_error') end
  if ARGV[10] == '0' then redis.call('HDEL', jkey(id), 'traceback') end
  redis.call('HDEL', jkey(id), 'token', 'lease_until')
  redis.call('ZREM', qkey('a', queue), id)
  redis.call('ZADD', qkey('d', queue), now, id)
  redis.call('ZADD', DEAD, now, id)
  free_key(id, key)
  return 1
end

local FIELDS = {'type', 'queue', 'status', 'attempts', 'priority', 'run_at', 'created_at', 'updated_at',
  'dedupe_key', 'last_error', 'body', 'finished_at', 'reason', 'traceback'}

if op == 'get' then
  local id, now, retention = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  if not status_of(id, now, retention) then return false end
  return redis.call('HMGET', jkey(id), unpack(FIELDS))
end

if op == 'counts' then
  local now, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
  local out = {}
  for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
    table.insert(out, {queue,
      redis.call('ZCOUNT', qkey('w', queue), '(' .. ARGV[3], '+inf'),
      redis.call('ZCOUNT', qkey('w', queue), '-inf', ARGV[3]),
      redis.call('ZCARD', qkey('a', queue)),
      redis.call('ZCOUNT', qkey('c', queue), '(' .. tostring(now - retention), '+inf'),
      redis.call('ZCARD', qkey('d', queue))})
  end
  return out
end

if op == 'list_dead' then
  local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
  local out = {}
  for _, id in ipairs(redis.call('ZREVRANGE', DEAD, offset, offset + limit - 1)) do
    table.insert(out, {id, redis.call('HMGET', jkey(id), unpack(FIELDS))})
  end
  return out
end

if op == 'get_dead' then
  local id = ARGV[3]
  if redis.call('HGET', jkey(id), 'status') ~= 'dead' then return false end
  return redis.call('HMGET', jkey(id), unpack(FIELDS))
end

if op == 'reserve' then
  if redis.call('EXISTS', jkey(ARGV[3])) == 0 then return false end
  return redis.call('HINCRBY', jkey(ARGV[3]), 'issued', 1)
end

if op == 'replay' then
  local id, run_at, generation, now = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local status, queue, key, issued = unpack(redis.call('HMGET', jkey(id), 'status', 'queue', 'dedupe_key', 'issued'))
  if status ~= 'dead' then return {'missing'} end
  if key then
    local holder = redis.call('HGET', DEDUPE, key)
    if holder and holder ~= id then return {'conflict', holder, key} end
    redis.call('HSET', DEDUPE, key, id)
  end
  redis.call('HSET', jkey(id), 'status', waiting(run_at, now), 'run_at', ARGV[4], 'attempts', 0,
    'updated_at', ARGV[6], 'generation', generation, 'issued', math.max(num(issued), generation))
  redis.call('HDEL', jkey(id), 'finished_at', 'reason', 'traceback')
  redis.call('ZREM', qkey('d', queue), id)
  redis.call('ZREM', DEAD, id)
  redis.call('ZADD', qkey('w', queue), run_at, id)
  return {'replayed'}
end

if op == 'purge' then
  local ids
  if ARGV[3] == 'all' then ids = redis.call('ZRANGE', DEAD, 0, 999) else ids = {unpack(ARGV, 4)} end
  local count = 0
  for _, id in ipairs(ids) do
    if redis.call('HGET', jkey(id), 'status') == 'dead' then
      forget(id)
      count = count + 1
    end
  end
  return count
end

return redis.error_reply('unknown ledger operation ' .. tostring(op))
"""

_SCRIPT = LuaScript(
    name="ledger",
    source=_LUA,
    sha=hashlib.sha1(_LUA.encode()).hexdigest(),
    function="",
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _float(value: Any) -> float:
    return float(_text(value)) if value is not None else 0.0


class RedisLedger(ScriptStore, JobLedger):
    """Job records and dead letters in Redis (any URL form the Redis backend takes; Cluster included).

    :param url: Redis URL (the ledger creates and closes its own client; default ``redis://127.0.0.1:6379/0``).
    :param redis: a client you own instead (never closed by the ledger); it must return bytes.
    :param prefix: key prefix, also the Redis Cluster hash tag (default ``"ledger:"``).
    :param completed_retention: seconds completed jobs stay readable (default 3600).
    """

    name = "redis"

    def __init__(
        self,
        *,
        url: str | None = None,
        redis: RedisClient | None = None,
        prefix: str = "ledger:",
        completed_retention: float = 3600.0,
    ) -> None:
        if url is not None and redis is not None:
            raise ValueError("pass url= or redis=, not both")
        if completed_retention < 0:
            raise ValueError(f"completed_retention must be >= 0, got {completed_retention!r}")
        if url is None and redis is None:
            url = "redis://127.0.0.1:6379/0"
        ScriptStore.__init__(self, url=url, redis=redis, what="the Redis ledger", client_name="lssm-jobs-ledger")
        self.base = hash_tagged(prefix)
        self.completed_retention = float(completed_retention)

    @classmethod
    def from_options(cls, **options: Any) -> RedisLedger:
        return cls(**options)

    async def _run(self, op: str, *args: Any) -> Any:
        return await self._run_script(_SCRIPT, self.base + "dedupe", [self.base, op, *args])

    def _clock(self) -> tuple[str, str]:
        return repr(time.time()), repr(self.completed_retention)

    # -- producing -------------------------------------------------------------------------------------------

    async def record(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        if not jobs:
            return []
        args: list[Any] = [*self._clock()]
        for job in jobs:
            args += [
                job.id,
                job.type,
                job.queue,
                job.priority,
                repr(job.run_at),
                repr(job.created_at),
                "0" if job.dedupe_key is None else "1",
                job.dedupe_key or "",
                job.body,
            ]
        rows = await self._run("record", *args)
        return [PushResult(id=_text(job_id), created=bool(int(created))) for job_id, created in rows]

    async def discard(self, job_ids: Sequence[str]) -> int:
        return int(await self._run("discard", *job_ids)) if job_ids else 0

    # -- delivering ------------------------------------------------------------------------------------------

    async def begin(self, job_id: str, *, generation: int, lease_ms: int, tolerance: float = 1.0) -> Claim:
        now, retention = self._clock()
        token = secrets.token_hex(16)
        row = await self._run("begin", job_id, generation, lease_ms, repr(tolerance), now, retention, token)
        outcome = ClaimOutcome(_text(row[0]))
        if outcome is ClaimOutcome.UNKNOWN:
            return Claim(outcome=outcome, job_id=job_id)
        common: dict[str, Any] = {
            "job_id": job_id,
            "generation": int(row[1]),
            "run_at": _float(row[2]),
            "queue": _text(row[3]),
        }
        if outcome is not ClaimOutcome.RUN:
            return Claim(outcome=outcome, **common)
        return Claim(
            outcome=outcome,
            attempt=int(row[4]),
            token=token,
            next_generation=int(row[5]),
            body=bytes(row[6]),
            **common,
        )

    async def extend(self, job_id: str, token: str, *, lease_ms: int) -> bool:
        return bool(await self._run("extend", job_id, token, repr(time.time() + lease_ms / 1000)))

    async def complete(self, job_id: str, token: str) -> bool:
        return bool(await self._run("complete", job_id, token, *self._clock()))

    async def reschedule(
        self, job_id: str, token: str, *, run_at: float, error: str, generation: int | None
    ) -> bool:
        return bool(
            await self._run(
                "reschedule",
                job_id,
                token,
                repr(run_at),
                error,
                "" if generation is None else generation,
                repr(time.time()),
            )
        )

    async def release(self, job_id: str, token: str) -> bool:
        return bool(await self._run("release", job_id, token, repr(time.time())))

    async def dead_letter(
        self, job_id: str, token: str, *, reason: str, error: str | None, traceback: str | None
    ) -> bool:
        return bool(
            await self._run(
                "dead_letter",
                job_id,
                token,
                repr(time.time()),
                reason,
                error or "",
                traceback or "",
                "0" if error is None else "1",
                "0" if traceback is None else "1",
            )
        )

    # -- inspecting ------------------------------------------------------------------------------------------

    @staticmethod
    def _record(job_id: str, row: Sequence[Any], now: float) -> JobRecord:
        (job_type, queue, status, attempts, priority, run_at, created_at, updated_at, key, error, body) = row[
            :11
        ]
        state = _text(status)
        if state in ("scheduled", "pending"):
            state = "scheduled" if _float(run_at) > now else "pending"
        return JobRecord(
            id=job_id,
            type=_text(job_type),
            queue=_text(queue),
            status=JobStatus(state),
            attempts=int(attempts or 0),
            priority=int(priority or 0),
            run_at=_float(run_at),
            created_at=_float(created_at),
            updated_at=_float(updated_at),
            dedupe_key=_optional(key),
            last_error=_optional(error),
            body=bytes(body or b""),
        )

    @staticmethod
    def _letter(job_id: str, row: Sequence[Any]) -> DeadLetter:
        return DeadLetter(
            id=job_id,
            type=_text(row[0]),
            queue=_text(row[1]),
            reason=_optional(row[12]) or "",
            error=_optional(row[9]),
            traceback=_optional(row[13]),
            attempts=int(row[3] or 0),
            failed_at=_float(row[11]),
            body=bytes(row[10] or b""),
        )

    async def get(self, job_id: str) -> JobRecord | None:
        now = time.time()
        row = await self._run("get", job_id, repr(now), repr(self.completed_retention))
        return self._record(job_id, row, now) if row else None

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        rows = await self._run("counts", *self._clock())
        counts: dict[str, dict[JobStatus, int]] = {}
        statuses = (
            JobStatus.SCHEDULED,
            JobStatus.PENDING,
            JobStatus.ACTIVE,
            JobStatus.COMPLETED,
            JobStatus.DEAD,
        )
        for queue, *numbers in rows:
            per_queue = {status: int(n) for status, n in zip(statuses, numbers, strict=True) if int(n)}
            if per_queue:
                counts[_text(queue)] = per_queue
        return counts

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        rows = await self._run("list_dead", max(offset, 0), limit)
        return [self._letter(_text(job_id), row) for job_id, row in rows]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        row = await self._run("get_dead", job_id)
        return self._letter(job_id, row) if row else None

    # -- dead letters ------------------------------------------------------------------------------------------

    async def reserve_generation(self, job_id: str) -> int | None:
        issued = await self._run("reserve", job_id)
        return None if issued is None else int(issued)

    async def replay_dead(self, job_id: str, *, run_at: float, generation: int) -> bool:
        row = await self._run("replay", job_id, repr(run_at), generation, repr(time.time()))
        outcome = _text(row[0])
        if outcome == "conflict":
            raise DedupeConflictError(job_id, _text(row[2]), _text(row[1]))
        return outcome == "replayed"

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        if job_ids is not None:
            return int(await self._run("purge", "ids", *job_ids)) if job_ids else 0
        purged = 0
        while True:
            batch = int(await self._run("purge", "all"))
            purged += batch
            if batch == 0:
                return purged


def ledger_specs() -> list[JobLedgerSpec]:
    """The registration of this ledger (hook ``lssm_jobs_job_ledgers`` of the ``redis`` plugin)."""
    return [
        JobLedgerSpec(
            name="redis",
            factory=RedisLedger.from_options,
            description="job records and dead letters in Redis (Lua-atomic claims and dedupe; Cluster-ready)",
            options_help={
                "url": "Redis URL, any form the redis backend takes (default redis://127.0.0.1:6379/0)",
                "prefix": "key prefix, also the Redis Cluster hash tag (default 'ledger:')",
                "completed_retention": "seconds completed jobs stay readable (default 3600)",
            },
        )
    ]
