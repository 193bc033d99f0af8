"""An example third-party backend for lssm-jobs, used by its tests and by docs/writing-a-backend.md."""

from __future__ import annotations

from lssm_jobs_example.backend import HttpPushBackend, PushService

__all__ = ["HttpPushBackend", "PushService"]
