"""Where a queue prefix keeps its data in Redis.

Every key of one prefix carries the same Redis Cluster hash tag, so all of them live in one slot and every
Lua script touches a single slot: the backend works unchanged on a cluster. The Lua scripts build the same
names (see ``lua/prelude.lua``); :class:`KeyLayout` is the Python side of that one layout.

With ``prefix="jobs:"`` the keys are (``prefix="jobs"`` gives ``{jobs}j:<id>``, ``{jobs}queues``, ...: another
job system)::

    {jobs}:j:<id>             hash   one job: routing fields, status, attempts, lease token (small: a listpack)
    {jobs}:b:<id>             string the job's serialized envelope, verbatim
    {jobs}:q:<queue>:line     list   ids of ready priority-0 jobs, in the order they became ready (they
                                     draw their sequence number when they leave it)
    {jobs}:q:<queue>:ready    zset   other ready jobs (other priorities, jobs back in their old place);
                                     score -priority, member <16 hex digits of seq><id>
    {jobs}:q:<queue>:sched    zset   delayed jobs and retries; score due time (server ms)
    {jobs}:q:<queue>:active   zset   leased jobs; score lease expiry (server ms)
    {jobs}:q:<queue>:done     list   completed and cancelled jobs kept for their retention: "<ms> <id>", oldest first
    {jobs}:q:<queue>:idlers   zset   consumers blocked waiting for this queue; score: registered until (ms)
    {jobs}:idlers             zset   the same, for consumers of every queue
    {jobs}:h:<consumer>       list   jobs handed (already leased) to a blocked consumer; it BLPOPs here
    {jobs}:queues             set    queue names
    {jobs}:seq                string counter ordering ready jobs of equal priority (FIFO)
    {jobs}:dedupe             hash   dedupe key -> id of the live job holding it
    {jobs}:dead               zset   dead letters; score failed time
    {jobs}:deadcount          hash   queue -> number of dead letters
    {jobs}:cancelcount        hash   queue -> number of cancelled jobs kept in its done list
    {jobs}:workers            zset   live workers; score when the record expires (server ms)
    {jobs}:workerinfo         hash   worker id -> its record (JSON; see :mod:`lssm_jobs_redis.workers`)
    {jobs}:cron:...           scheduler store (see :mod:`lssm_jobs_redis.scheduler_store`)
    {jobs}:r:<id>, rn:<id>    result store: a job's result and its notification (see
                              :mod:`lssm_jobs_redis.result_store`)
    {jobs}:corrupt:...        values of another type found where the keys above belong, moved aside
"""

from __future__ import annotations

import attrs


def hash_tagged(prefix: str) -> str:
    """The key prefix for ``prefix``: used verbatim when it already holds a ``{hash tag}``, else the prefix
    itself with braces around all of it but one trailing ``:`` (the hash tag): ``"jobs:"`` -> ``"{jobs}:"``,
    ``"jobs"`` -> ``"{jobs}"``, ``"jobs::"`` -> ``"{jobs:}:"``.

    Different prefixes give different keys (``jobs`` and ``jobs:`` are two independent job systems): every
    key name the backend appends starts with a letter, never with ``:``.

    :raises ValueError: the prefix is empty, or its braces do not form a usable hash tag.
    """
    if not prefix:
        raise ValueError("the Redis key prefix must not be empty")
    start = prefix.find("{")
    if start >= 0:
        end = prefix.find("}", start + 1)
        if end <= start + 1:
            raise ValueError(
                f"prefix {prefix!r} has a '{{' without a non-empty '{{...}}' hash tag; use e.g. '{{jobs}}:'"
            )
        return prefix
    if "}" in prefix:
        raise ValueError(f"prefix {prefix!r} has a '}}' without a '{{'")
    tag, colon = (prefix[:-1], ":") if prefix.endswith(":") else (prefix, "")
    if not tag:
        raise ValueError(f"prefix {prefix!r} needs at least one character besides ':'")
    return "{" + tag + "}" + colon


@attrs.frozen(kw_only=True)
class KeyLayout:
    """The names of one prefix's keys (all in one cluster slot)."""

    base: str  # the hash-tagged prefix, e.g. "{jobs}:"

    @classmethod
    def for_prefix(cls, prefix: str) -> KeyLayout:
        return cls(base=hash_tagged(prefix))

    def job(self, job_id: str) -> str:
        return f"{self.base}j:{job_id}"

    def body(self, job_id: str) -> str:
        return f"{self.base}b:{job_id}"

    def handoff(self, consumer: str) -> str:
        return f"{self.base}h:{consumer}"

    def queue(self, queue: str, kind: str) -> str:
        """``kind`` is one of line, ready, sched, active, done, idlers."""
        return f"{self.base}q:{queue}:{kind}"

    @property
    def queues(self) -> str:
        return f"{self.base}queues"

    @property
    def seq(self) -> str:
        return f"{self.base}seq"

    @property
    def dedupe(self) -> str:
        return f"{self.base}dedupe"

    @property
    def dead(self) -> str:
        return f"{self.base}dead"

    @property
    def dead_counts(self) -> str:
        return f"{self.base}deadcount"

    @property
    def cancel_counts(self) -> str:
        return f"{self.base}cancelcount"

    @property
    def idlers(self) -> str:
        return f"{self.base}idlers"

    @property
    def pattern(self) -> str:
        """A SCAN/KEYS pattern matching every key of this prefix (tests, tooling)."""
        escaped = "".join("\\" + char if char in "*?[]\\" else char for char in self.base)
        # our key names start with a letter: "{jobs}[^:]*" leaves out the keys of prefix "jobs:"
        return escaped + ("*" if self.base.endswith(":") else "[^:]*")
