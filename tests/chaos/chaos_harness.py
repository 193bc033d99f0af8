"""The chaos suite's harness: producers and workers as separate processes, faults injected at random, and an
account, kept outside the system under test, of what happened to every job the queue accepted.

One run on one backend goes like this:

1. ``workers`` processes of the real CLI (``lssm-jobs worker chaos_app:handlers --backend ...``) start, and
   ``producers`` processes (``chaos_producer.py``) enqueue ``jobs`` chaos jobs between them, spread over
   ``seconds``: most succeed, some fail a few times and then succeed, some always fail (they must end in
   the dead letter queue after their retries), some fail permanently, some are slow (so kills catch them
   mid-run); some are delayed or prioritized; some are enqueued one at a time, others in batches.
2. Meanwhile, every ``fault_gap`` seconds (drawn at random from that range), a fault is injected: a worker is
   SIGKILLed (or SIGTERMed, to drain) and a new one started, or a fault of the backend's own (Redis:
   server killed and restarted with its append-only file on, memory filled up to ``maxmemory`` with
   ``noeviction`` for a moment; sqlite: another process holding the write lock). Every kind of fault comes
   once (in random order) before they are drawn by weight, so even a short run sees each.
3. When the producers are done and ``seconds`` are over, faults stop, the workers are brought back to full
   strength, and the run waits (up to ``drain_timeout``) until nothing is scheduled, pending or active.
4. The account: the producers' logs say which job ids the queue accepted (``enqueue`` returned), the
   handlers' logs say which runs started and how they ended (see ``chaos_app``), and the queue's final state
   says which jobs are completed and which are dead letters. Lost = accepted, yet neither completed nor
   dead-lettered. At-least-once delivery allows a job to run more than once (a worker killed after the
   handler's work but before its ack): those are counted, not failures.

Adding a backend
----------------
Subclass :class:`ChaosTarget`: say which plugin (``backend``) and ``open_queue`` options reach the service
(``options()``, JSON-able: they are handed to the producer and worker processes), start and stop the service
in ``__init__`` / ``close()``, and list the backend's own faults (``faults()``). The defaults run the real CLI
worker with those options and read the final state through ``queue.get`` and the dead letter queue. A
backend whose workers are not plain CLI workers (Cloud Tasks pushes each job to an HTTP endpoint the worker
serves) overrides ``worker_command``; one that cannot ``get`` a job after it completed (Pub/Sub) overrides
``final_states`` with its own source of truth (e.g. its job ledger). For the Google Cloud backends, whose
plugins start local servers for their own tests (``lssm_jobs_gcp_pubsub.testing``, the Cloud Tasks
emulator wrapper in ``plugins/gcp-tasks/tests``), an adapter is about this much::

    class PubSubTarget(ChaosTarget):
        name = backend = "gcp-pubsub"

        def __init__(self, directory):
            self.server = start_local_pubsub(directory)             # on 127.0.0.1
        def options(self):
            return {"project": "chaos", "emulator_host": self.server.address, ...}
        def faults(self):
            return [Fault("Pub/Sub server restart", 1, lambda run: self.server.restart())]
        def final_states(self, job_ids):
            ...                                                     # from the backend's ledger
        def close(self):
            self.server.stop()

and one more entry in ``TARGETS`` in ``test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
from chaos_app import DOOMED_PLANS
from lssm_jobs.jobs import JobStatus
from lssm_jobs.queue import open_queue

HERE = Path(__file__).resolve().parent
PRODUCER = HERE / "chaos_producer.py"
APP = "chaos_app:handlers"
LIVE = (JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.ACTIVE)


# -- settings -------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ChaosSettings:
    """How big and how long one run is. ``LSSM_CHAOS_PROFILE`` picks ``ci`` (the default, a short run
    inside ``nox -s tests``) or ``full`` (``nox -s chaos``); ``LSSM_CHAOS_JOBS``, ``LSSM_CHAOS_SECONDS``
    and ``LSSM_CHAOS_SEED`` override single values."""

    profile: str
    jobs: int
    seconds: float
    producers: int = 2
    workers: int = 3
    concurrency: int = 8
    lease_ms: int = 2_000
    fault_gap: tuple[float, float] = (1.0, 3.0)
    drain_timeout: float = 90.0
    seed: int = 0

    @classmethod
    def from_environment(cls) -> ChaosSettings:
        profile = os.environ.get("LSSM_CHAOS_PROFILE", "ci")
        if profile == "full":
            settings = cls(profile=profile, jobs=6_000, seconds=150.0, fault_gap=(1.5, 4.0), drain_timeout=240.0)
        elif profile == "ci":
            settings = cls(profile=profile, jobs=1_000, seconds=15.0)
        else:
            raise ValueError(f"LSSM_CHAOS_PROFILE must be 'ci' or 'full', got {profile!r}")
        # CI replays one fault sequence (the timing still varies); the full run draws a new one each time.
        default_seed = "1" if profile == "ci" else "0"
        seed = int(os.environ.get("LSSM_CHAOS_SEED", default_seed)) or random.SystemRandom().randrange(1, 2**31)
        return attrs.evolve(
            settings,
            jobs=int(os.environ.get("LSSM_CHAOS_JOBS", settings.jobs)),
            seconds=float(os.environ.get("LSSM_CHAOS_SECONDS", settings.seconds)),
            seed=seed,
        )


# -- backends -------------------------------------------------------------------------------------------


@attrs.frozen
class Fault:
    """A fault a target can inject: ``inject(run)`` returns once the fault is over (or set in motion)."""

    name: str
    weight: float
    inject: Callable[[ChaosRun], None]


class ChaosTarget(ABC):
    """A backend under chaos: the service it needs (started in ``__init__``), how to reach it, its faults.

    Worker kills (SIGKILL and SIGTERM) are injected for every target; ``faults()`` adds the backend's own.
    """

    name: str = ""  # the name in reports and test ids
    backend: str = ""  # the plugin name given to open_queue / --backend

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """``open_queue`` keywords reaching the service, JSON-able (producers and workers get them)."""

    def faults(self) -> list[Fault]:
        return []

    def worker_command(self, app: str, options: dict[str, Any], concurrency: int) -> list[str]:
        """The command of one worker process: the real CLI, options given as ``-o key=<json>``."""
        script = Path(sys.executable).with_name("lssm-jobs")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "lssm_jobs.cli"]
        command += ["worker", app, "--no-progress", "--concurrency", str(concurrency), "--backend", self.backend]
        for key, value in options.items():
            command += ["-o", f"{key}={json.dumps(value)}"]
        return command

    def final_states(self, job_ids: Iterable[str]) -> tuple[dict[str, JobStatus | None], dict[str, str]]:
        """Each job's status now (None: unknown to the backend) and the dead letters (id -> reason)."""
        return asyncio.run(self._final_states(list(job_ids)))

    async def _final_states(self, job_ids: list[str]) -> tuple[dict[str, JobStatus | None], dict[str, str]]:
        async with open_queue(self.backend, sinks=[], **self.options()) as queue:
            dead: dict[str, str] = {}
            offset = 0
            while True:
                page = await queue.dead_letters.list(limit=500, offset=offset)
                dead.update((letter.id, letter.reason) for letter in page)
                if len(page) < 500:
                    break
                offset += len(page)
            states: dict[str, JobStatus | None] = {}
            for job_id in job_ids:
                record = await queue.backend.get(job_id)
                states[job_id] = None if record is None else record.status
            return states, dead

    def live_jobs(self) -> int:
        """Jobs scheduled, pending or active now."""

        async def count() -> int:
            async with open_queue(self.backend, sinks=[], **self.options()) as queue:
                counts = await queue.counts()
            return sum(per.get(status, 0) for per in counts.values() for status in LIVE)

        return asyncio.run(count())

    def close(self) -> None:  # noqa: B027 - optional
        """Stop the service."""


