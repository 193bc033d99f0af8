"""``purge_queue`` on Redis: delete a queue's pending and scheduled jobs in bounded steps.

Its own script (``lua/purge_queue.lua``), always run as ``EVALSHA`` (never part of the function library:
an administrative operation, rare, so it keeps the library and its name unchanged).
"""

from __future__ import annotations

from typing import Any

from lssm_jobs_redis.scripts import LuaScript, evalsha

#: Ready or delayed entries taken per script call.
PURGE_STEP = 1000

_script: LuaScript | None = None


def purge_queue_script() -> LuaScript:
    global _script
    if _script is None:
        _script = LuaScript.load("purge_queue")
    return _script


async def purge_step(client: Any, queues_key: str, base: str, queue: str) -> tuple[int, int]:
    """One step of purging ``queue``: up to :data:`PURGE_STEP` ready or delayed entries taken.

    :returns: how many entries were taken, and how many jobs were deleted; fewer than ``PURGE_STEP`` taken
        means the queue has no waiting jobs left.
    """
    taken, removed = await evalsha(client, purge_queue_script(), queues_key, [base, queue, PURGE_STEP])
    return int(taken), int(removed)
