"""Redis backend for lssm-jobs: queues on Redis, Valkey, Redis Cluster and Sentinel-managed primaries.

Installing this distribution makes ``open_queue("redis", url=..., prefix=...)`` work; use
:class:`RedisJobQueue` to run a queue on a client you already have.
"""

from __future__ import annotations

from lssm_jobs_redis.backend import RedisBackend, RedisDelivery, RedisOptions
from lssm_jobs_redis.connection import client_from_url, redact_url
from lssm_jobs_redis.events import RedisEventSink
from lssm_jobs_redis.keys import KeyLayout, hash_tagged
from lssm_jobs_redis.queue import RedisJobQueue
from lssm_jobs_redis.result_store import RedisResultStore
from lssm_jobs_redis.scheduler_store import RedisSchedulerStore

__version__ = "0.1.0"

__all__ = [
    "KeyLayout",
    "RedisBackend",
    "RedisDelivery",
    "RedisEventSink",
    "RedisJobQueue",
    "RedisOptions",
    "RedisResultStore",
    "RedisSchedulerStore",
    "__version__",
    "client_from_url",
    "hash_tagged",
    "redact_url",
]