class SqliteTarget(ChaosTarget):
    """One sqlite file shared by every process; its fault: another process holding the write lock (mostly
    shorter than the busy timeout of 5 s, sometimes longer, so calls fail with 'database is locked')."""

    name = backend = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "chaos.db"

    def options(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def faults(self) -> list[Fault]:
        return [
            Fault("sqlite write lock held 0.5-2 s", 2, lambda run: self._hold_lock(run.rng.uniform(0.5, 2.0))),
            Fault("sqlite write lock held 6 s", 0.5, lambda run: self._hold_lock(6.0)),
        ]

    def _hold_lock(self, seconds: float) -> None:
        if not self.path.exists():
            return
        connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)  # the fault itself: the lock is held this long
            connection.execute("ROLLBACK")
        finally:
            connection.close()


def _fill_to_maxmemory(client: Any, tag: str, hold: float) -> None:
    """Set ``maxmemory`` (noeviction) just above what Redis uses, fill it until writes fail with OOM, keep it
    full for ``hold`` seconds, then free it and lift the limit."""
    import redis

    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 4 * 2**20)
    filler = b"x" * 65_536
    keys: list[str] = []
    try:
        for n in range(1_000):
            key = f"{tag}filler:{n}"
            try:
                client.set(key, filler)
            except redis.exceptions.OutOfMemoryError:
                break
            keys.append(key)
        time.sleep(hold)  # the fault itself: Redis stays full this long
    finally:
        for key in keys:
            client.delete(key)
        client.config_set("maxmemory", 0)


