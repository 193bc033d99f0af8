"""The backend conformance suite over the Pub/Sub backend, on the session's Pub/Sub server (the Java
emulator where installed, else our own), with an in-memory ledger."""

from __future__ import annotations

from lssm_jobs.testing import BackendConformance


class TestPubSubConformance(BackendConformance):
    conformance_timeout = 90.0
