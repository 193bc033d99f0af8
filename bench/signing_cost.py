"""What signing costs per job in CPU, without Redis or a worker process in the way:

    python bench/signing_cost.py [--rounds 16]

Measured with the JSON serializer alone and with ``signing_key=`` (HMAC-SHA256), the two alternating
round after round, keeping each figure's best round (the most stable figure on a shared machine):

* the producer's side: ``enqueue_many`` of 5,000 no-op jobs and 1,000 single ``enqueue`` calls on the
  memory backend (validation, serialization and signing; the memory backend stores in a few µs);
* the worker's side: decoding (and verifying) the envelope before the job runs, ``loads``; also when the
  key that signed is the second of two (a rotation), and for a 1 KB payload.

``run.py --signing`` measures the same end to end on Redis, beside the unsigned queue.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Callable

from lssm_jobs.jobs import JobCatalog, define_job_type
from lssm_jobs.queue import MemoryJobQueue
from lssm_jobs.serialization import Envelope, JsonSerializer, Serializer
from lssm_jobs.signing import SigningSerializer

KEY = "bench-signing-key-0123456789abcd"
OLD_KEY = "bench-previous-key-0123456789ab"
CATALOG = JobCatalog()
NOOP = define_job_type(type="bench.noop", catalog=CATALOG)


async def _producer_us(signing: bool) -> tuple[float, float]:
    """µs per job of enqueue_many and of enqueue, one round."""
    async with MemoryJobQueue(sinks=[], catalog=CATALOG, signing_key=KEY if signing else None) as queue:
        started = time.perf_counter()
        await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(5_000)])
        bulk = (time.perf_counter() - started) / 5_000 * 1e6
        started = time.perf_counter()
        for _ in range(1_000):
            await queue.enqueue(NOOP, {"t": 0.0})
        single = (time.perf_counter() - started) / 1_000 * 1e6
    return bulk, single


def _loads_us(serializer: Serializer, body: bytes) -> float:
    return timeit.timeit(lambda: serializer.loads(body), number=5_000) / 5_000 * 1e6


def measure(rounds: int) -> dict[str, tuple[float, float]]:
    """Each measure's best round: (plain µs, signed µs)."""
    now = time.time()
    small = Envelope(id="0" * 32, type="bench.noop", version=1, payload={"t": 0.0}, created_at=now, run_at=now)
    large = Envelope(id="0" * 32, type="bench.noop", version=1, payload={"x": "y" * 1000}, created_at=now, run_at=now)
    plain: Serializer = JsonSerializer()
    signed = SigningSerializer(JsonSerializer(), KEY)
    rotating = SigningSerializer(JsonSerializer(), [OLD_KEY, KEY])

    def decode(envelope: Envelope, reader: Serializer) -> Callable[[bool], float]:
        """µs to decode ``envelope`` as stored by the plain or the signing queue, with ``reader`` if signed."""
        return lambda signing: _loads_us(
            reader if signing else plain, (signed if signing else plain).dumps(envelope)
        )

    cases = {
        "loads (worker), no-op job": decode(small, signed),
        "loads, signed with the 2nd key": decode(small, rotating),
        "loads, 1 KB payload": decode(large, signed),
    }
    names = ["enqueue_many", "enqueue", *cases]
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in names}
    for _ in range(rounds):
        for signing in (False, True):
            bulk, single = asyncio.run(_producer_us(signing))
            best["enqueue_many"][signing] = min(best["enqueue_many"][signing], bulk)
            best["enqueue"][signing] = min(best["enqueue"][signing], single)
            for name, case in cases.items():
                best[name][signing] = min(best[name][signing], case(signing))
    return {name: (values[0], values[1]) for name, values in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=16)
    options = parser.parse_args()
    print("| per job | JSON µs | signed µs | added µs |")
    print("| --- | ---: | ---: | ---: |")
    for name, (plain, signed) in measure(options.rounds).items():
        label = {"enqueue_many": "enqueue_many (producer), no-op job", "enqueue": "enqueue (producer), no-op job"}
        print(f"| {label.get(name, name)} | {plain:.1f} | {signed:.1f} | {signed - plain:+.1f} |")


if __name__ == "__main__":
    main()
