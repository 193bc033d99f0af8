"""Run ``lssm-jobs`` commands as real subprocesses in tests: read their output as it comes, wait for a line
with a deadline, send signals, fetch their HTTP endpoints.

Example::

    worker = CliProcess(["worker", "app:handlers", "--processes", "2", "--url", url], cwd=tmp_path)
    worker.wait_for(r"worker 1 \\(pid \\d+\\) is consuming")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lssm_jobs.jobs import Job
    from lssm_jobs.queue import JobQueue

CLI = [sys.executable, "-m", "lssm_jobs.cli"]


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lssm_jobs.cli *args`` to completion in ``cwd`` (importable, for APP modules, with
    ``env`` added to the environment) and return what it printed, as text."""
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})},
    )


class CliProcess:
    """``python -m lssm_jobs.cli *args`` in ``cwd`` (importable, for APP modules), stdout and stderr read
    line by line on threads. Use as a context manager, or call :meth:`kill` at the end."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        global_args: Sequence[str] = ("--log-level", "INFO"),
    ) -> None:
        environment = {**os.environ, "PYTHONPATH": str(cwd), **(env or {})}
        self.args = list(args)
        self.process = subprocess.Popen(
            [*CLI, *global_args, *args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join([*self.stderr, *self.stdout])

    def wait_for(
        self, pattern: str, *, timeout: float = 30.0, count: int = 1, stream: str = "stderr"
    ) -> list[str]:
        """Wait until ``count`` lines of ``stream`` match ``pattern`` (a regex); return the matches' lines.

        :raises TimeoutError: not within ``timeout`` (the message holds the output so far).
        """
        regex = re.compile(pattern)
        lines = self.stderr if stream == "stderr" else self.stdout
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in lines if regex.search(line)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no {count} line(s) matching {pattern!r} within {timeout}s:\n{self.tail()}"
                    )
                if self.process.poll() is not None and not any(reader.is_alive() for reader in self._readers):
                    raise RuntimeError(
                        f"the process exited with {self.process.returncode} before printing {pattern!r}:\n"
                        f"{self.tail()}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def tail(self, lines: int = 60) -> str:
        return "\n".join([*self.stderr, *self.stdout][-lines:])

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit status, waiting up to ``timeout`` seconds (output fully read)."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for reader in self._readers:
            reader.join(5)

    def served_url(self, path: str, *, timeout: float = 30.0) -> str:
        """The URL of ``path`` on the endpoint the command announced (``serving ... on http://...``)."""
        line = self.wait_for(rf"serving .*{re.escape(path)}.* on http://", timeout=timeout)[0]
        match = re.search(r"(http://[\d.]+:\d+)", line)
        assert match is not None, line
        return match.group(1) + path


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """``(status, body)`` of a GET, HTTP errors included (a 503 is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def http_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    status, body = http_get(url, timeout=timeout)
    return status, json.loads(body)


#: The job type of :func:`run_crash_test_worker`.
CRASH_TEST_TYPE = "crash.test"


async def run_crash_test_worker(queue: JobQueue, markers: Path) -> None:
    """Run ``queue`` as the worker of a crash test until SIGTERM: its ``crash.test`` handler writes
    ``markers/started-<job id>-<attempt>`` when a job starts; on the job's first attempt it then hangs (so the
    test can SIGKILL the process mid-job), on later attempts it writes ``markers/done-<job id>``.

    Example (the body of a worker script the test starts with :mod:`subprocess`)::

        asyncio.run(run_crash_test_worker(open_queue("redis", url=url, sinks=[]), Path(sys.argv[1])))
    """

    async def handler(job: Job[Any]) -> None:
        (markers / f"started-{job.id}-{job.attempt}").touch()
        if job.attempt == 1:
            await asyncio.sleep(3600)
        (markers / f"done-{job.id}").touch()

    queue.register(CRASH_TEST_TYPE, handler)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with queue:
        await queue.run(stop)
