"""A third-party backend, installed as its own distribution, is found by its entry-point name alone and
passes the conformance suite. It is an HTTP push backend, which shows the backend contract fits push
delivery (the shape of Google Cloud Tasks) as well as leasing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.plugins import get_plugins
from lssm_jobs.queue import open_queue
from lssm_jobs.testing import BackendConformance, run_async

NAME = "example-push"


def _require_installed() -> None:
    if NAME not in get_plugins().queue_backends():
        pytest.skip(
            "the example plugin is not installed: pip install -e tests/example_plugin (nox does this)"
        )


@pytest.fixture
def lssm_jobs_backend_factory() -> Callable[[], QueueBackend]:
    _require_installed()
    spec = get_plugins().queue_backend(NAME)
    namespace = uuid.uuid4().hex
    return lambda: spec.factory(namespace=namespace)


class TestExamplePushBackend(BackendConformance):
    pass


def test_found_by_entry_point_name_only() -> None:
    _require_installed()
    info = next(p for p in get_plugins().plugins() if p.name == NAME)
    assert not info.builtin
    assert info.distribution == "lssm-jobs-example"
    assert info.provides == {"backends": [NAME]}


@run_async()
async def test_open_queue_by_name_runs_a_job() -> None:
    _require_installed()
    queue = open_queue(NAME, namespace=uuid.uuid4().hex, sinks=[], poll_interval=0.05)
    done: list[str] = []
    queue.register("example.hello", lambda job: done.append(job.payload["who"]))
    async with queue:
        await queue.enqueue("example.hello", {"who": "world"})
        await queue.start()
        from lssm_jobs.testing import wait_until

        await wait_until(lambda: done)
    assert done == ["world"]


@run_async()
async def test_pushed_job_whose_worker_died_is_pushed_again() -> None:
    _require_installed()
    import asyncio

    from lssm_jobs.testing import wait_until
    from lssm_jobs_example.backend import PushService, _Endpoint, _read_request

    namespace = uuid.uuid4().hex
    service = PushService.named(namespace)
    received = asyncio.Event()

    async def dying_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        received.set()
        writer.close()  # gone without settling, like a worker killed mid-request

    server = await asyncio.start_server(dying_worker, "127.0.0.1", 0)
    endpoint = _Endpoint(host="127.0.0.1", port=server.sockets[0].getsockname()[1], queues=None, capacity=1)
    queue = open_queue(NAME, namespace=namespace, sinks=[], lease_ms=300)
    attempts: list[int] = []
    queue.register("example.once", lambda job: attempts.append(job.attempt))
    async with queue:
        service.attach(endpoint, lease_ms=300)
        job = await queue.enqueue("example.once", {})
        await asyncio.wait_for(received.wait(), 10)
        await service.detach(endpoint)
        server.close()
        await queue.start()
        await wait_until(lambda: attempts, message="job pushed again")
        stored = await queue.get(job.id)
        assert stored is not None
    assert attempts == [2]
