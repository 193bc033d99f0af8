"""The sqlite backend's cross-process doorbell: rings, stale sockets of killed processes, the fallback poll,
and `lssm-jobs worker` processes woken by producer processes (one worker SIGKILLed and restarted).

The workers run with ``poll_interval=60``: a job that runs within the tests' deadlines (far shorter) was
found because the doorbell woke its worker, not by a poll.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lssm_jobs.backends.base import OutgoingJob
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.backends.sqlite_doorbell import Doorbell, DoorbellListener, doorbell_directory
from lssm_jobs.testing import opened, run_async, wait_until
from lssm_jobs.testing.helpers import wait_until_sync

TESTS = Path(__file__).parent
APP = TESTS / "sqlite_wake_app.py"
LSSM_JOBS = Path(sys.executable).parent / "lssm-jobs"
pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="the doorbell needs Unix sockets")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


def _sockets(database: Path) -> list[str]:
    directory = Path(doorbell_directory(database))
    return sorted(path.name for path in directory.glob("*.sock")) if directory.is_dir() else []


def _job() -> OutgoingJob:
    now = time.time()
    return OutgoingJob(
        id=uuid.uuid4().hex,
        type="t",
        queue="default",
        priority=0,
        run_at=now,
        created_at=now,
        dedupe_key=None,
        body=b"{}",
    )


# -- the doorbell itself ----------------------------------------------------------------------------------


def test_the_directory_is_beside_the_file_or_named_by_its_hash(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="w"))
    try:
        assert doorbell_directory(short / "jobs.db") == os.path.realpath(short / "jobs.db") + "-wake"
    finally:
        short.rmdir()
    deep = tmp_path / ("d" * 90) / "jobs.db"  # too long for a socket address beside it
    directory = doorbell_directory(deep)
    assert Path(directory).parent == Path(tempfile.gettempdir())
    assert Path(directory).name.startswith("lssm-jobs-wake-")
    assert doorbell_directory(deep) == directory and doorbell_directory(tmp_path / "other.db") != directory


def test_a_ring_wakes_the_listener_and_a_dead_socket_is_deleted() -> None:
    short = tempfile.mkdtemp(prefix="w")  # socket addresses are short: not under pytest's long tmp_path
    directory = os.path.join(short, "jobs.db-wake")
    rings: list[float] = []
    listener = DoorbellListener(directory, lambda: rings.append(time.monotonic()), mode=0o640)
    assert listener.start() and listener.listening
    assert listener.path is not None and (os.stat(listener.path).st_mode & 0o777) == 0o640
    # What a SIGKILLed process leaves: a socket file nobody is bound to.
    dead = os.path.join(directory, "999999999-01234567.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(dead)
    doorbell = Doorbell(directory)
    try:
        # A process does not ring itself (its own leases are woken in process): the listener is skipped.
        assert doorbell.ring() == 0 and not os.path.exists(dead)
        os.rename(listener.path, os.path.join(directory, "1-feedface.sock"))  # as another process's
        listener.path = os.path.join(directory, "1-feedface.sock")
        assert doorbell.ring() == 1
        wait_until_sync(lambda: rings, message="the listener was rung")
    finally:
        listener.stop()
        doorbell.close()
    assert not os.path.exists(directory)  # stop unbinds, and the last one removes the directory
    os.rmdir(short)


def test_a_listener_sweeps_dead_sockets_when_it_starts_and_stops() -> None:
    short = tempfile.mkdtemp(prefix="w")
    directory = os.path.join(short, "jobs.db-wake")
    os.mkdir(directory)
    for name in ("999999998-01234567.sock", "999999999-01234567.sock"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
            gone.bind(os.path.join(directory, name))  # left behind by killed processes
    other = DoorbellListener(directory, lambda: None)
    assert other.start()
    os.rename(other.path or "", os.path.join(directory, "1-feedface.sock"))  # as another process's
    other.path = os.path.join(directory, "1-feedface.sock")
    assert sorted(os.listdir(directory)) == ["1-feedface.sock"]  # the dead ones are gone, it is not
    mine = DoorbellListener(directory, lambda: None)
    assert mine.start()
    mine.stop()
    assert os.listdir(directory) == ["1-feedface.sock"]  # a live listener is never swept
    other.stop()
    assert not os.path.exists(directory)
    os.rmdir(short)


@pytest.fixture
def no_doorbell(database: Path) -> Iterator[None]:
    """A file where the database's doorbell directory would be: no socket can be bound."""
    blocker = Path(doorbell_directory(database))
    blocker.write_text("not a directory")
    try:
        yield
    finally:
        blocker.unlink()


@run_async()
async def test_without_a_doorbell_a_waiting_lease_polls_data_version(
    database: Path, no_doorbell: None
) -> None:
    async with opened(SqliteBackend(database)) as consumer:
        started = time.monotonic()
        waiting = asyncio.ensure_future(consumer.lease(queues=None, limit=1, lease_ms=1_000, wait=60.0))
        await wait_until(lambda: consumer._hub.waiting(), message="the lease is waiting")
        assert consumer._doorbell is False
        job = _job()
        # Another process's push: no in-process notification, no doorbell.
        script = (
            "import asyncio, sys, time\n"
            "from lssm_jobs.backends.sqlite import SqliteBackend\n"
            "from lssm_jobs.backends.base import OutgoingJob\n"
            "async def main():\n"
            "    backend = SqliteBackend(sys.argv[1]); await backend.open()\n"
            "    now = time.time()\n"
            "    await backend.push([OutgoingJob(id=sys.argv[2], type='t', queue='default', priority=0,\n"
            "        run_at=now, created_at=now, dedupe_key=None, body=b'{}')])\n"
            "    await backend.close()\n"
            "asyncio.run(main())\n"
        )
        pushed = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(database), job.id)
        assert await pushed.wait() == 0
        leased = await asyncio.wait_for(waiting, 30)  # far less than the lease's wait of 60 s
        assert [delivery.id for delivery in leased] == [job.id]
        assert time.monotonic() - started < 30


