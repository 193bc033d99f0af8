"""``lssm-jobs worker --processes N``: a supervisor that runs N worker processes and keeps them running.

* **Start**: N workers, each a fresh ``python -m lssm_jobs.cli worker ...`` process (no fork: nothing of
  the supervisor's state, threads or connections leaks into them) in its own session, connected to the
  supervisor by a socket pair (:mod:`lssm_jobs.supervisor.protocol`).
* **Crash**: a worker that dies (SIGKILL, OOM killer, a crash) is logged with its exit status or signal
  and started again after a back-off (0.5 s, doubling per crash in a row up to 30 s; a worker that ran for
  a minute resets it). Its jobs come back to the queue when their leases expire, as for any dead worker.
* **Recycle**: a worker past ``--max-jobs`` or ``--max-memory`` drains and exits by itself (see
  :mod:`lssm_jobs.supervisor.child`); it is replaced at once.
* **Stop**: the first SIGTERM/SIGINT tells every worker to drain (finish in-flight jobs within
  ``--shutdown-timeout``, release the rest); the supervisor waits for them and exits 0. A second signal
  tells them to stop at once: running jobs are cancelled and released, nothing waits for its lease to
  expire; exit 130. A third signal kills what is left.
* A worker exiting with status 2 before it ever started (a usage error in the command) stops everything:
  restarting cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs

from lssm_jobs.observability.logs import notice
from lssm_jobs.supervisor.memory import format_size
from lssm_jobs.supervisor.protocol import encode, read_message

log = logging.getLogger("lssm_jobs.supervisor")

#: Back-off before restarting a crashed worker: first delay, factor per crash in a row, longest delay.
RESTART_DELAY = 0.5
RESTART_FACTOR = 2.0
RESTART_MAX_DELAY = 30.0
#: A worker that ran this long before crashing restarts after the first delay again.
STABLE_AFTER = 60.0
#: Extra seconds the supervisor gives draining workers beyond their own shutdown timeout before it orders
#: them to stop at once, and again before it kills them.
DRAIN_GRACE = 10.0
USAGE_ERROR = 2


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``killed by SIGKILL`` (what a log line says about a dead worker)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


@attrs.define(eq=False)
class WorkerProcess:
    """One worker slot and the process filling it now."""

    index: int
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    started: float = 0.0
    ready: bool = False
    last_beat: float = 0.0
    jobs: int | None = None  # jobs run, reported by workers counting them (--max-jobs)
    rss: int | None = None
    recycle_reason: str | None = None
    crashes: int = 0  # in a row
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def label(self) -> str:
        return f"worker {self.index} (pid {self.pid})"


class Supervisor:
    """Runs ``processes`` workers built by ``command(index)`` (an argv) until stopped by signals.

    :param command: the argv of worker ``index``; the supervisor appends the channel's flag.
    :param env: the environment of worker ``index``.
    :param shutdown_timeout: the workers' own drain time (they enforce it); the supervisor waits that plus
        :data:`DRAIN_GRACE`, then orders an immediate stop, then kills.
    :param on_exit: called with the pid of every worker process that exited (metrics clean-up).
    :param on_restart: called with ``"crash"`` or ``"recycle"`` for each replacement started.
    """

    def __init__(
        self,
        command: Callable[[int], list[str]],
        *,
        processes: int,
        env: Callable[[int], dict[str, str]],
        shutdown_timeout: float,
        channel_flag: str,
        on_exit: Callable[[int], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.command = command
        self.env = env
        self.shutdown_timeout = shutdown_timeout
        self.channel_flag = channel_flag
        self.on_exit = on_exit
        self.on_restart = on_restart
        self.workers = [WorkerProcess(index=index) for index in range(processes)]
        self.draining = False
        self.hurrying = False
        self.exit_code = 0
        self._signals = 0
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deadline_task: asyncio.Task[None] | None = None

    # -- state for health checks (read from other threads) ------------------------------------------------

    def ready_count(self) -> int:
        return sum(1 for worker in self.workers if worker.alive and worker.ready)

    def silent_workers(self, timeout: float) -> list[str]:
        now = time.monotonic()
        return [
            f"{worker.label()} silent for {now - worker.last_beat:.0f}s"
            for worker in self.workers
            if worker.alive and worker.ready and now - worker.last_beat > timeout
        ]

    # -- running ------------------------------------------------------------------------------------------

    def _task(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> int:
        """Start the workers and supervise them until stopped. :returns: the exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.signal, signum)
        try:
            for worker in self.workers:
                await self._spawn(worker)
            await self._done.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            for worker in self.workers:
                if worker.alive and worker.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.exit_code

    async def _spawn(self, worker: WorkerProcess) -> None:
        parent, child = socket.socketpair()
        argv = [*self.command(worker.index), self.channel_flag, str(child.fileno())]
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(child.fileno(),), env=self.env(worker.index), start_new_session=True
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        reader, worker.writer = await asyncio.open_unix_connection(sock=parent)
        worker.started = worker.last_beat = time.monotonic()
        worker.ready = False
        worker.recycle_reason = None
        worker.jobs = None
        log.info("started %s", worker.label())
        self._task(self._listen(worker, reader), f"lssm-jobs {worker.label()} channel")
        self._task(self._watch(worker, worker.process), f"lssm-jobs {worker.label()} watcher")

    async def _listen(self, worker: WorkerProcess, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                return
            kind = message.get("type")
            worker.last_beat = time.monotonic()
            if kind == "ready":
                worker.ready = True
                log.info("%s is consuming", worker.label())
            elif kind == "beat":
                jobs = message.get("jobs")
                worker.jobs = int(jobs) if isinstance(jobs, int) else None
                rss = message.get("rss")
                worker.rss = int(rss) if isinstance(rss, int) else None
            elif kind == "recycle":
                worker.recycle_reason = str(message.get("reason") or "recycled")

    async def _watch(self, worker: WorkerProcess, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        lived = time.monotonic() - worker.started
        if worker.writer is not None:
            worker.writer.close()
        if self.on_exit is not None:
            try:
                self.on_exit(process.pid)
            except Exception:
                log.exception("clean-up after %s failed", worker.label())
        if self.draining:
            log.info("%s stopped (%s)", worker.label(), describe_exit(returncode))
            if not any(other.alive for other in self.workers):
                self._done.set()
            return
        if worker.recycle_reason is not None and returncode == 0:
            notice(f"lssm-jobs: {worker.label()} recycled: it {worker.recycle_reason}; starting a new one")
            worker.crashes = 0
            await self._restart(worker, "recycle", 0.0)
            return
        if returncode == USAGE_ERROR and not worker.ready:
            notice(
                f"lssm-jobs: {worker.label()} {describe_exit(returncode)} before it started (a usage error, "
                "see above); stopping"
            )
            self.exit_code = USAGE_ERROR
            self._begin_drain()
            if not any(other.alive for other in self.workers):
                self._done.set()
            return
        worker.crashes = 1 if lived >= STABLE_AFTER else worker.crashes + 1
        delay = min(RESTART_DELAY * RESTART_FACTOR ** (worker.crashes - 1), RESTART_MAX_DELAY)
        details = [f"{worker.jobs} jobs run"] if worker.jobs is not None else []
        if worker.rss:
            details.append(f"last seen at {format_size(worker.rss)}")
        notice(
            f"lssm-jobs: {worker.label()} died: {describe_exit(returncode)} after {lived:.1f}s"
            + (f" ({', '.join(details)})" if details else "")
            + f"; restarting it in {delay:.1f}s"
        )
        await self._restart(worker, "crash", delay)

    async def _restart(self, worker: WorkerProcess, reason: str, delay: float) -> None:
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._done.wait(), delay)
        if self.draining or self._done.is_set():
            if not any(other.alive for other in self.workers):
                self._done.set()
            return
        worker.restarts += 1
        if self.on_restart is not None:
            self.on_restart(reason)
        try:
            await self._spawn(worker)
        except OSError as error:
            log.error("could not start %s: %s; trying again", worker.label(), error)
            worker.crashes += 1
            await self._restart(worker, reason, min(RESTART_DELAY * 2**worker.crashes, RESTART_MAX_DELAY))

    # -- stopping -----------------------------------------------------------------------------------------

    def _send(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        writer = worker.writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                writer.write(encode(message))

    def signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        alive = [worker for worker in self.workers if worker.alive]
        if self._signals == 1:
            self._begin_drain()  # before saying so: whoever reads the line finds the supervisor draining
            notice(
                f"\nlssm-jobs: {name} received, draining {len(alive)} worker processes (again to stop at once)"
            )
        elif self._signals == 2:
            notice("lssm-jobs: stopping now: running jobs are released back to their queues")
            self._hurry()
        else:
            notice("lssm-jobs: killing the worker processes")
            self.exit_code = 130
            self._kill()
        if not any(worker.alive for worker in self.workers):
            self._done.set()

    def _begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        for worker in self.workers:
            self._send(worker, {"type": "drain"})
        self._deadline_task = asyncio.get_running_loop().create_task(self._enforce_deadline())
        self._tasks.add(self._deadline_task)

    def _hurry(self) -> None:
        self._begin_drain()
        self.hurrying = True
        self.exit_code = 130
        for worker in self.workers:
            self._send(worker, {"type": "exit"})

    def _kill(self) -> None:
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()

    async def _enforce_deadline(self) -> None:
        await asyncio.sleep(self.shutdown_timeout + DRAIN_GRACE)
        late = [worker for worker in self.workers if worker.alive]
        if not late:
            return
        log.warning(
            "%d worker processes still draining after %.0fs; ordering them to stop at once",
            len(late),
            self.shutdown_timeout + DRAIN_GRACE,
        )
        for worker in late:
            self._send(worker, {"type": "exit"})
        await asyncio.sleep(DRAIN_GRACE)
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                log.error("%s did not stop; killing it", worker.label())
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity, which containers limit), for ``--processes auto``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
