"""Cloud Tasks backend throughput through the emulator: single and bulk enqueue rate, end-to-end jobs/s.

    python bench/gcp_tasks.py [--single 300] [--bulk 2000] [--jobs 1000] [--ledger sqlite|memory]

Starts ``gcloud-tasks-emulator`` (through the tests' loopback wrapper, from the virtualenv ``nox -s tests``
makes, or ``LSSM_JOBS_TASKS_EMULATOR_PYTHON``) and one worker endpoint on free loopback ports. What limits
the figures: every task is one CreateTask call (Cloud Tasks has no batch create; ``enqueue_many`` keeps
``enqueue_concurrency`` of them in flight), each job costs three ledger writes (record, claim, settle), and
the emulator dispatches with one Python thread and one new HTTP connection per task. The real service's
limits are per queue: 500 dispatches/s by default (``max_dispatches_per_second``) and its create quota.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "gcp-tasks"))

from tests.emulator_support import (  # noqa: E402 - after the path set-up above
    LOCATION,
    PROJECT,
    SERVICE_ACCOUNT,
    OidcKeys,
    TasksEmulator,
    emulator_python,
    free_port,
)


async def run(
    options: argparse.Namespace, emulator: TasksEmulator, keys: OidcKeys, directory: Path
) -> dict[str, Any]:
    from lssm_jobs.queue import JobQueue
    from lssm_jobs_gcp_tasks import CloudTasksBackend

    port = free_port()
    prefix = f"bench{int(time.time())}-"
    ledger_options = (
        {"path": str(directory / "ledger.db")} if options.ledger == "sqlite" else {"namespace": "bench"}
    )

    def backend() -> CloudTasksBackend:
        return CloudTasksBackend(
            project=PROJECT,
            location=LOCATION,
            url=f"http://127.0.0.1:{port}/",
            port=port,
            ledger=options.ledger,
            ledger_options=ledger_options,
            queue_prefix=prefix,
            create_queues=True,
            max_concurrent_dispatches=options.concurrency,
            api_endpoint=emulator.address,
            insecure=True,
            oidc_service_account=SERVICE_ACCOUNT,
            oidc_certs_url=keys.url,
        )

    results: dict[str, Any] = {"ledger": options.ledger}
    async with JobQueue(backend(), sinks=[]) as producer:
        await producer.enqueue("bench.warmup", {}, delay_ms=3_600_000)
        started = time.perf_counter()
        for index in range(options.single):
            await producer.enqueue("bench.single", {"i": index}, delay_ms=3_600_000)
        results["single enqueue /s"] = options.single / (time.perf_counter() - started)
        started = time.perf_counter()
        await producer.enqueue_many([("bench.bulk", {"i": i}) for i in range(options.bulk)])
        results["bulk enqueue /s"] = options.bulk / (time.perf_counter() - started)
    emulator.delete_queues(prefix)

    done = 0
    finished = asyncio.Event()

    async def handler(job: Any) -> None:
        nonlocal done
        done += 1
        if done == options.jobs:
            finished.set()

    async with JobQueue(backend(), sinks=[], concurrency=options.concurrency) as worker:
        worker.register("bench.e2e", handler)
        await worker.start()
        started = time.perf_counter()
        await worker.enqueue_many([("bench.e2e", {"i": i}) for i in range(options.jobs)])
        await asyncio.wait_for(finished.wait(), options.timeout)
        results["end-to-end jobs/s"] = options.jobs / (time.perf_counter() - started)
    emulator.delete_queues(prefix)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=300, help="jobs enqueued one at a time")
    parser.add_argument("--bulk", type=int, default=2000, help="jobs enqueued with one enqueue_many")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs run end to end")
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency and queue dispatches")
    parser.add_argument("--ledger", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    options = parser.parse_args()
    python = emulator_python()
    if python is None:
        print(
            "gcloud-tasks-emulator not found: run `nox -s tests` first (it makes its virtualenv)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as folder:
        keys = OidcKeys(Path(folder))
        emulator = TasksEmulator(python, keys)
        try:
            results = asyncio.run(run(options, emulator, keys, Path(folder)))
        finally:
            emulator.stop()
            keys.close()
    print(
        f"Cloud Tasks through gcloud-tasks-emulator 0.6.2 (ledger {results['ledger']}, cpus {os.cpu_count()})"
    )
    for name, value in results.items():
        if name != "ledger":
            print(f"  {name:<22} {value:>10,.0f}")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
