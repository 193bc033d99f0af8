"""The Redis queue backend: a :class:`~lssm_jobs.backends.base.PullBackend` on redis-py's asyncio client.

Every state change is one Lua script (see ``lua/``), so it is atomic on the server: a lease pops ready jobs,
counts the attempt and sets the lease expiry in one step; settling checks the lease token first, so the
verdict of a worker that lost its lease is ignored. Expired leases are re-delivered and due delayed jobs
promoted by every lease call (any consumer of the queue does it, no separate process is needed).

Speed comes from doing per-job work once per batch: jobs are leased in batches, settled in batches
(coalesced across concurrently finishing jobs), bulk pushes are one script call per chunk, pipelined. An
idle consumer registers itself and blocks (BLPOP) on its own hand-off list; a producer whose job finds an
idle consumer leases the job to it inside the push script and hands it over in that list, so the job
arrives with the wake-up (one hop, no lease round trip) and nobody polls.

Failure behaviour: redis-py retries a command once a dropped connection is re-established; beyond that,
every operation waits up to ``reconnect_timeout`` for Redis to come back (restart, failover), with
exponential backoff, logging once when Redis goes away and once when it is back. Operations are safe to
repeat: a push of an id that exists stores nothing, a repeated settle is ignored by its token, and a lease
whose reply was lost only delays those jobs until their lease expires. Logs never show URLs with
credentials, payloads or bodies.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import attrs
from lssm_jobs.backends.base import (
    BackendCapabilities,
    CancelOutcome,
    ConsumeOptions,
    DeadLetter,
    Delivery,
    Dispatch,
    JobRecord,
    OutgoingJob,
    PullBackend,
    PushResult,
    WorkerInfo,
    WorkerRegistry,
    new_push_result,
)
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import JobStatus
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from lssm_jobs_redis.batching import Coalescer
from lssm_jobs_redis.blocking import BlockingPusher
from lssm_jobs_redis.channel import RespChannel
from lssm_jobs_redis.connection import (
    TRANSIENT_ERRORS,
    RedisClient,
    client_from_url,
    redact_url,
    returns_text,
    torn_connection,
)
from lssm_jobs_redis.internals import AsyncConnector, InternalsChanged, socket_timeout
from lssm_jobs_redis.keys import KeyLayout
from lssm_jobs_redis.purge_queue import PURGE_STEP, purge_step
from lssm_jobs_redis.resp import command_prefix, delivery_arguments, push_command, settle_arguments
from lssm_jobs_redis.scripts import LuaScript, evalsha, function_missing, load_all, scripts
from lssm_jobs_redis.workers import workers_call

log = logging.getLogger("lssm_jobs.redis")

T = TypeVar("T")

DEFAULT_URL = "redis://127.0.0.1:6379/0"




def is_transient(error: BaseException) -> bool:
    """Whether an operation that failed with ``error`` is worth repeating once Redis is reachable again:
    one of :data:`TRANSIENT_ERRORS`, or a connection torn down under it (a Redis Cluster node restarting,
    see :func:`~lssm_jobs_redis.connection.torn_connection`)."""
    return isinstance(error, TRANSIENT_ERRORS) or torn_connection(error)


_STATUS = {
    b"scheduled": JobStatus.SCHEDULED,
    b"pending": JobStatus.PENDING,
    b"active": JobStatus.ACTIVE,
    b"completed": JobStatus.COMPLETED,
    b"dead": JobStatus.DEAD,
    b"cancelled": JobStatus.CANCELLED,
}
_JOB_FIELDS = ("t", "q", "p", "r", "c", "u", "s", "a", "d", "e", "g", "h")


@attrs.frozen(kw_only=True)
class RedisOptions:
    """Tuning of the Redis backend (``open_queue("redis", ...)`` keywords besides ``url`` and ``prefix``).

    :param completed_retention: seconds completed jobs stay readable with ``queue.get`` (0: deleted at
        once); the same option, in the same unit, as the memory and sqlite backends'. The old
        ``completed_ttl_ms`` keyword of :class:`RedisBackend` still works, with a ``DeprecationWarning``.
    :param completed_max: most completed jobs kept per queue (0: no count limit).
    :param push_chunk: jobs per script call of a bulk push (calls are pipelined); bounds how long one call
        holds Redis.
    :param maintenance_batch: most expired leases and due delayed jobs moved per queue and lease call.
    :param settle_batch: most settle operations in one script call.
    :param reconnect_timeout: seconds an operation waits for an unreachable Redis before raising
        ``ConnectionError`` (consumers keep waiting for as long as they run).
    :param pipelined: send script calls over one pipelined connection of our own (single-server and
        Sentinel clients; see :mod:`lssm_jobs_redis.channel`); False sends everything through redis-py.
    :param functions: load the code as a function library (Redis 7+/Valkey) when the server and user allow
        it; False (or Redis 6.2) uses ``EVALSHA`` scripts.
    :param reply_spin_us: microseconds a push from synchronous code (:mod:`lssm_jobs_redis.blocking`)
        polls for Redis' reply before the thread sleeps in the kernel until it comes: on many virtual
        machines waking a sleeping thread costs more than a local Redis takes to answer. 0 never polls;
        polling is also skipped for TLS connections and when the process may use only one CPU.
    """

    completed_retention: float = 3600.0
    completed_max: int = 100_000
    push_chunk: int = 500
    maintenance_batch: int = 200
    settle_batch: int = 1_000
    reconnect_timeout: float = 60.0
    pipelined: bool = True
    functions: bool = True
    reply_spin_us: int = 200

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(RedisOptions):
            if getattr(self, field.name) < 0:
                raise ValueError(f"{field.name} must be >= 0")
        if self.push_chunk < 1 or self.maintenance_batch < 1 or self.settle_batch < 1:
            raise ValueError("push_chunk, maintenance_batch and settle_batch must be >= 1")

    @property
    def completed_retention_ms(self) -> int:
        """``completed_retention`` in milliseconds, as the scripts take it."""
        return int(self.completed_retention * 1000)


OPTIONS_HELP = {
    "url": f"redis://, rediss://, unix://, redis+cluster://, redis+sentinel:// URL (default {DEFAULT_URL})",
    "prefix": "key prefix, also the Redis Cluster hash tag (default 'jobs:')",
    "cluster": "treat a redis:// URL as a node of a Redis Cluster",
    "completed_retention": "seconds completed jobs stay readable (default 3600; 0 deletes them at once)",
    "completed_max": "most completed jobs kept per queue (default 100000; 0: no limit)",
    "push_chunk": "jobs per script call of a bulk push (default 500)",
    "maintenance_batch": "most expired leases / due jobs moved per lease call (default 200)",
    "settle_batch": "most settle operations per script call (default 1000)",
    "reconnect_timeout": "seconds an operation waits for Redis to come back (default 60)",
    "pipelined": "script calls over one pipelined connection (default true; cluster clients never)",
    "functions": "use a Redis function library when the server has FUNCTION (default true), else scripts",
    "reply_spin_us": "µs a synchronous push polls for the reply before sleeping (default 200; 0: never)",
    "socket_timeout": "seconds a command may take before the connection counts as broken (default 10)",
    "max_connections": "connection pool size",
}


def _text(raw: bytes) -> str:
    """Text stored in Redis: a job id or queue name written by hand need not be UTF-8; its bytes are kept
    (surrogate escapes), so the same id reaches Redis again (see :func:`_raw`)."""
    return raw.decode(errors="surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode(errors="surrogateescape")


def _printable(raw: bytes) -> str:
    """Text from Redis fit for one log line: control characters escaped (stored values can hold anything,
    and a newline would forge a log line)."""
    text = raw.decode(errors="backslashreplace")
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def log_notes(notes: Sequence[Any]) -> None:
    """Log the warnings a script returned: records it could not read (moved to the dead letter queue or
    dropped) and keys of ours that held another type (moved aside)."""
    for note in notes:
        log.warning("Redis: %s", _printable(note if isinstance(note, bytes) else str(note).encode()))


#: Settle script results (see ``lua/settle.lua``).
APPLIED, NOT_APPLIED, SETTLED_ALREADY, UNREADABLE = 1, 0, 2, 3


class RedisDelivery(Delivery):
    """A leased job. Settling goes through the backend's coalescer: one script call for many jobs.

    A settle operation is ``(op, delivery, *arguments)``; over the pipelined channel it is sent as RESP
    prepared once per delivery (``wire``), since a busy worker settles tens of thousands of jobs a second.
    """

    __slots__ = ("_backend", "_token", "_wire", "attempt", "body", "id", "lease_ms", "queue")

    def __init__(
        self,
        backend: RedisBackend,
        job_id: str,
        queue: str,
        attempt: int,
        token: bytes,
        body: bytes,
        lease_ms: int,
    ) -> None:
        self._backend = backend
        self._token = token
        self._wire: bytes | None = None
        self.id = job_id
        self.queue = queue
        self.attempt = attempt
        self.body = body
        self.lease_ms = lease_ms

    def args(self, op: tuple[Any, ...]) -> list[Any]:
        """The settle script arguments of ``op``, for clients other than the channel."""
        extra = [*op[2:], "", "", ""][:3]
        return [op[0], _raw(self.id), self._token, _raw(self.queue), *extra]

    def wire(self, op: tuple[Any, ...]) -> bytes:
        """The settle script arguments of ``op`` as RESP bulk strings (see :mod:`.resp`)."""
        if self._wire is None:
            self._wire = delivery_arguments(self.id, self._token, self.queue)
        return settle_arguments(op[0], self._wire, op[2:])

    async def _apply(self, op: tuple[Any, ...]) -> int:
        result: int = await self._backend._settler.submit(op)
        if result == APPLIED:
            return result
        if result == UNREADABLE:
            log.warning(
                "%s of job %s not applied: its record in Redis could not be read; it was moved to the dead "
                "letter queue with the reason",
                op[0],
                _printable(_raw(self.id)),
            )
        elif result == SETTLED_ALREADY:
            log.debug("%s of job %s: this delivery settled it already", op[0], _printable(_raw(self.id)))
        elif op[0] != "extend":
            log.warning(
                "%s of job %s ignored: its lease expired and it was leased again, so it may run elsewhere "
                "(give jobs a longer lease_ms, or keep the event loop free for heartbeats)",
                op[0],
                _printable(_raw(self.id)),
            )
        return result

    async def ack(self) -> None:
        self.lease_ms = None
        await self._apply(("ack", self))

    async def retry(self, *, run_at: float, error: str) -> None:
        self.lease_ms = None
        await self._apply(("retry", self, repr(float(run_at)), error))

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        self.lease_ms = None
        await self._apply(("dead", self, reason, error or "", traceback or ""))

    async def release(self) -> None:
        self.lease_ms = None
        await self._apply(("release", self))

    async def cancel(self) -> None:
        self.lease_ms = None
        await self._apply(("cancel", self))

    async def extend(self, lease_ms: int) -> bool:
        """Push the lease expiry to ``lease_ms`` from now.

        :returns: True when the lease was extended. False when this delivery holds no lease any more: it
            expired and the job was leased again (it may run elsewhere), its record became unreadable (then
            it is in the dead letter queue), or this delivery settled the job already (the contract's rule;
            the heartbeat never extends a settled delivery, and a settle answered ``SETTLED_ALREADY`` is not
            logged as a lost lease).
        """
        if self.lease_ms is None:  # settled (or settling) already: there is no lease to extend
            return False
        self.lease_ms = lease_ms
        return await self._apply(("extend", self, int(lease_ms))) == APPLIED


class RedisBackend(PullBackend, WorkerRegistry):
    """Jobs in Redis (6.2+, Valkey, Redis Cluster, Sentinel-managed primaries).

    :param url: where Redis is (see :mod:`lssm_jobs_redis.connection` for the URL forms); the backend then
        creates, owns and closes its client.
    :param redis: a ``redis.asyncio.Redis`` or ``RedisCluster`` client you created (``decode_responses``
        must be False). The backend never closes it: the caller owns it.
    :param prefix: key prefix; all keys share its hash tag (``"jobs:"`` -> ``{jobs}:...``). Different
        prefixes are independent queues systems, and on a cluster may live on different shards.
    :param cluster: with a ``redis://`` URL, connect to it as a Redis Cluster node.
    :param socket_timeout: connection setting of a client created from ``url``, as in redis-py; so are
        the four below.
    :param socket_connect_timeout: see ``socket_timeout``.
    :param health_check_interval: see ``socket_timeout``.
    :param max_connections: see ``socket_timeout``.
    :param client_name: see ``socket_timeout``.
    :param tuning: see :class:`RedisOptions`.
    :raises ValueError: both ``url`` and ``redis`` given (with neither, the client is made from
        ``redis://127.0.0.1:6379/0``), or a bad option.
    """

    name: ClassVar[str] = "redis"
    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        delivery="pull",
        delay=True,
        priority=True,
        dedupe=True,
        leases=True,
        native_dlq=False,
        durable=True,
        shared=True,
        purge_queue=True,
        cancel=True,
        progress=True,
        worker_registry=True,
        results=True,
    )

    # Seconds past a BLPOP's own timeout after which its silent connection counts as broken.
    _block_grace = 10.0

    def __init__(
        self,
        *,
        url: str | None = None,
        redis: RedisClient | None = None,
        prefix: str = "jobs:",
        cluster: bool = False,
        socket_timeout: float | None = 10.0,
        socket_connect_timeout: float | None = 5.0,
        health_check_interval: float = 15.0,
        max_connections: int | None = None,
        client_name: str | None = "lssm-jobs",
        options: RedisOptions | None = None,
        **tuning: Any,
    ) -> None:
        if url is not None and redis is not None:
            raise ValueError("pass either url= or redis= (a client you own), not both")
        if options is not None and tuning:
            raise ValueError("pass tuning either as options= or as keywords, not both")
        if "completed_ttl_ms" in tuning:
            warnings.warn(
                "the Redis backend's completed_ttl_ms option is deprecated: use completed_retention, in "
                "seconds, as on every backend",
                DeprecationWarning,
                stacklevel=2,
            )
            tuning.setdefault("completed_retention", tuning.pop("completed_ttl_ms") / 1000)
        self.options = options if options is not None else RedisOptions(**tuning)
        self.keys = KeyLayout.for_prefix(prefix)
        self.prefix = prefix
        self._url = url if url is not None or redis is not None else DEFAULT_URL
        self._client_settings: dict[str, Any] = {
            "cluster": cluster,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "health_check_interval": health_check_interval,
            "max_connections": max_connections,
            "client_name": client_name,
        }
        self._client: RedisClient | None = redis
        self._owns_client = redis is None
        self._scripts = scripts()
        self._route = self.keys.queues  # routing key of every script call: the prefix's slot
        self.consumer_id = uuid.uuid4().hex[:16]
        self._handoff = self.keys.handoff(self.consumer_id)
        self._consumed = False
        self._blocker: RespChannel | None = None
        self._max_block = 5.0
        self._closed = False
        self._woken = 0
        self._outage_since: float | None = None
        self._settler: Coalescer[tuple[Any, ...], int] = Coalescer(
            self._settle_many, max_batch=self.options.settle_batch, inline=False
        )
        self._pusher: Coalescer[OutgoingJob, PushResult] = Coalescer(
            self._push_chunk, max_batch=self.options.push_chunk
        )
        self.push_batch = self.options.push_chunk
        self._queue_names: dict[bytes, str] = {}
        self._wire_heads: dict[tuple[str, str, int], bytes] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._channel: RespChannel | None = None
        self._blocking_pusher: BlockingPusher | None = None
        self._no_blocking_pusher = False
        self._push_invocation: tuple[bool, bytes] | None = None
        self._functions = False

    @classmethod
    def from_options(cls, **options: Any) -> RedisBackend:
        """The plugin factory: ``open_queue("redis", url=..., prefix=..., **tuning)``."""
        return cls(**options)

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def client(self) -> RedisClient:
        """The redis-py client (available after :meth:`open`, or at once when passed in)."""
        if self._client is None:
            raise RuntimeError("the Redis backend is not open")
        return self._client

    @property
    def url(self) -> str | None:
        """The Redis URL this backend connects to (``None``: it runs on a client the caller owns). Holds any
        credentials: never log it (see :attr:`location`)."""
        return self._url

    @property
    def cluster(self) -> bool:
        """Whether this backend connects to its URL as a Redis Cluster (``cluster=True``)."""
        return bool(self._client_settings.get("cluster"))

    @property
    def location(self) -> str:
        """Where this backend's Redis is, without credentials (for logs and status output)."""
        if self._url is not None:
            return redact_url(self._url)
        return f"caller-owned {type(self._client).__name__} client"

    async def open(self) -> None:
        """Connect (when created from a URL), check the server answers, and load the scripts.

        A full Redis (``maxmemory`` reached) is no reason to fail: workers must be able to start and finish
        jobs then (see :mod:`lssm_jobs_redis.scripts`).

        :raises ConnectionError: Redis cannot be reached, or it refused to load the code (the message says
            which, and names the host, never credentials).
        :raises ValueError: the client decodes responses to text (create it with ``decode_responses=False``).
        """
        if self._client is None:
            assert self._url is not None
            self._client = client_from_url(self._url, **self._client_settings)
        if returns_text(self._client):
            raise ValueError(
                "the Redis client must return bytes: create it with decode_responses=False (job bodies are "
                "binary for non-JSON serializers)"
            )
        try:
            await self._client.ping()
            self._functions = await load_all(self._client, functions=self.options.functions)
        except RedisError as error:
            if self._owns_client:
                await self._close_client()
            if isinstance(error, ResponseError) and not isinstance(error, TRANSIENT_ERRORS):
                raise builtins.ConnectionError(
                    f"Redis at {self.location} answered but refused to load lssm-jobs' code: {error}"
                ) from error
            raise builtins.ConnectionError(f"cannot reach Redis at {self.location}: {error}") from error
        timeout = socket_timeout(self._client)
        # a blocking wait must end before redis-py's socket timeout would call the connection broken
        self._max_block = max(0.1, timeout - 2.0) if timeout else 30.0
        if self.options.pipelined:
            try:
                await self._open_channels(timeout)
            except (RedisError, OSError) as error:
                if self._owns_client:
                    await self._close_client()
                raise builtins.ConnectionError(f"cannot reach Redis at {self.location}: {error}") from error

    async def _open_channels(self, timeout: float | None) -> None:
        """Set up the pipelined channels (single-server clients), connecting the first at once: when
        redis-py's internals are not what a channel relies on, every call goes through redis-py instead
        (logged once; see :mod:`.internals`)."""
        connector = AsyncConnector.for_client(self._client)
        if connector is None:  # a cluster client, or a pool of another make: redis-py for everything
            return
        channel = RespChannel(connector, reply_timeout=timeout or 30.0)
        try:
            await channel.connect()
        except InternalsChanged as error:
            await channel.close()
            log.warning("Redis: %s; every call goes through redis-py's client instead (slower)", error)
            return
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self._blocker = RespChannel(connector, reply_timeout=None)

    @property
    def transport(self) -> str:
        """What carries this backend's calls (after :meth:`open`): ``"pipelined"`` (the channel of
        :mod:`.channel`) or ``"redis-py"`` (``pipelined=False``, a cluster client, or a redis-py whose
        internals differ from what the channel relies on)."""
        return "pipelined" if self._channel is not None else "redis-py"

    @property
    def channel_calls(self) -> int:
        """Commands sent over the pipelined channels so far (0 when there are none)."""
        return sum(channel.sent for channel in (self._channel, self._blocker) if channel is not None)

    async def close(self) -> None:
        """Stop listening for wake-ups; close the client only when the backend created it.

        Never raises: whatever Redis answers now (unreachable, full, refusing), closing completes, and
        what could not be done is logged (jobs not given back return when their leases expire).
        """
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # no running event loop: nothing waits in it then
            self.wake()  # the last wake-up: once closed, wake() no longer starts any
        self._closed = True
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            # Wake-ups under way must be done before the connections they use are closed.
            ("finish waking the blocked consumer", self._finish_wake_ups),
            ("finish settling", self._settler.close),
            ("finish pushing", self._pusher.close),
        ]
        if self._consumed and self._client is not None:
            steps.append(("deregister the consumer", self._retire))
        for channel in (self._channel, self._blocker):
            if channel is not None:
                steps.append(("close a connection", channel.close))
        if self._owns_client:
            steps.append(("close the client", self._close_client))
        for what, step in steps:
            try:
                await step()
            except Exception as error:
                log.warning("closing the Redis backend: could not %s: %s", what, error)
            if what == "finish pushing" and self._blocking_pusher is not None:
                self._blocking_pusher.close()

    async def _finish_wake_ups(self) -> None:
        if not self._background:
            return
        _, pending = await asyncio.wait(set(self._background), timeout=2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def wake(self) -> None:
        """Interrupt a blocked wait: an empty entry in this consumer's hand-off list ends its BLPOP."""
        self._woken += 1
        if self._consumed and self._client is not None and not self._closed:
            task = asyncio.get_running_loop().create_task(self._poke())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _poke(self) -> None:
        try:
            if self._channel is not None:
                await asyncio.gather(
                    self._channel.call("RPUSH", self._handoff, ""),
                    self._channel.call("PEXPIRE", self._handoff, 60_000),
                )
            else:
                await self.client.rpush(self._handoff, "")
                await self.client.pexpire(self._handoff, 60_000)
        except (RedisError, builtins.ConnectionError, builtins.TimeoutError, AttributeError) as error:
            if isinstance(error, AttributeError) and not torn_connection(error):
                raise
            log.debug("could not wake the blocked consumer: %s", error)

    async def consume(self, dispatch: Dispatch, options: ConsumeOptions, stopping: asyncio.Event) -> None:
        """The shared pull consumer, then: give back jobs handed to this consumer that it never took."""
        try:
            await super().consume(dispatch, options, stopping)
        finally:
            if self._consumed and not self._closed:
                await self._retire()

    async def _retire(self) -> None:
        try:
            reply = await self._call(
                "retire", lambda: self._script(self._scripts.retire, [self.consumer_id]), patience=5.0
            )
        except (builtins.ConnectionError, RedisError) as error:
            log.warning(
                "could not deregister consumer %s: %s (its hand-offs return when their leases expire)",
                self.consumer_id,
                error,
            )
            return
        returned = int(reply[0])
        log_notes(reply[1:])
        self._consumed = False
        if returned:
            log.info("gave back %d job(s) handed to this consumer after it stopped taking work", returned)

    # -- calling Redis through outages ------------------------------------------------------------------

    async def _call(
        self, what: str, operation: Callable[[], Awaitable[T]], *, patience: float | None = None
    ) -> T:
        """Run ``operation``, repeating it through transient errors for up to ``patience`` seconds
        (``reconnect_timeout`` by default). Every operation passed here is safe to repeat.

        :raises ConnectionError: Redis stayed unreachable.
        """
        budget = self.options.reconnect_timeout if patience is None else patience
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                result = await operation()
            except Exception as error:
                if not is_transient(error):
                    raise
                self._note_outage(what, error)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise builtins.ConnectionError(
                        f"Redis at {self.location} unreachable for {budget:.0f}s during {what}: {error}"
                    ) from error
                await asyncio.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 2.0)
                continue
            if self._outage_since is not None:
                self._note_recovery()
            return result

    def _note_outage(self, what: str, error: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "Redis at %s is unreachable (%s during %s); retrying with backoff",
                self.location,
                type(error).__name__,
                what,
            )
        else:
            log.debug("Redis still unreachable during %s: %s", what, error)

    def _note_recovery(self) -> None:
        assert self._outage_since is not None
        log.warning(
            "Redis at %s is reachable again after %.1fs", self.location, time.monotonic() - self._outage_since
        )
        self._outage_since = None

    async def _script(self, script: LuaScript, args: list[Any]) -> Any:
        return await self._eval(script, [self.keys.base, *args])

    def _invocation(self, script: LuaScript) -> tuple[Any, ...]:
        """The start of a call of ``script``: ``FCALL <function>`` or ``EVALSHA <sha>``, one routing key."""
        if self._functions:
            return ("FCALL", script.function, 1, self._route)
        return ("EVALSHA", script.sha, 1, self._route)

    async def _reloading(self, script: LuaScript, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` (a call of ``script`` over the pipelined channel), loading the code again and
        repeating it once if the server lost it (a restart without persistence, a failover)."""
        try:
            return await call()
        except ResponseError as error:
            if not self.lost_code(error):
                raise
            await self._reload(script)
            return await call()

    async def _call_encoded(
        self, channel: RespChannel, script: LuaScript, head: Sequence[Any], wire: Sequence[bytes], count: int
    ) -> Any:
        """Call ``script`` over the pipelined channel with pre-encoded job arguments."""
        return await self._reloading(
            script, lambda: channel.call_encoded(count, (*self._invocation(script), *head), wire)
        )

    def lost_code(self, error: BaseException) -> bool:
        """Whether ``error`` says the server lost our code (restart without persistence, failover)."""
        return isinstance(error, NoScriptError) or (self._functions and function_missing(error))

    async def _reload(self, script: LuaScript) -> None:
        channel = self._channel
        if self._functions:
            library = self._scripts.library
            try:
                if channel is not None:
                    await channel.call("FUNCTION", "LOAD", "REPLACE", library)
                else:
                    await self.client.function_load(library, replace=True)
                return
            except OutOfMemoryError:
                # A full Redis refuses FUNCTION LOAD but not SCRIPT LOAD: go on with scripts, which run on
                # a full Redis as the functions do (see scripts.py).
                log.warning(
                    "Redis at %s is full (maxmemory) and lost lssm-jobs' function library: using scripts",
                    self.location,
                )
                self._functions = False
        if channel is not None:
            await channel.call("SCRIPT", "LOAD", script.source)
        else:
            await self.client.script_load(script.source)

    async def _eval(self, script: LuaScript, args: list[Any]) -> Any:
        """Run ``script`` (full ARGV in ``args``) over the channel when there is one, else via redis-py."""
        channel = self._channel
        if channel is None:
            return await evalsha(self.client, script, self._route, args, functions=self._functions)
        return await self._reloading(script, lambda: channel.call(*self._invocation(script), *args))

    # -- producing ------------------------------------------------------------------------------------------

    @staticmethod
    def _push_values(jobs: Sequence[OutgoingJob]) -> list[Any]:
        """The same arguments as plain values, for calls through redis-py."""
        kinds: dict[tuple[str, str, int, float], int] = {}
        per_job: list[Any] = []
        for job in jobs:
            key = (job.type, job.queue, int(job.priority), float(job.created_at))
            number = kinds.setdefault(key, len(kinds) + 1)
            run_at = "" if job.run_at == job.created_at else repr(float(job.run_at))
            per_job.extend((job.id, number, run_at, job.dedupe_key or "", job.body))
        values: list[Any] = [len(kinds)]
        for job_type, queue, priority, created in kinds:
            values.extend((job_type, queue, priority, repr(created)))
        return values + per_job

    # The push interface of the synchronous pusher (:mod:`.blocking`): the whole push call as bytes, what
    # its reply means, and how to load the code again on a server that lost it.

    @staticmethod
    def push_results(jobs: Sequence[OutgoingJob], reply: list[Any]) -> list[PushResult]:
        """The push results of ``jobs`` from the push call's reply (warnings after them are logged)."""
        if len(reply) > len(jobs):
            log_notes(reply[len(jobs) :])
        return [
            new_push_result(job.id, True) if result == 1 else new_push_result(_text(result), False)
            for job, result in zip(jobs, reply[: len(jobs)], strict=True)
        ]

    async def _push_chunk(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        reply = await self._call("push", lambda: self._push_call(jobs))
        return self.push_results(jobs, reply)

    def push_command(self, jobs: Sequence[OutgoingJob]) -> bytes:
        """The whole push call for ``jobs``, RESP-encoded: ``FCALL <push> 1 <route> <prefix> <now ms>``
        (or ``EVALSHA``), then the kinds of job and 5 arguments per job (see :func:`.resp.push_arguments`)."""
        invocation = self._push_invocation
        if invocation is None or invocation[0] != self._functions:
            # everything before the clock is the same on every call: encoded once
            prefix = command_prefix((*self._invocation(self._scripts.push), self.keys.base))
            invocation = self._push_invocation = (self._functions, prefix)
        return push_command(invocation[1], int(time.time() * 1000), jobs, self._wire_heads)

    def reload_command(self) -> tuple[Any, ...]:
        """The command that loads the push code again on a server that lost it."""
        if self._functions:
            return ("FUNCTION", "LOAD", "REPLACE", self._scripts.library)
        return ("SCRIPT", "LOAD", self._scripts.push.source)

    def blocking_pusher(self) -> BlockingPusher | None:
        """Pushes from synchronous code on its own per-thread connections (see :mod:`.blocking`); None
        for Sentinel and cluster clients."""
        if self._closed:
            return None
        if self._blocking_pusher is None and not self._no_blocking_pusher:
            try:
                self._blocking_pusher = BlockingPusher.for_backend(self)
            except InternalsChanged as error:
                log.warning("Redis: %s; blocking enqueues go through the event loop instead", error)
            self._no_blocking_pusher = self._blocking_pusher is None
        return self._blocking_pusher

    async def _push_call(self, jobs: Sequence[OutgoingJob]) -> Any:
        channel = self._channel
        script = self._scripts.push
        if channel is None:
            args: list[Any] = [self.keys.base, int(time.time() * 1000), *self._push_values(jobs)]
            return await self._eval(script, args)
        return await self._reloading(script, lambda: channel.send(self.push_command(jobs)))

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store jobs: one script call per ``push_chunk`` jobs, all chunks pipelined in one round trip;
        single pushes made concurrently are coalesced into one call.

        :raises redis.exceptions.OutOfMemoryError: Redis is full (``maxmemory``): nothing of a refused call
            was stored (see :meth:`full`).
        """
        if not jobs:
            return []
        try:
            if len(jobs) == 1:
                return [await self._pusher.submit(jobs[0])]
            chunk = self.options.push_chunk
            if len(jobs) <= chunk:
                return await self._push_chunk(jobs)
            return await self._call("push", lambda: self._push_pipelined(jobs))
        except OutOfMemoryError as error:
            raise self.full(error, len(jobs)) from None

    def full(self, error: OutOfMemoryError, count: int) -> OutOfMemoryError:
        """The error a push refused by a full Redis raises: what happened and what to do."""
        chunk = self.options.push_chunk
        stored = (
            f"; of a push of more than push_chunk={chunk} jobs, earlier chunks may be stored (pushing the "
            "same jobs again stores none twice)"
            if count > chunk
            else ""
        )
        return OutOfMemoryError(
            f"Redis at {self.location} is full (used memory > maxmemory, {error}): the job was not stored"
            f"{stored}. Workers keep running and settling jobs; free memory (purge dead letters, lower "
            "completed_ttl_ms / completed_max) or raise maxmemory"
        )

    async def _push_pipelined(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        chunk = self.options.push_chunk
        chunks = [jobs[start : start + chunk] for start in range(0, len(jobs), chunk)]
        if self._channel is not None:  # concurrent calls pipeline on the channel by themselves
            replies: list[Any] = list(await asyncio.gather(*(self._push_call(part) for part in chunks)))
        else:
            now_ms = int(time.time() * 1000)
            calls: list[list[Any]] = []
            for part in chunks:
                calls.append([self.keys.base, now_ms, *self._push_values(part)])
            replies = await self._pipeline_scripts(self._scripts.push, calls)
        results: list[PushResult] = []
        for part, reply in zip(chunks, replies, strict=True):
            results.extend(self.push_results(part, reply))
        return results

    async def _pipeline_scripts(self, script: LuaScript, calls: list[list[Any]]) -> list[Any]:
        """Run ``script`` once per argument list in one pipeline (scripts loaded first when missing)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for args in calls:
                pipe.execute_command(*self._invocation(script), *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            missing = [reply for reply in replies if self.lost_code(reply)]
            if missing and attempt == 0:
                await self._reload(script)
                continue  # every script here is safe to repeat
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies
        raise AssertionError("unreachable")

    # -- consuming ------------------------------------------------------------------------------------------

    def _queue_name(self, raw: bytes) -> str:
        name = self._queue_names.get(raw)
        if name is None:
            name = self._queue_names[raw] = raw.decode(errors="surrogateescape")
        return name

    async def lease(
        self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` jobs in one script call; when none is ready, register as idle and block
        (up to ``wait`` seconds) on this consumer's hand-off list, where a producer puts a job it leased to
        us, or until the next delayed job / lease expiry comes due.

        One consumer per backend instance: calls must not overlap (the pull consumer makes one at a time).
        An unreachable Redis makes this wait and return an empty list (the consumer calls again), logging
        once per outage, so workers ride out restarts and failovers."""
        # The consumer calls again right after dispatching what the last call returned: yield once, so those
        # jobs start before this call's own work and socket write (shorter enqueue-to-start latency).
        await asyncio.sleep(0)
        deadline = time.monotonic() + max(wait, 0.0)
        woken = self._woken
        names = list(queues) if queues else []
        options = self.options
        self._consumed = True
        while True:
            remaining = deadline - time.monotonic()
            block = min(remaining, self._max_block) if remaining > 0 and self._woken == woken else 0.0
            args = [
                self.keys.base,
                limit,
                int(lease_ms),
                self.consumer_id,
                # registered as idle a little longer than it blocks, so no hand-off misses it
                int(block * 1000) + 500 if block > 0 else 0,
                options.maintenance_batch,
                options.completed_retention_ms,
                options.completed_max,
                *names,
            ]
            try:
                reply = await self._eval(self._scripts.lease, args)
                if len(reply) > 1:
                    deliveries = self._deliveries(reply[1:], lease_ms)
                    if deliveries:  # (else only warnings: nothing was leased, as below)
                        if self._outage_since is not None:
                            self._note_recovery()
                        return deliveries
                if block <= 0 or self._woken != woken:
                    if self._outage_since is not None:
                        self._note_recovery()
                    return []
                next_due = int(reply[0])
                timeout = block if next_due < 0 else min(block, next_due / 1000)
                entry = await self._block(max(timeout, 0.01))
            except Exception as error:
                if not is_transient(error):
                    raise
                self._note_outage("lease", error)
                pause = min(max(remaining, 0.0), 0.5 + random.random() * 0.5)
                if pause <= 0 or self._woken != woken or self._closed:
                    return []
                await asyncio.sleep(pause)
                continue
            if self._outage_since is not None:
                self._note_recovery()
            if entry:
                return self._deliveries([entry], lease_ms)
            if self._woken != woken or (entry is None and time.monotonic() >= deadline):
                return []  # woken to stop, or waited long enough (a late hand-off waits in the list)

    async def _block(self, timeout: float) -> bytes | None:
        """Wait up to ``timeout`` seconds for an entry in this consumer's hand-off list.

        :returns: the entry (a delivery, or b"" when woken without a job), or None on timeout.
        """
        seconds = f"{timeout:.3f}"
        blocker = self._blocker
        if blocker is not None:
            # Redis ends the BLPOP after `timeout`; a connection that went silent is cut _block_grace later. A timer
            # rather than asyncio.wait_for, which would run the call in a task of its own: one more event
            # loop turn between the job's arrival and its handler.
            limit = timeout + self._block_grace
            silent = RedisTimeoutError(f"no reply to a {timeout:.1f}s BLPOP within {limit:.1f}s")
            watchdog = asyncio.get_running_loop().call_later(limit, blocker.reset, silent)
            try:
                reply = await blocker.call("BLPOP", self._handoff, seconds)
            finally:
                watchdog.cancel()
        else:
            reply = await self.client.blpop([self._handoff], timeout=float(seconds))
        if reply is None:
            return None
        entry: bytes = reply[1]
        return entry

    def _deliveries(self, entries: list[bytes], lease_ms: int) -> list[Delivery]:
        """Parse deliveries: ``b"<attempt> <token> <id length> <queue length>\\n<id><queue><body>"``; entries
        starting with ``!`` are warnings of the lease script (see :func:`log_notes`)."""
        queue_name = self._queue_name
        deliveries: list[Delivery] = []
        for entry in entries:
            if entry[:1] == b"!":
                log_notes([entry[1:]])
                continue
            head, _, rest = entry.partition(b"\n")
            try:
                attempt, token, id_length, queue_length = head.split(b" ")
                id_end = int(id_length)
                queue_end = id_end + int(queue_length)
                number = int(attempt)
            except ValueError:  # an entry written by hand in the hand-off list (a lease's are checked)
                log_notes([b"dropped a hand-off entry that is not a delivery: " + entry[:40]])
                continue
            deliveries.append(
                RedisDelivery(
                    self,
                    rest[:id_end].decode(errors="surrogateescape"),
                    queue_name(rest[id_end:queue_end]),
                    number,
                    token,
                    rest[queue_end:],
                    lease_ms,
                )
            )
        return deliveries

    async def _settle_many(self, ops: Sequence[tuple[Any, ...]]) -> list[int]:
        head: list[Any] = [
            self.keys.base,
            int(time.time() * 1000),
            self.options.completed_retention_ms,
            self.options.completed_max,
        ]
        channel = self._channel
        if channel is not None:
            script = self._scripts.settle
            wire = [op[1].wire(op) for op in ops]
            count = 4 + len(head) + 7 * len(ops)

            async def run() -> Any:
                return await self._call_encoded(channel, script, head, wire, count)

            reply = await self._call("settle", run)
        else:
            args = list(head)
            for op in ops:
                args.extend(op[1].args(op))
            reply = await self._call("settle", lambda: self._eval(self._scripts.settle, args))
        if len(reply) > len(ops):
            log_notes(reply[len(ops) :])
            del reply[len(ops) :]
        results: list[int] = reply
        return results

    # -- inspecting -----------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when unknown.

        :raises ValueError: the job's record in Redis cannot be read (written by hand or by something else;
            a worker moves such a job to the dead letter queue when it meets it).
        """
        key = self.keys.job(job_id)
        body_key = self.keys.body(job_id)
        channel = self._channel
        try:
            if channel is not None:
                fields, body = await self._call(
                    "get",
                    lambda: asyncio.gather(
                        channel.call("HMGET", key, *_JOB_FIELDS), channel.call("GET", body_key)
                    ),
                )
            else:

                async def read() -> list[Any]:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.hmget(key, _JOB_FIELDS)
                    pipe.get(body_key)
                    result: list[Any] = await pipe.execute()
                    return result

                fields, body = await self._call("get", read)
        except ResponseError as refused:
            if "WRONGTYPE" not in str(refused):
                raise
            raise ValueError(
                f"job {job_id} cannot be read: its record ({key}) or body ({body_key}) holds another type of "
                "Redis value"
            ) from None
        values = [body, *fields]
        body, type_, queue, priority, run_at, created, updated, status, attempts, dedupe, error = values[:11]
        progress, cancel_requested = values[11:]
        if status is None:
            return None
        try:
            return JobRecord(
                id=job_id,
                type=_text(type_) if type_ is not None else "",
                queue=_text(queue) if queue is not None else "",
                status=_reported_status(status, run_at, created),
                attempts=int(attempts or 0),
                priority=int(priority or 0),
                run_at=float(run_at if run_at is not None else created),  # no r: due at creation
                created_at=float(created),
                updated_at=float(updated if updated is not None else created),
                dedupe_key=_text(dedupe) if dedupe is not None else None,
                last_error=error.decode(errors="replace") if error is not None else None,
                body=body if body is not None else b"",  # (a record whose body went missing)
                progress=progress.decode(errors="replace") if progress is not None else None,
                cancel_requested=cancel_requested is not None and status == b"active",
            )
        except (KeyError, ValueError, TypeError) as problem:
            raise ValueError(
                f"job {job_id} cannot be read: its record ({key}) holds a value that is not what lssm-jobs "
                f"stores there ({type(problem).__name__}: {_printable(str(problem).encode())[:80]})"
            ) from None

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        options = self.options
        reply = await self._call(
            "counts",
            lambda: self._script(
                self._scripts.counts, [options.completed_retention_ms, options.completed_max]
            ),
        )
        counts: dict[str, dict[JobStatus, int]] = {}
        for i in range(0, len(reply), 7):
            counts[_text(reply[i])] = {
                JobStatus.PENDING: int(reply[i + 1]),
                JobStatus.SCHEDULED: int(reply[i + 2]),
                JobStatus.ACTIVE: int(reply[i + 3]),
                JobStatus.COMPLETED: int(reply[i + 4]),
                JobStatus.DEAD: int(reply[i + 5]),
                JobStatus.CANCELLED: int(reply[i + 6]),
            }
        return counts

    # -- cancelling and progress ----------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job (see ``lua/cancel.lua``): one script call.

        :raises ValueError: the job's record in Redis cannot be read.
        """
        options = self.options
        args = ["cancel", _raw(job_id), options.completed_retention_ms, options.completed_max]
        try:
            reply = await self._call("cancel", lambda: self._script(self._scripts.cancel, args))
        except ResponseError as refused:
            if "cannot be read" not in str(refused):
                raise
            raise ValueError(str(refused)) from None
        outcome = _text(reply) if isinstance(reply, bytes) else str(reply)
        if outcome not in ("removed", "requested", "not_found", "finished"):
            raise ValueError(f"unexpected reply to cancel: {outcome!r}")
        return cast(CancelOutcome, outcome)

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` are active with a cancel request: one script call per 1,000 ids."""
        found: set[str] = set()
        ids = [_raw(job_id) for job_id in job_ids]
        for start in range(0, len(ids), 1000):
            args: list[Any] = ["requested", *ids[start : start + 1000]]
            reply = await self._call(
                "cancel requests",
                lambda args=args: self._script(self._scripts.cancel, args),  # type: ignore[misc]
            )
            found.update(_text(raw) for raw in reply)
        return found

    async def set_progress(self, job_id: str, progress: str) -> bool:
        reply = await self._call(
            "progress", lambda: self._script(self._scripts.progress, [_raw(job_id), progress])
        )
        return int(reply) == 1

    @staticmethod
    def _dead_letters(reply: list[Any]) -> list[DeadLetter]:
        letters = []
        for i in range(0, len(reply), 9):
            job_id, type_, queue, reason, error, trace, attempts, failed_at, body = reply[i : i + 9]
            letters.append(
                DeadLetter(
                    id=_text(job_id),
                    type=_text(type_) if type_ else "",
                    queue=_text(queue) if queue else "",
                    reason=reason.decode(errors="replace") if reason else "",
                    error=error.decode(errors="replace") if error else None,
                    traceback=trace.decode(errors="replace") if trace else None,
                    attempts=int(attempts or 0),
                    failed_at=float(failed_at or 0),
                    body=body,
                )
            )
        return letters

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        reply = await self._call(
            "list dead letters", lambda: self._script(self._scripts.dead, ["list", max(offset, 0), limit])
        )
        return self._dead_letters(reply)

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        reply = await self._call(
            "get dead letter", lambda: self._script(self._scripts.dead, ["get", _raw(job_id)])
        )
        letters = self._dead_letters(reply)
        return letters[0] if letters else None

    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        """Move a dead letter back into its queue (at ``run_at``), attempts reset, dedupe key kept.

        :raises DedupeConflictError: another live job holds its dedupe key (the dead letter stays).
        :raises ValueError: the dead letter cannot be replayed: its record is unreadable or it has no body.
        """
        args = [int(time.time() * 1000), _raw(job_id), repr(float(run_at))]
        reply = await self._call("replay", lambda: self._script(self._scripts.replay, args))
        outcome = int(reply[0])
        if outcome == 2:
            raise DedupeConflictError(job_id, _text(reply[2]), _text(reply[1]))
        if outcome == 3:
            raise ValueError(f"dead letter {job_id} cannot be replayed: {_printable(reply[1])}")
        log_notes(reply[1:])
        return outcome == 1

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters, in calls of at most 1000 so a large dead letter queue never blocks Redis."""
        deleted = 0
        if job_ids is None:
            while True:
                reply = await self._call("purge", lambda: self._script(self._scripts.purge, ["oldest", 1000]))
                log_notes(reply[1:])
                deleted += int(reply[0])
                if int(reply[0]) < 1000:
                    return deleted
        ids = [_raw(job_id) for job_id in job_ids]
        for start in range(0, len(ids), 1000):
            args: list[Any] = ["ids", *ids[start : start + 1000]]
            reply = await self._call("purge", lambda args=args: self._script(self._scripts.purge, args))  # type: ignore[misc]
            log_notes(reply[1:])
            deleted += int(reply[0])
        return deleted

    async def purge_queue(self, queue: str) -> int:
        """Delete ``queue``'s pending and scheduled jobs, in steps (see :mod:`lssm_jobs_redis.purge_queue`)."""
        deleted = 0
        while True:
            taken, removed = await self._call(
                "purge queue",
                lambda: purge_step(self.client, self.keys.queues, self.keys.base, queue),
            )
            deleted += removed
            if taken < PURGE_STEP:
                return deleted


    # -- live workers (lua/workers.lua) -------------------------------------------------------------------

    async def _workers(self, what: str, operation: str, *args: Any) -> Any:
        return await self._call(
            what, lambda: workers_call(self.client, self.keys.queues, self.keys.base, operation, *args)
        )

    async def register_worker(self, worker: WorkerInfo, ttl_ms: int) -> None:
        await self._workers("register worker", "register", worker.id, worker.to_json(), int(ttl_ms))

    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        reply = await self._workers("worker heartbeat", "heartbeat", worker.id, worker.to_json(), int(ttl_ms))
        return int(reply) == 1

    async def unregister_worker(self, worker_id: str) -> None:
        await self._workers("unregister worker", "unregister", worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        workers = []
        for record in await self._workers("list workers", "list"):
            if record is None:  # an id without its record: keys changed by something else
                continue
            try:
                workers.append(WorkerInfo.from_json(record))
            except ValueError as error:
                log.warning("a worker record in Redis is unreadable: %s", error)
        return sorted(workers, key=lambda worker: (worker.started_at, worker.id))


def _reported_status(status: bytes, run_at: bytes | None, created: bytes) -> JobStatus:
    """A delayed job whose time has come is ready, whether or not a lease has moved it yet."""
    if status == b"scheduled" and float(run_at if run_at is not None else created) <= time.time():
        return JobStatus.PENDING
    return _STATUS[status]
