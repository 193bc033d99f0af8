"""Fixtures of the Pub/Sub plugin's tests: a real Pub/Sub server on 127.0.0.1, started once per session.

Which server: the official Java emulator (Debian package ``google-cloud-cli-pubsub-emulator``) where it is
installed, else the project's own test server (``lssm_jobs_gcp_pubsub.testing.server``), which speaks the
same gRPC API through the official client's message classes. ``LSSM_JOBS_PUBSUB_SERVER=java|own`` picks one.
The parity tests use both and skip their Java half where the emulator is missing: that is the one skip CI
allows (see ``conftest.py`` at the repository root and ``.ci/run``), since Debian 13 images lack the
emulator and no registry we may use ships it.

Every test gets its own prefix, so its topics and subscriptions are new: the Java emulator stops
delivering on a subscription whose streaming pull was cancelled (seen in every trial), so a subscription is
never reused across tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.ledger import JobLedger, MemoryLedger, MemoryLedgerStore
from lssm_jobs_gcp_pubsub import PubSubBackend
from lssm_jobs_gcp_pubsub.testing.emulator import LocalPubSub, java_emulator_path

PROJECT = "lssm-test"
SERVER_ENV = "LSSM_JOBS_PUBSUB_SERVER"
#: The one skip allowed on CI (the root conftest.py lists it): the Java emulator is not installable here.
JAVA_MISSING = "Java Pub/Sub emulator not installed"


def _start(kind: str, directory: Path) -> LocalPubSub:
    return LocalPubSub(kind, directory).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pubsub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPubSub]:
    """The server the backend tests run against: the Java emulator where installed, else our own."""
    wanted = os.environ.get(SERVER_ENV) or ("java" if java_emulator_path() else "own")
    if wanted == "java" and java_emulator_path() is None:
        pytest.fail(f"{SERVER_ENV}=java but the Java Pub/Sub emulator is not installed")
    server = _start(wanted, tmp_path_factory.mktemp(f"pubsub-{wanted}"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def own_pubsub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPubSub]:
    server = _start("own", tmp_path_factory.mktemp("pubsub-own"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def java_pubsub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPubSub]:
    if java_emulator_path() is None:
        pytest.skip(f"{JAVA_MISSING} (Debian package google-cloud-cli-pubsub-emulator)")
    server = _start("java", tmp_path_factory.mktemp("pubsub-java"))
    yield server
    server.stop()


@pytest.fixture(params=["own", "java"])
def any_pubsub_server(request: pytest.FixtureRequest) -> LocalPubSub:
    """Each server in turn (the parity tests): ours, then the Java emulator."""
    server: LocalPubSub = request.getfixturevalue(f"{request.param}_pubsub_server")
    return server


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def make_ledger() -> Callable[[], JobLedger]:
    """Makes the ledger instances of one test: in memory, sharing one store (like one database)."""
    store = MemoryLedgerStore()
    return lambda: MemoryLedger(store=store)


def backend_factory(
    server: LocalPubSub, make_ledger: Callable[[], JobLedger]
) -> Callable[..., PubSubBackend]:
    """Makes unopened backends on ``server``, all with one new prefix (fresh topics and subscriptions)."""
    prefix = unique_prefix()

    def make(**options: Any) -> PubSubBackend:
        settings: dict[str, Any] = {
            "project": PROJECT,
            "prefix": prefix,
            "emulator_host": server.address,
            "ledger": make_ledger(),
        }
        settings.update(options)
        return PubSubBackend(**settings)

    return make


@pytest.fixture
def pubsub_backend_factory(
    pubsub_server: LocalPubSub, make_ledger: Callable[[], JobLedger]
) -> Callable[..., PubSubBackend]:
    """Makes unopened backends on the session's server, with this test's own prefix."""
    return backend_factory(pubsub_server, make_ledger)


@pytest.fixture
def lssm_jobs_backend_factory(
    pubsub_backend_factory: Callable[..., PubSubBackend],
) -> Callable[[], QueueBackend]:
    return lambda: pubsub_backend_factory()
