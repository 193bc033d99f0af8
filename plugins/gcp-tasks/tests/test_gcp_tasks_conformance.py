"""The backend conformance suite over Cloud Tasks: the official client over real gRPC to the emulator, the
standalone worker endpoint receiving the emulator's HTTP dispatches, OIDC tokens verified, a sqlite ledger."""

from __future__ import annotations

from lssm_jobs.testing import BackendConformance


class TestCloudTasksConformance(BackendConformance):
    """Priority is not declared (Cloud Tasks has none), so its test is skipped; leases are the ledger's."""

    conformance_timeout = 90.0
