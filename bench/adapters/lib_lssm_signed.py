"""lssm-jobs on Redis with signed envelopes (``signing_key=``: HMAC-SHA256 on enqueue, verified by the
worker): run beside ``lssm`` (``python bench/run.py --signing``) it shows what signing costs per job."""

from __future__ import annotations

from typing import Any

from adapters import lib_lssm

#: A fixed benchmark key (32 characters, like ``secrets.token_urlsafe(24)``).
SIGNING_KEY = "bench-signing-key-0123456789abcd"


class Adapter(lib_lssm.Adapter):
    name = "lssm-jobs, signed"
    notes = "as lssm-jobs, with signing_key= (HMAC-SHA256 signed on enqueue, verified before each run)"
    queue_options: dict[str, Any] = {"signing_key": SIGNING_KEY}
