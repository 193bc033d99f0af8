"""Live workers on Redis (``lssm-jobs workers``): the records workers keep while they run.

Its own script (``lua/workers.lua``), always run as ``EVALSHA`` like ``purge_queue``: a few calls per
worker every heartbeat, not the hot path, so the function library and its name stay unchanged. Both keys
(``{prefix}workers``, ``{prefix}workerinfo``) carry the prefix's hash tag: one cluster slot, as every key.
"""

from __future__ import annotations

from typing import Any

from lssm_jobs_redis.scripts import LuaScript, evalsha

_script: LuaScript | None = None


def workers_script() -> LuaScript:
    global _script
    if _script is None:
        _script = LuaScript.load("workers")
    return _script


async def workers_call(client: Any, queues_key: str, base: str, operation: str, *args: Any) -> Any:
    """One call of the workers script: ``register``, ``heartbeat``, ``unregister`` or ``list``."""
    return await evalsha(client, workers_script(), queues_key, [base, operation, *args])