@run_async()
async def test_a_backend_binds_one_socket_while_it_leases_and_unbinds_on_close(database: Path) -> None:
    async with opened(SqliteBackend(database)) as first, opened(SqliteBackend(database)) as second:
        await first.push([_job()])
        assert _sockets(database) == []  # producing alone binds nothing
        await first.lease(queues=None, limit=1, lease_ms=1_000, wait=0)
        await second.lease(queues=None, limit=1, lease_ms=1_000, wait=0)
        assert first._doorbell is True and len(_sockets(database)) == 1  # one per process and file
        await first.close()
        assert len(_sockets(database)) == 1  # the second still leases
    assert _sockets(database) == []


# -- worker processes started by the CLI -------------------------------------------------------------------


class _Cluster:
    """`lssm-jobs worker` processes and producer processes on one file; kills what is left at the end."""

    def __init__(self, directory: Path, database: Path) -> None:
        self.directory = directory
        self.database = database
        self.runs = directory / "runs"
        self.runs.mkdir()
        self.started: list[subprocess.Popen[bytes]] = []

    def _environment(self) -> dict[str, str]:
        paths = [str(TESTS), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "WAKE_RUNS": str(self.runs), "PYTHONPATH": os.pathsep.join(filter(None, paths))}

    def _start(self, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"proc-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._environment())
        log.close()
        self.started.append(process)
        return process

    def worker(self) -> subprocess.Popen[bytes]:
        return self._start(
            [
                str(LSSM_JOBS),
                "worker",
                "sqlite_wake_app:handlers",
                "--url",
                f"sqlite:///{self.database}",
                "-o",
                "poll_interval=60",
                "--concurrency",
                "2",
                "--no-progress",
            ]
        )

    def enqueue(self, *labels: str, sync: bool = False) -> None:
        command = [sys.executable, str(APP), "enqueue", str(self.database), *labels]
        producer = self._start([*command, "--sync"] if sync else command)
        assert producer.wait(60) == 0, self.logs()

    def ran(self, label: str) -> list[tuple[int, int]]:
        """(worker pid, attempt) of each run of the job ``label``."""
        return [
            (int(pid), int(attempt))
            for _, pid, attempt in (path.name.split(".") for path in self.runs.glob(f"{label}.*"))
        ]

    def wait_ran(self, *labels: str, timeout: float = 40.0) -> None:
        """Wait for the jobs to run: far sooner than the workers' poll_interval of 60 s, so only a ring
        can have woken them (the margin absorbs a loaded machine)."""
        try:
            wait_until_sync(
                lambda: all(self.ran(label) for label in labels),
                timeout=timeout,
                message=f"{labels} ran",
            )
        except TimeoutError:
            raise AssertionError(f"{labels} did not all run; {self.logs()}") from None

    def wait_sockets(self, count: int) -> list[str]:
        try:
            wait_until_sync(  # a worker process starting on a loaded machine takes seconds
                lambda: len(_sockets(self.database)) == count, message=f"{count} sockets", timeout=60
            )
        except TimeoutError:
            raise AssertionError(f"sockets {_sockets(self.database)}; {self.logs()}") from None
        return _sockets(self.database)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.directory.glob("proc-*.log"))
        )

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def cluster(tmp_path: Path, database: Path) -> Iterator[_Cluster]:
    manager = _Cluster(tmp_path, database)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.mark.slow
def test_producer_processes_wake_cli_workers_and_a_killed_worker_is_replaced(cluster: _Cluster) -> None:
    first, second = cluster.worker(), cluster.worker()
    sockets = cluster.wait_sockets(2)
    assert sorted(int(name.split("-")[0]) for name in sockets) == sorted([first.pid, second.pid])

    # Idle workers polling every 60 s run jobs from another process within the deadline: the doorbell.
    cluster.enqueue("a1", "a2")
    cluster.enqueue("a3", sync=True)
    cluster.wait_ran("a1", "a2", "a3")

    # SIGKILL: the socket stays behind, nobody bound to it; the next producer's ring deletes it.
    first.kill()
    assert first.wait(10) == -signal.SIGKILL
    assert any(name.startswith(f"{first.pid}-") for name in _sockets(cluster.database))
    cluster.enqueue("b1")
    assert [name for name in _sockets(cluster.database) if name.startswith(f"{first.pid}-")] == []
    cluster.wait_ran("b1")
    assert cluster.ran("b1") == [(second.pid, 1)]

    # A restarted worker binds a new socket and is woken like the others; with the other worker gone
    # (a graceful stop unbinds its socket), it runs everything.
    restarted = cluster.worker()
    cluster.wait_sockets(2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, cluster.logs()
    assert [int(name.split("-")[0]) for name in cluster.wait_sockets(1)] == [restarted.pid]
    cluster.enqueue("c1", "c2", sync=True)
    cluster.wait_ran("c1", "c2")
    assert cluster.ran("c1") == [(restarted.pid, 1)] and cluster.ran("c2") == [(restarted.pid, 1)]

    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(30) == 0, cluster.logs()
    assert not os.path.exists(doorbell_directory(cluster.database))
    runs = sorted(path.name.split(".")[0] for path in cluster.runs.iterdir())
    assert runs == ["a1", "a2", "a3", "b1", "c1", "c2"]  # each exactly once
