"""What signing costs per job in CPU, without Redis or a worker in the way:

    python bench/signing_cost.py [--repeat 7] [--number 20000]

For the benchmark's envelope (a no-op job) and for one with a 1 KB payload, the time the queue spends on a
job's envelope with the JSON serializer alone and with ``signing_key=`` (HMAC-SHA256): ``dumps`` on
enqueue, ``loads`` before the job runs, and ``loads`` when the key that signed is the second of two
(during a rotation). Each figure is the best of ``--repeat`` runs of ``--number`` calls, which is the most
stable figure on a shared machine. ``run.py --signing`` measures the same end to end on Redis.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

from lssm_jobs.serialization import Envelope, JsonSerializer, Serializer
from lssm_jobs.signing import SigningSerializer

KEY = "bench-signing-key-0123456789abcd"
OLD_KEY = "bench-previous-key-0123456789ab"


def _best_us(function: Callable[[], object], repeat: int, number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def measure(payload: object, repeat: int, number: int) -> dict[str, float]:
    now = time.time()
    envelope = Envelope(id="0" * 32, type="bench.noop", version=1, payload=payload, created_at=now, run_at=now)
    plain: Serializer = JsonSerializer()
    signed = SigningSerializer(JsonSerializer(), KEY)
    rotating = SigningSerializer(JsonSerializer(), [OLD_KEY, KEY])
    plain_body, signed_body = plain.dumps(envelope), signed.dumps(envelope)
    return {
        "bytes": len(plain_body),
        "signed bytes": len(signed_body),
        "dumps": _best_us(lambda: plain.dumps(envelope), repeat, number),
        "signed dumps": _best_us(lambda: signed.dumps(envelope), repeat, number),
        "loads": _best_us(lambda: plain.loads(plain_body), repeat, number),
        "signed loads": _best_us(lambda: signed.loads(signed_body), repeat, number),
        "signed loads, 2nd key": _best_us(lambda: rotating.loads(signed_body), repeat, number),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    options = parser.parse_args()
    print("| envelope | bytes (signed) | dumps µs (signed) | loads µs (signed; 2nd key) | added per job µs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, payload in (("no-op job", {"t": 0.0}), ("1 KB payload", {"text": "x" * 1000})):
        r = measure(payload, options.repeat, options.number)
        added = r["signed dumps"] - r["dumps"] + r["signed loads"] - r["loads"]
        print(
            f"| {name} | {r['bytes']:.0f} ({r['signed bytes']:.0f}) | {r['dumps']:.1f} ({r['signed dumps']:.1f}) | "
            f"{r['loads']:.1f} ({r['signed loads']:.1f}; {r['signed loads, 2nd key']:.1f}) | {added:.1f} |"
        )


if __name__ == "__main__":
    main()
