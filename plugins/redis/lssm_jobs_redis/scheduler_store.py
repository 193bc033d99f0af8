"""A scheduler store in Redis: schedule rows and tick claims next to the jobs, in the same hash-tagged slot.

``JobScheduler(queue)`` on a Redis queue picks it by default (registered for backend ``"redis"``), sharing
the queue's Redis; several scheduler processes on one prefix then fire each tick once between them. Every
operation is one Lua script, so claims, renewals and take-overs are atomic on the server. Keys, under the
prefix's hash tag: ``cron:names``, ``cron:s:<schedule>``, ``cron:c:<schedule>``, ``cron:open``,
``cron:done`` (see ``lua/scheduler.lua``).
"""

from __future__ import annotations

from typing import Any

from lssm_jobs.scheduler.stores import SchedulerStore, ScheduleState, TickClaim

from lssm_jobs_redis.backend import RedisBackend, log_notes
from lssm_jobs_redis.connection import RedisClient
from lssm_jobs_redis.keys import KeyLayout
from lssm_jobs_redis.script_store import ScriptStore
from lssm_jobs_redis.scripts import scripts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _number(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    return float(text) if text else None


def _state(row: Any) -> ScheduleState | None:
    if not row:
        return None
    name, last, next_tick, paused, updated = row[:5]
    log_notes(row[5:])
    return ScheduleState(
        name=_text(name),
        last_tick=_number(last),
        next_tick=_number(next_tick),
        paused=_text(paused) == "1",
        updated_at=float(_text(updated)),
    )


def _claim(row: Any) -> TickClaim:
    name, tick, owner, claimed_at, completed_at, attempts = row
    return TickClaim(
        schedule=_text(name),
        tick=float(_text(tick)),
        claimed_by=_text(owner),
        claimed_at=float(_text(claimed_at)),
        completed_at=_number(completed_at),
        attempts=int(attempts),
    )


class RedisSchedulerStore(ScriptStore, SchedulerStore):
    """Scheduler state in Redis.

    :param url: Redis URL (the store creates and closes its own client).
    :param redis: a client you own (never closed by the store).
    :param backend: a :class:`RedisBackend` whose Redis and prefix to share (its caller-owned client, or a
        client of the store's own to the same URL).
    :param prefix: key prefix (default: the backend's, else ``"jobs:"``).
    """

    name = "redis"

    def __init__(
        self,
        *,
        url: str | None = None,
        redis: RedisClient | None = None,
        backend: RedisBackend | None = None,
        prefix: str | None = None,
    ) -> None:
        if sum(option is not None for option in (url, redis, backend)) > 1:
            raise ValueError("pass one of url=, redis= or backend=")
        connection: dict[str, Any] = {"url": url, "redis": redis}
        if backend is not None:
            connection = ScriptStore.shared_with(backend)
            prefix = prefix if prefix is not None else backend.prefix
        elif url is None and redis is None:
            connection["url"] = "redis://127.0.0.1:6379/0"
        ScriptStore.__init__(
            self, **connection, what="the Redis scheduler store", client_name="lssm-jobs-scheduler"
        )
        self.keys = KeyLayout.for_prefix(prefix if prefix is not None else "jobs:")
        self._script = scripts().scheduler

    @classmethod
    def create(cls, backend: Any = None, **options: Any) -> RedisSchedulerStore:
        """The SchedulerStoreSpec factory: shares a Redis queue backend's Redis when given one."""
        if isinstance(backend, RedisBackend) and not {"url", "redis"} & set(options):
            return cls(backend=backend, **options)
        return cls(**options)

    async def _run(self, op: str, *args: Any) -> Any:
        return await self._run_script(self._script, self.keys.queues, [self.keys.base, op, *args])

    async def ensure(self, name: str, *, now: float) -> ScheduleState:
        state = _state(await self._run("ensure", name, _time(now)))
        assert state is not None
        return state

    async def get(self, name: str) -> ScheduleState | None:
        return _state(await self._run("get", name))

    async def states(self) -> list[ScheduleState]:
        return [state for row in await self._run("states") if (state := _state(row)) is not None]

    async def claim(self, name: str, tick: float, *, owner: str, now: float, next_tick: float | None) -> bool:
        return bool(await self._run("claim", name, _time(tick), owner, _time(now), _time(next_tick)))

    async def renew(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        return bool(await self._run("renew", name, _time(tick), owner, _time(now)))

    async def complete(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        return bool(await self._run("complete", name, _time(tick), owner, _time(now)))

    async def unfinished_claims(self, *, limit: int = 100) -> list[TickClaim]:
        return [_claim(row) for row in await self._run("unfinished", max(limit, 0))] if limit > 0 else []

    async def take_over(self, name: str, tick: float, *, owner: str, now: float, stale_before: float) -> bool:
        return bool(await self._run("take_over", name, _time(tick), owner, _time(now), _time(stale_before)))

    async def advance(self, name: str, tick: float, *, now: float, next_tick: float | None) -> None:
        await self._run("advance", name, _time(tick), _time(now), _time(next_tick))

    async def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleState | None:
        return _state(await self._run("set_paused", name, "1" if paused else "0", _time(now)))

    async def delete(self, name: str) -> bool:
        return bool(await self._run("delete", name))

    async def claims(self, name: str, *, limit: int = 100) -> list[TickClaim]:
        return [_claim(row) for row in await self._run("claims", name, max(limit, 0))] if limit > 0 else []

    async def prune_claims(self, *, before: float) -> int:
        return int(await self._run("prune", _time(before)))