class RedisTarget(ChaosTarget):
    """Its own redis-server with the append-only file fsynced on every write (``appendfsync always``);
    faults: the server killed (SIGKILL) or stopped (SIGTERM) and restarted on its data, and memory full."""

    name = backend = "redis"
    prefix = "chaos:"

    def __init__(self, directory: Path) -> None:
        from lssm_jobs_redis.testing import RedisServer

        self.server = RedisServer(directory / "redis", extra=("--appendonly", "yes", "--appendfsync", "always"))
        self.server.start()

    def options(self) -> dict[str, Any]:
        return {"url": self.server.url, "prefix": self.prefix, "reconnect_timeout": 60.0}

    def faults(self) -> list[Fault]:
        return [
            Fault("redis-server SIGKILL + restart", 1, lambda run: self.server.restart(kill=True)),
            Fault("redis-server SIGTERM + restart", 0.5, lambda run: self.server.restart(kill=False)),
            Fault("redis full (maxmemory, noeviction)", 1, self._fill),
        ]

    def _fill(self, run: ChaosRun) -> None:
        with self.server.client() as client:
            _fill_to_maxmemory(client, "{chaos}:", run.rng.uniform(1.0, 3.0))

    def close(self) -> None:
        self.server.stop(kill=True)


class RedisClusterTarget(ChaosTarget):
    """A 3-primary Redis Cluster, each node with its append-only file; the jobs live on the node owning the
    prefix's hash tag, and that node is the one killed and restarted, or filled up."""

    name = "redis-cluster"
    backend = "redis"
    prefix = "chaos:"

    def __init__(self, directory: Path) -> None:
        from lssm_jobs_redis.testing import start_cluster

        self.cluster = start_cluster(directory / "cluster", appendonly=True)

    def options(self) -> dict[str, Any]:
        return {"url": self.cluster.url, "prefix": self.prefix, "reconnect_timeout": 60.0}

    def _owner(self) -> Any:
        """The node serving the slot of the prefix's hash tag."""
        for node in self.cluster.nodes:
            with node.client() as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", "{chaos}"))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        port = int(primary[1])
                        return next(n for n in self.cluster.nodes if n.port == port)
        raise RuntimeError("no node serves the chaos prefix's slot")

    def faults(self) -> list[Fault]:
        return [
            Fault("cluster node SIGKILL + restart", 1, lambda run: self._restart_owner()),
            Fault("cluster node full (maxmemory, noeviction)", 1, self._fill),
        ]

    def _restart_owner(self) -> None:
        from lssm_jobs_redis.testing import wait_for

        self._owner().restart(kill=True)
        wait_for(self.cluster.cluster_ok, timeout=30, what="the cluster healthy again")

    def _fill(self, run: ChaosRun) -> None:
        with self._owner().client() as client:
            _fill_to_maxmemory(client, "{chaos}:", run.rng.uniform(1.0, 3.0))

    def close(self) -> None:
        self.cluster.stop()


