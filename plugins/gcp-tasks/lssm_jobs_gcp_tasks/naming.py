"""Names: lssm-jobs queue names to Cloud Tasks queue ids, and task ids.

**Queues.** A Cloud Tasks queue id is 1 to 100 letters, digits and hyphens. An lssm-jobs queue name maps to
``queue_prefix + name`` when that is a valid id (``"emails"`` -> ``"emails"``, or ``"lssm-emails"`` with
``queue_prefix="lssm-"``). Otherwise every other character becomes ``-`` and 8 hex digits of the name's
SHA-256 are appended, so two names never share a queue (``"mail.high"`` -> ``"mail-high-1c3e0a9b"``); names
too long for the limit are cut and hashed the same way. ``queue_map`` overrides the rule per name, with a
queue id or a full ``projects/P/locations/L/queues/Q`` path.

**Tasks.** A task id is ``<job id>-g<generation>``: deterministic for one job and generation, so a create
retried after a lost reply finds its own task (ALREADY_EXISTS) instead of making a second one; and never
reused, because a job's generations only grow (the ledger issues them), so the ~1 hour during which Cloud
Tasks refuses the name of a deleted or executed task never matters. Dedupe keys do not enter task names: the
ledger decides dedupe, atomically, and frees a key as soon as its job finishes, which a name-based dedupe
could not do within that hour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_INVALID_QUEUE_CHARS = re.compile(r"[^A-Za-z0-9-]")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,400}$")
_QUEUE_PATH = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]{1,100}$")


def queue_id(name: str, prefix: str = "") -> str:
    """The Cloud Tasks queue id of lssm-jobs queue ``name`` (see the module docstring)."""
    candidate = prefix + name
    if _QUEUE_ID.match(candidate):
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    cleaned = _INVALID_QUEUE_CHARS.sub("-", candidate)[: 100 - 9].strip("-") or "q"
    return f"{cleaned}-{digest}"


def check_queue_prefix(prefix: str) -> str:
    """:raises ValueError: the prefix has characters a queue id cannot hold."""
    if prefix and not _QUEUE_ID.match(prefix):
        raise ValueError(f"queue_prefix {prefix!r} may hold only letters, digits and '-'")
    return prefix


class QueueNames:
    """Resolves lssm-jobs queue names to full Cloud Tasks queue paths for one project and location."""

    def __init__(
        self, project: str, location: str, *, prefix: str = "", overrides: Mapping[str, str] | None = None
    ) -> None:
        self.parent = f"projects/{project}/locations/{location}"
        self.prefix = check_queue_prefix(prefix)
        self.overrides: dict[str, str] = {}
        for name, target in (overrides or {}).items():
            if _QUEUE_PATH.match(target):
                self.overrides[name] = target
            elif _QUEUE_ID.match(target):
                self.overrides[name] = f"{self.parent}/queues/{target}"
            else:
                raise ValueError(
                    f"queue_map[{name!r}] = {target!r} is neither a queue id (letters, digits, '-') nor a "
                    "projects/P/locations/L/queues/Q path"
                )
        self._cache: dict[str, str] = {}

    def path(self, name: str) -> str:
        found = self._cache.get(name)
        if found is None:
            found = self.overrides.get(name) or f"{self.parent}/queues/{queue_id(name, self.prefix)}"
            self._cache[name] = found
        return found


def task_id(job_id: str, generation: int) -> str:
    """The task id carrying ``job_id`` at ``generation`` (a hash of the id when it is not a valid task id)."""
    base = (
        job_id
        if _TASK_ID.match(job_id) and len(job_id) <= 380
        else hashlib.sha256(job_id.encode()).hexdigest()
    )
    return f"{base}-g{generation}"
