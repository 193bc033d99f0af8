"""Liveness and readiness of a worker (or of a supervisor and its worker processes).

* **Liveness** (``/livez``): the event loop is responsive. A ticker task on the loop records the time
  every second; the probe (answered on the HTTP server's thread) fails when the last tick is older than
  ``stall_timeout``, e.g. an ``async`` handler blocking the loop, which also stops lease heartbeats. A
  supervisor adds: every worker process sent a heartbeat lately. Kubernetes restarts a container whose
  liveness fails.
* **Readiness** (``/readyz``): the worker consumes and its backend answers (a point read of a job id that
  does not exist, bounded by ``check_timeout``; cached for a second so probes never load the backend). It
  fails while starting and while draining, so a load balancer or rollout stops counting on it.

Both answer JSON: ``{"status": "ok"|"fail", "checks": {name: "ok" or what is wrong}}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.observability.http import Route

#: A check returns None when fine, else what is wrong (one short line).
Check = Callable[[], "str | None"]
PROBE_JOB_ID = "lssm-jobs-readiness-probe"


async def backend_reachable(backend: QueueBackend, timeout: float) -> str | None:
    """None when ``backend`` answers a point read within ``timeout`` seconds, else why not."""
    try:
        await asyncio.wait_for(backend.get(PROBE_JOB_ID), timeout)
    except asyncio.TimeoutError:
        return f"the backend did not answer within {timeout:g}s"
    except Exception as error:
        from lssm_jobs.observability.logs import redact

        return redact(f"the backend is unreachable: {type(error).__name__}: {str(error)[:200]}")
    return None


class Health:
    """Liveness and readiness state, updated on the event loop and read from the HTTP server's threads.

    :param backend_check: a coroutine function returning None when the backend is reachable, else why not.
    :param live_checks: extra liveness checks (run on the HTTP thread; keep them to reading state).
    :param ready_checks: extra readiness checks, likewise.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        backend_check: Callable[[], Coroutine[Any, Any, str | None]],
        live_checks: Sequence[tuple[str, Check]] = (),
        ready_checks: Sequence[tuple[str, Check]] = (),
        stall_timeout: float = 10.0,
        check_timeout: float = 5.0,
    ) -> None:
        self.loop = loop
        self.backend_check = backend_check
        self.live_checks = list(live_checks)
        self.ready_checks = list(ready_checks)
        self.stall_timeout = stall_timeout
        self.check_timeout = check_timeout
        self.state = "starting"  # starting -> running -> draining
        self.last_tick = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None
        self._cached: tuple[float, str | None] = (-1.0, None)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the ticker (call on the loop)."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="lssm-jobs liveness ticker")

    async def _tick(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)

    # -- probes (HTTP threads) ----------------------------------------------------------------------------

    def liveness(self) -> tuple[int, dict[str, str]]:
        checks: dict[str, str] = {}
        stalled = time.monotonic() - self.last_tick
        checks["event_loop"] = (
            "ok"
            if stalled < self.stall_timeout
            else f"no tick for {stalled:.0f}s (the event loop is blocked)"
        )
        for name, check in self.live_checks:
            checks[name] = check() or "ok"
        return (200 if all(value == "ok" for value in checks.values()) else 503), checks

    def readiness(self) -> tuple[int, dict[str, str]]:
        checks: dict[str, str] = {"state": "ok" if self.state == "running" else self.state}
        for name, check in self.ready_checks:
            checks[name] = check() or "ok"
        checks["backend"] = self._backend() or "ok"
        return (200 if all(value == "ok" for value in checks.values()) else 503), checks

    def _backend(self) -> str | None:
        with self._lock:
            checked_at, problem = self._cached
            if time.monotonic() - checked_at < 1.0:
                return problem
            future: concurrent.futures.Future[str | None] = asyncio.run_coroutine_threadsafe(
                self.backend_check(), self.loop
            )
            try:
                problem = future.result(self.check_timeout + 1.0)
            except concurrent.futures.TimeoutError:
                future.cancel()
                problem = "no answer from the event loop (blocked?)"
            except Exception as error:
                problem = f"check failed: {type(error).__name__}"
            self._cached = (time.monotonic(), problem)
            return problem

    def routes(self) -> dict[str, Route]:
        return {
            "/livez": lambda: _json(*self.liveness()),
            "/healthz": lambda: _json(*self.liveness()),
            "/readyz": lambda: _json(*self.readiness()),
        }


def _json(status: int, checks: dict[str, str]) -> tuple[int, str, bytes]:
    body = json.dumps({"status": "ok" if status == 200 else "fail", "checks": checks}) + "\n"
    return status, "application/json", body.encode()
