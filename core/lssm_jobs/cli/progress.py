"""Live progress for long-running commands: a self-updating line on a terminal, periodic lines otherwise."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TextIO

from lssm_jobs.events import Event, ScheduleFired
from lssm_jobs.queue import JobQueue


class Progress:
    """Counts lifecycle events of a queue and shows them while a command runs."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        label: str,
        stream: TextIO | None = None,
        interval: float | None = None,
        as_json: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.as_json = as_json  # one JSON object per line instead of the text line
        self.tty = self.stream.isatty() and not as_json
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.label = label
        self.counts = {
            "enqueued": 0,
            "started": 0,
            "completed": 0,
            "retrying": 0,
            "failed": 0,
            "dead_lettered": 0,
            "timed_out": 0,
            "fired": 0,
        }
        self.started_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = queue.on("*", self._count)
        self._last_line = ""

    def _count(self, event: Event) -> None:
        if isinstance(event, ScheduleFired):
            self.counts["fired"] += 1
            return
        key = event.name.partition(".")[2]
        if key in self.counts:
            self.counts[key] += 1

    @property
    def rate(self) -> float:
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        return self.counts["completed"] / elapsed

    def line(self) -> str:
        c = self.counts
        elapsed = time.monotonic() - self.started_at
        active = c["started"] - c["completed"] - c["retrying"] - c["failed"]
        parts = [
            f"{self.label}",
            f"{elapsed:5.1f}s",
            f"completed {c['completed']}",
            f"running {max(active, 0)}",
            f"retried {c['retrying']}",
            f"dead {c['dead_lettered']}",
        ]
        if c["fired"]:
            parts.append(f"schedule ticks {c['fired']}")
        parts.append(f"{self.rate:,.0f} jobs/s")
        return " | ".join(parts)

    def snapshot(self) -> dict[str, object]:
        """The counts as data (``--json`` progress lines)."""
        return {
            "label": self.label,
            "elapsed_s": round(time.monotonic() - self.started_at, 3),
            **self.counts,
            "jobs_per_s": round(self.rate, 3),
        }

    def show(self) -> None:
        if self.as_json:
            self.stream.write(json.dumps(self.snapshot()) + "\n")
            self.stream.flush()
            return
        line = self.line()
        if self.tty:
            padding = " " * max(0, len(self._last_line) - len(line))
            self.stream.write(f"\r{line}{padding}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_line = line

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.show()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.show()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
