"""A producer process of the chaos suite:

    python chaos_producer.py --name p1 --count 1000 --seconds 20 --seed 7 --out DIR --target JSON

``--target`` is ``{"backend": NAME, "options": {...}}`` (what ``open_queue`` takes). The producer enqueues
``--count`` chaos jobs spread over ``--seconds``, one at a time or in ``enqueue_many`` batches, some
delayed or prioritized, each with a plan drawn from the seed. After every call that succeeded it appends
``<cid> <job id> <plan>`` per job to ``DIR/accepted-<name>.log`` (one ``os.write``, so the lines reach the kernel
as the call returns): those are the jobs the queue accepted and must never lose. A call that failed (the
server restarting, out of memory) is retried after a pause with the same cids (and new job ids); the
failure is counted. At the end it writes ``DIR/producer-<name>.json`` with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_app import CHAOS_JOB, PLANS, ChaosPayload
from lssm_jobs.queue import EnqueueRequest, open_queue

#: Share of each plan among the jobs produced.
PLAN_WEIGHTS = {"ok": 66, "flaky": 15, "doomed": 8, "permanent": 3, "slow": 8}
assert set(PLAN_WEIGHTS) == set(PLANS)
CALL_TIMEOUT = 90.0


def _request(rng: random.Random, cid: str) -> EnqueueRequest:
    plan = rng.choices(list(PLAN_WEIGHTS), weights=list(PLAN_WEIGHTS.values()))[0]
    arg = {"flaky": rng.randint(1, 2), "slow": rng.randint(200, 1500)}.get(plan, 0)
    roll = rng.random()
    return EnqueueRequest(
        job_type=CHAOS_JOB,
        payload=ChaosPayload(cid=cid, plan=plan, arg=arg),
        delay_ms=rng.randint(50, 1500) if roll < 0.15 else None,
        priority=rng.randint(-3, 3) if 0.15 <= roll < 0.25 else None,
    )


async def produce(name: str, count: int, seconds: float, seed: int, out: Path, target: dict[str, Any]) -> None:
    rng = random.Random(seed)
    queue = open_queue(target["backend"], sinks=[], **target["options"])
    accepted = os.open(out / f"accepted-{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    failures: Counter[str] = Counter()
    calls = 0
    started = time.monotonic()
    n = 0
    try:  # opened by the first enqueue, inside the retry loop: the service may be down or full then
        while n < count:
            size = 1 if rng.random() < 0.6 else rng.randint(2, 40)
            requests = [_request(rng, f"{name}-{n + i}") for i in range(min(size, count - n))]
            while True:
                calls += 1
                try:
                    if len(requests) == 1:
                        request = requests[0]
                        job = await asyncio.wait_for(
                            queue.enqueue(
                                request.job_type,
                                request.payload,
                                delay_ms=request.delay_ms,
                                priority=request.priority,
                            ),
                            CALL_TIMEOUT,
                        )
                        jobs = [job]
                    else:
                        jobs = await asyncio.wait_for(queue.enqueue_many(requests), CALL_TIMEOUT)
                    break
                except Exception as error:  # the fault being injected: retry the same jobs
                    failures[type(error).__name__] += 1
                    print(f"producer {name}: enqueue failed ({type(error).__name__}: {error})", file=sys.stderr)
                    await asyncio.sleep(0.2 + rng.random() * 0.3)
            lines = "".join(
                f"{request.payload.cid} {job.id} {request.payload.plan}\n"
                for request, job in zip(requests, jobs, strict=True)
            )
            os.write(accepted, lines.encode())
            n += len(requests)
            pause = started + seconds * n / count - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
    finally:
        await queue.close()
    os.close(accepted)
    summary = {"accepted": n, "calls": calls, "failed_calls": sum(failures.values()), "errors": dict(failures)}
    (out / f"producer-{name}.json").write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--target", type=json.loads, required=True)
    args = parser.parse_args()
    asyncio.run(produce(args.name, args.count, args.seconds, args.seed, args.out, args.target))


if __name__ == "__main__":
    main()
