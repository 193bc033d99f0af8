"""Multi-process workers: the supervisor (``lssm-jobs worker --processes N``), the worker processes' end of
its channel (heartbeats, recycling), and process memory readings. See ``docs/operations.md``."""

from lssm_jobs.supervisor.memory import format_size, parse_size, rss_bytes
from lssm_jobs.supervisor.supervisor import Supervisor, cpu_count, describe_exit

__all__ = ["Supervisor", "cpu_count", "describe_exit", "format_size", "parse_size", "rss_bytes"]
