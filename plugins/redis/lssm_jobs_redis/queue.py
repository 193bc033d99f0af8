"""``RedisJobQueue``: a :class:`~lssm_jobs.queue.JobQueue` on a Redis client you already have."""

from __future__ import annotations

from typing import Any

from lssm_jobs.queue import QUEUE_OPTIONS, JobQueue

from lssm_jobs_redis.backend import RedisBackend
from lssm_jobs_redis.connection import RedisClient


class RedisJobQueue(JobQueue):
    """A job queue whose backend is a :class:`RedisBackend` over ``redis``.

    ::

        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)      # decode_responses must be False
        queue = RedisJobQueue(redis=client, prefix="jobs:")
        ...
        await queue.close()     # closes the backend's subscription, NOT the client
        await client.aclose()   # the client is yours to close

    The caller owns ``redis``: the queue never closes it, so one client can serve the application and the
    queue. Use ``open_queue("redis", url=...)`` instead to let the queue create and close its own client.

    :param redis: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` client.
    :param prefix: key prefix and Redis Cluster hash tag (``"jobs:"`` -> keys ``{jobs}:...``).
    :param options: queue options (``concurrency``, ``serializer``, ``sinks``, ...; see ``JobQueue``) and
        backend tuning (``completed_retention``, ``reconnect_timeout``, ...; see ``RedisOptions``).
    """

    def __init__(self, *, redis: RedisClient, prefix: str = "jobs:", **options: Any) -> None:
        queue_options = {key: value for key, value in options.items() if key in QUEUE_OPTIONS}
        tuning = {key: value for key, value in options.items() if key not in QUEUE_OPTIONS}
        super().__init__(RedisBackend(redis=redis, prefix=prefix, **tuning), **queue_options)
