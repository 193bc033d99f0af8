"""The channel between the supervisor and each worker process: JSON lines over a socket pair.

Worker -> supervisor: ``{"type": "ready"}`` once it consumes; ``{"type": "beat", "rss": bytes}`` every
:data:`BEAT_INTERVAL` seconds (with ``"jobs": N`` when it counts them for ``--max-jobs``);
``{"type": "recycle", "reason": "..."}`` when it drains to be replaced (``--max-jobs``, ``--max-memory``).

Supervisor -> worker: ``{"type": "drain"}`` (finish in-flight jobs, then exit: the first signal) and
``{"type": "exit"}`` (release in-flight jobs and exit now: the second signal). Messages rather than
signals, so a worker that also got the signal itself (a terminal's Ctrl-C, systemd's ``KillMode=
control-group``) does not count it twice. End of file on either side means the other is gone: a worker
whose supervisor died drains and exits.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

BEAT_INTERVAL = 1.0

#: Flag of the hidden ``worker`` option naming the channel's file descriptor in a worker process.
CHANNEL_FLAG = "--supervised"
INDEX_FLAG = "--worker-index"
METRICS_FLAG = "--supervised-metrics"
#: Environment variable telling a worker process its index (0..N-1), e.g. for per-worker set-up in APP.
INDEX_ENV = "LSSM_JOBS_WORKER_INDEX"


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at end of file (the other side is gone). Malformed lines are skipped."""
    while True:
        try:
            line = await reader.readline()
        except (ConnectionError, OSError, ValueError):
            return None
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message
