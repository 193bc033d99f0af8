"""The harness's side of a benchmark worker process (run.py and sqlite.py start them).

The worker runs in a session of its own (stopped with its children), its output goes to ``<lib>-<mode>.log``,
and it reports through files, as adapters/common.py's ``Recorder`` writes them: ``<lib>-<mode>.json``, its
result, once it has seen ``count`` jobs, and ``<lib>-<mode>.ready``, created when it ran a warm-up job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def environment(**extra: str) -> dict[str, str]:
    """This process's environment with bench/ first on ``PYTHONPATH`` (for ``adapters``), and ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class WorkerProcess:
    """A worker subprocess recording ``count`` jobs in ``mode`` (``drain`` or ``latency``)."""

    #: Seconds between checks for a file the worker writes.
    poll_interval = 0.01
    #: Seconds the worker has to exit after SIGTERM before it is killed.
    stop_timeout = 15.0

    def __init__(
        self, command: list[str], env: Mapping[str, str], lib: str, mode: str, count: int, directory: Path
    ) -> None:
        self.result = directory / f"{lib}-{mode}.json"
        self.ready = directory / f"{lib}-{mode}.ready"
        self.log = directory / f"{lib}-{mode}.log"
        for path in (self.result, self.ready):
            path.unlink(missing_ok=True)
        recorder = {
            "BENCH_MODE": mode,
            "BENCH_COUNT": str(count),
            "BENCH_RESULT": str(self.result),
            "BENCH_READY": str(self.ready),
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, env={**env, **recorder}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_for(self, path: Path, timeout: float) -> None:
        """Until the worker has written ``path``; raises if it exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not write {path.name} within {timeout}s: {self.tail()}")
            time.sleep(self.poll_interval)

    def wait_result(self, timeout: float) -> dict[str, Any]:
        self.wait_for(self.result, timeout)
        data: dict[str, Any] = json.loads(self.result.read_text())
        return data

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far (Linux: from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the worker's session; SIGKILL when it has not exited within ``stop_timeout``."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