# -- one run --------------------------------------------------------------------------------------------


@attrs.define
class ChaosReport:
    """What happened to the accepted jobs of one run. ``lost`` must be zero."""

    backend: str
    settings: ChaosSettings
    seconds: float = 0.0
    drain_seconds: float = 0.0
    accepted: int = 0
    completed: int = 0
    dead_lettered: int = 0
    dead_lettered_by_plan: int = 0  # doomed or permanent: where they must end
    dead_lettered_after_faults: int = 0  # would have completed, but worker kills used up their attempts
    lost: int = 0
    lost_examples: list[str] = attrs.field(factory=list)
    run_more_than_once: int = 0  # jobs whose handler succeeded on more than one run
    handler_runs: int = 0
    interrupted_runs: int = 0  # started, then the worker died before the handler ended
    completed_without_a_successful_run: int = 0  # must be zero
    doomed_but_completed: int = 0  # must be zero
    stored_despite_failed_enqueue: int = 0  # ran, though the enqueue call that stored them raised
    failed_enqueue_calls: int = 0
    enqueue_errors: dict[str, int] = attrs.field(factory=dict)
    faults: dict[str, int] = attrs.field(factory=dict)
    dead_letter_reasons: dict[str, int] = attrs.field(factory=dict)
    worker_errors: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.completed_without_a_successful_run == 0 and self.doomed_but_completed == 0

    def render(self) -> str:
        s = self.settings
        lines = [
            f"chaos run on {self.backend}: {'PASS' if self.ok else 'FAIL'} (seed {s.seed}, profile {s.profile})",
            f"  {s.jobs} jobs from {s.producers} producers over {s.seconds:.0f} s, {s.workers} CLI workers x "
            f"concurrency {s.concurrency}, lease {s.lease_ms} ms; took {self.seconds:.0f} s "
            f"(drain {self.drain_seconds:.1f} s)",
            f"  faults injected: {_counts(self.faults)}",
            f"  accepted {self.accepted}  completed {self.completed}  dead-lettered {self.dead_lettered}  "
            f"LOST {self.lost}  run more than once {self.run_more_than_once}",
            f"  dead letters: {self.dead_lettered_by_plan} by plan (doomed/permanent), "
            f"{self.dead_lettered_after_faults} after faults used up their attempts",
            f"  handler runs {self.handler_runs} (interrupted by a kill: {self.interrupted_runs}); "
            f"failed enqueue calls {self.failed_enqueue_calls} ({_counts(self.enqueue_errors)}), "
            f"of which stored anyway and run: {self.stored_despite_failed_enqueue}",
            f"  completed without a successful run: {self.completed_without_a_successful_run}; "
            f"doomed but completed: {self.doomed_but_completed}",
        ]
        if self.dead_letter_reasons:
            lines.append(f"  dead letter reasons: {_counts(self.dead_letter_reasons)}")
        if self.lost_examples:
            lines.append("  lost (first 10): " + "; ".join(self.lost_examples[:10]))
        if self.worker_errors:
            lines.append(f"  worker error lines ({len(self.worker_errors)}), first 5:")
            lines += [f"    {line[:200]}" for line in self.worker_errors[:5]]
        return "\n".join(lines)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} x{value}" for key, value in sorted(counter.items(), key=lambda kv: -kv[1])) or "none"


