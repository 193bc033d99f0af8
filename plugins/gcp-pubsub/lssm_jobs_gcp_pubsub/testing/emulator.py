"""Start a local Pub/Sub server for tests and benchmarks: the official Java emulator where it is installed,
or this package's own test server (:mod:`lssm_jobs_gcp_pubsub.testing.server`), each on 127.0.0.1 with an
OS-assigned port.

The Java emulator comes with the Google Cloud CLI (Debian package ``google-cloud-cli-pubsub-emulator``);
it is started directly (``cloud-pubsub-emulator --host=127.0.0.1 --port=PORT``), never through ``gcloud``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Literal

#: Where the Debian package puts the launcher; ``LSSM_JOBS_PUBSUB_EMULATOR`` names another.
JAVA_EMULATOR_PATHS = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)
EMULATOR_ENV = "LSSM_JOBS_PUBSUB_EMULATOR"

ServerKind = Literal["java", "own"]


def java_emulator_path() -> str | None:
    """The Java emulator's launcher, or None when it is not installed (and ``java`` is needed too)."""
    configured = os.environ.get(EMULATOR_ENV)
    if configured:
        return configured if Path(configured).exists() else None
    if shutil.which("java") is None:
        return None
    for candidate in JAVA_EMULATOR_PATHS:
        if Path(candidate).exists():
            return candidate
    return shutil.which("cloud-pubsub-emulator")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class LocalPubSub:
    """A Pub/Sub server process of ours: ``address`` is ``127.0.0.1:PORT`` (what ``PUBSUB_EMULATOR_HOST``
    takes); :meth:`stop` ends it (``kill=True``: SIGKILL)."""

    def __init__(self, kind: ServerKind, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> LocalPubSub:
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path = self.directory / f"pubsub-{self.kind}.log"
        self._log = log_path.open("wb")
        if self.kind == "java":
            launcher = java_emulator_path()
            if launcher is None:
                raise RuntimeError("the Java Pub/Sub emulator is not installed")
            port = free_port()
            self.process = subprocess.Popen(
                [launcher, "--host=127.0.0.1", f"--port={port}"],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while not _answers(port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop(kill=True)
                    raise RuntimeError(
                        f"the Java Pub/Sub emulator did not start:\n{log_path.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.05)
            self.address = f"127.0.0.1:{port}"
            return self
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lssm_jobs_gcp_pubsub.testing.server", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            self.stop(kill=True)
            raise RuntimeError(f"the Pub/Sub test server did not start: {line!r}")
        self.address = line.split()[1]
        return self

    def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # The Java launcher is a shell script that starts java: signal the whole process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
