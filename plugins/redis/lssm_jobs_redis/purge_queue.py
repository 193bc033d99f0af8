"""``purge_queue`` on Redis: delete a queue's pending and scheduled jobs in bounded steps.

Its own script (``lua/purge_queue.lua``), always run as ``EVALSHA`` (never part of the function library:
an administrative operation, rare, so it keeps the library and its name unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lssm_jobs_redis.scripts import LuaScript, evalsha

if TYPE_CHECKING:
    from lssm_jobs_redis.backend import RedisBackend

#: Ready or delayed entries taken per script call.
PURGE_STEP = 1000

_script: LuaScript | None = None


def purge_queue_script() -> LuaScript:
    global _script
    if _script is None:
        _script = LuaScript.load("purge_queue")
    return _script


async def purge_queue(backend: RedisBackend, queue: str) -> int:
    """Delete every pending and scheduled job of ``queue``. :returns: how many were deleted."""
    script = purge_queue_script()
    deleted = 0
    while True:
        args = [backend.keys.base, queue, PURGE_STEP]
        taken, removed = await backend._call(
            "purge queue",
            lambda args=args: evalsha(backend.client, script, backend.keys.queues, args),  # type: ignore[misc]
        )
        deleted += int(removed)
        if int(taken) < PURGE_STEP:
            return deleted