def _reason_kind(reason: str) -> str:
    """A dead letter reason without its numbers, so reasons group."""
    return "".join("N" if char.isdigit() else char for char in reason.split(":")[0])[:80]


class ChaosRun:
    """One run of the chaos suite on one target; :meth:`run` returns its :class:`ChaosReport`."""

    def __init__(self, target: ChaosTarget, settings: ChaosSettings, directory: Path) -> None:
        self.target = target
        self.settings = settings
        self.directory = directory
        self.rng = random.Random(settings.seed)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.producers: list[subprocess.Popen[bytes]] = []
        self.faults: Counter[str] = Counter()
        self._worker_logs = directory / "worker-logs"
        self._worker_logs.mkdir(parents=True, exist_ok=True)
        self._started_workers = 0

    # -- processes ----------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env["CHAOS_LOG_DIR"] = str(self.directory)
        env.pop("LSSM_JOBS_SINKS", None)
        return env

    def _worker_options(self) -> dict[str, Any]:
        return {
            **self.target.options(),
            "lease_ms": self.settings.lease_ms,
            "poll_interval": 0.25,
            "shutdown_timeout": 5.0,
        }

    def start_worker(self) -> None:
        self._started_workers += 1
        command = self.target.worker_command(APP, self._worker_options(), self.settings.concurrency)
        log = (self._worker_logs / f"worker-{self._started_workers}.log").open("wb")
        with log:
            self.workers.append(
                subprocess.Popen(
                    command,
                    env=self._environment(),
                    cwd=self.directory,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def _stop_worker(self, process: subprocess.Popen[bytes], *, kill: bool) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _replace_worker(self, *, kill: bool) -> None:
        self.workers = [worker for worker in self.workers if worker.poll() is None]
        if self.workers:
            victim = self.rng.choice(self.workers)
            self.workers.remove(victim)
            self._stop_worker(victim, kill=kill)
        self.start_worker()

    def _keep_workers(self) -> None:
        self.workers = [worker for worker in self.workers if worker.poll() is None]
        while len(self.workers) < self.settings.workers:
            self.start_worker()

    def _start_producers(self) -> None:
        share, extra = divmod(self.settings.jobs, self.settings.producers)
        target = json.dumps({"backend": self.target.backend, "options": self.target.options()})
        for index in range(self.settings.producers):
            count = share + (1 if index < extra else 0)
            log = (self.directory / f"producer-p{index}.stderr").open("wb")
            with log:
                self.producers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(PRODUCER),
                            "--name",
                            f"p{index}",
                            "--count",
                            str(count),
                            "--seconds",
                            str(self.settings.seconds * 0.8),
                            "--seed",
                            str(self.settings.seed * 100 + index),
                            "--out",
                            str(self.directory),
                            "--target",
                            target,
                        ],
                        env=self._environment(),
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        start_new_session=True,
                    )
                )

    def _stop_everything(self) -> None:
        for process in [*self.producers, *self.workers]:
            if process.poll() is None:
                self._stop_worker(process, kill=True)

    # -- the run ------------------------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        settings = self.settings
        report = ChaosReport(backend=self.target.name, settings=settings)
        started = time.monotonic()
        faults = [
            Fault("worker SIGKILL", 3, lambda run: run._replace_worker(kill=True)),
            Fault("worker SIGTERM (drain)", 1, lambda run: run._replace_worker(kill=False)),
            *self.target.faults(),
        ]
        try:
            for _ in range(settings.workers):
                self.start_worker()
            self._start_producers()
            end = started + settings.seconds
            hard_end = end + max(60.0, settings.seconds)
            next_fault = time.monotonic() + self.rng.uniform(*settings.fault_gap)
            upcoming: list[Fault] = []
            while True:
                now = time.monotonic()
                producing = any(producer.poll() is None for producer in self.producers)
                if now >= end and not producing:
                    break
                if now >= hard_end:
                    raise AssertionError(f"producers did not finish within {hard_end - started:.0f} s")
                if now >= next_fault:
                    if not upcoming:  # every kind once, in random order, then by weight
                        upcoming = self.rng.sample(faults, len(faults)) if not self.faults else [
                            self.rng.choices(faults, weights=[f.weight for f in faults])[0]
                        ]
                    fault = upcoming.pop()
                    fault.inject(self)
                    self.faults[fault.name] += 1
                    next_fault = time.monotonic() + self.rng.uniform(*settings.fault_gap)
                self._keep_workers()
                time.sleep(0.05)  # the controller's tick between checks of the clock and the processes
            for producer in self.producers:
                if producer.returncode != 0:
                    raise AssertionError(f"a producer failed (exit {producer.returncode}); see its stderr")
            drain_started = time.monotonic()
            self._keep_workers()
            self._drain()
            report.drain_seconds = time.monotonic() - drain_started
        finally:
            self._stop_everything()
        self._account(report)
        report.seconds = time.monotonic() - started
        return report

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout
        while time.monotonic() < deadline:
            try:
                if self.target.live_jobs() == 0:
                    return
            except Exception as error:  # the service may still be recovering; look again
                print(f"chaos: could not count live jobs yet: {error}", file=sys.stderr)
            self._keep_workers()
            time.sleep(0.25)

    # -- the account --------------------------------------------------------------------------------------

    def _account(self, report: ChaosReport) -> None:
        accepted: dict[str, tuple[str, str]] = {}  # job id -> (cid, plan)
        plans: dict[str, str] = {}
        for path in sorted(self.directory.glob("accepted-*.log")):
            for line in path.read_text().splitlines():
                cid, job_id, plan = line.split(" ")
                accepted[job_id] = (cid, plan)
                plans[cid] = plan
        for path in sorted(self.directory.glob("producer-*.json")):
            summary = json.loads(path.read_text())
            report.failed_enqueue_calls += summary["failed_calls"]
            for name, count in summary["errors"].items():
                report.enqueue_errors[name] = report.enqueue_errors.get(name, 0) + count
        started: Counter[tuple[str, str]] = Counter()
        ended: Counter[tuple[str, str]] = Counter()
        successes: Counter[str] = Counter()
        seen: set[str] = set()
        for path in sorted(self.directory.glob("runs-*.log")):
            for line in path.read_text().splitlines():
                kind, job_id, attempt, _cid = line.split(" ")
                seen.add(job_id)
                if kind == "start":
                    started[job_id, attempt] += 1
                    report.handler_runs += 1
                else:
                    ended[job_id, attempt] += 1
                    if kind == "ok":
                        successes[job_id] += 1
        report.interrupted_runs = sum((started - ended).values())
        report.stored_despite_failed_enqueue = len(seen - set(accepted))
        report.accepted = len(accepted)
        states, dead = self.target.final_states(accepted)
        reasons: Counter[str] = Counter()
        for job_id, (cid, plan) in accepted.items():
            state = states.get(job_id)
            if job_id in dead:
                report.dead_lettered += 1
                reasons[_reason_kind(dead[job_id])] += 1
                if plan in DOOMED_PLANS:
                    report.dead_lettered_by_plan += 1
                else:
                    report.dead_lettered_after_faults += 1
            elif state is JobStatus.COMPLETED:
                report.completed += 1
                if successes[job_id] == 0:
                    report.completed_without_a_successful_run += 1
                if plan in DOOMED_PLANS:
                    report.doomed_but_completed += 1
            else:
                report.lost += 1
                status = "unknown to the backend" if state is None else state.value
                report.lost_examples.append(f"{job_id} ({cid}, {plan}, {status}, {successes[job_id]} ok runs)")
            if successes[job_id] > 1:
                report.run_more_than_once += 1
        report.dead_letter_reasons = dict(reasons)
        report.faults = dict(self.faults)
        for path in sorted(self._worker_logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if " ERROR " in line or "Traceback" in line:
                    report.worker_errors.append(f"{path.stem}: {line}")

