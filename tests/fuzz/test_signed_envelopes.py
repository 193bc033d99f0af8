"""With signing on, a worker dead-letters forged, tampered and unsigned jobs with the reason and never runs
them, on memory, sqlite and Redis; jobs signed with any of its keys run (rotation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzz_storage import TARGET_TYPE, Space
from fuzz_worker import check_outcome, run_among_healthy
from hypothesis import given
from hypothesis import strategies as st
from lssm_jobs import JobCatalog
from lssm_jobs.testing import run_async

KEY = "chaos-current-key-0123456789"
OLD_KEY = "chaos-previous-key-012345678"
FOREIGN_KEY = "somebody-elses-key-01234567"


def test_forged_tampered_and_unsigned_jobs_are_dead_lettered_and_never_run(storage: Callable[[], Space]) -> None:
    space = storage()
    written: dict[str, str] = {}  # job id -> what it is

    async def write(space: Space) -> None:
        catalog = JobCatalog()
        producers = {
            "signed with the current key": space.queue(sinks=[], catalog=catalog, signing_key=KEY),
            "signed with the previous key": space.queue(sinks=[], catalog=catalog, signing_key=OLD_KEY),
            "unsigned": space.queue(sinks=[], catalog=catalog),
            "forged (another key)": space.queue(sinks=[], catalog=catalog, signing_key=FOREIGN_KEY),
            "tampered": space.queue(sinks=[], catalog=catalog, signing_key=KEY),
        }
        for what, producer in producers.items():
            async with producer:
                job = await producer.enqueue(TARGET_TYPE, {"n": 1})
                written[job.id] = what
                if what == "tampered":
                    record = await producer.backend.get(job.id)
                    assert record is not None and b'"n":1' in record.body
                    await space.overwrite_body(job.id, record.body.replace(b'"n":1', b'"n":2'))

    @run_async(timeout=60)
    async def run() -> Any:
        return await run_among_healthy(space, [], write, signing_key=[KEY, OLD_KEY], follow=written)

    outcome = run()
    check_outcome(outcome, [])
    expected_reasons = {
        "unsigned": "unsigned envelope",
        "forged (another key)": "signature mismatch",
        "tampered": "signature mismatch",
    }
    for job_id, what in written.items():
        if what in expected_reasons:
            assert job_id in outcome.dead, f"the {what} job was not dead-lettered"
            assert expected_reasons[what] in outcome.dead[job_id].reason, outcome.dead[job_id].reason
            assert outcome.target_runs[job_id] == 0, f"the {what} job ran"
        else:
            assert job_id in outcome.completed and outcome.target_runs[job_id] == 1, f"the job {what} did not run"


@given(data=st.data())
def test_any_change_to_a_signed_body_is_refused(storage: Callable[[], Space], data: st.DataObject) -> None:
    space = storage()
    tampered: list[str] = []

    async def write(space: Space) -> None:
        async with space.queue(sinks=[], catalog=JobCatalog(), signing_key=KEY) as producer:
            job = await producer.enqueue(TARGET_TYPE, {"n": 1})
            record = await producer.backend.get(job.id)
            assert record is not None
            body = record.body
            how = data.draw(st.sampled_from(["flip", "truncate", "append", "insert", "strip"]), label="how")
            # a place drawn independently of the body's length, which varies with its timestamps
            at = data.draw(st.integers(0, 2**16), label="at") % len(body)
            if how == "flip":
                changed = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255), label="xor")]) + body[at + 1 :]
            elif how == "truncate":
                changed = body[:at]
            elif how == "append":
                changed = body + data.draw(st.binary(min_size=1, max_size=8), label="tail")
            elif how == "insert":
                changed = body[:at] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + body[at:]
            else:  # the signature member removed: what is left is a valid unsigned envelope
                changed = b"{" + body[len(b'{"hmac":"') + 43 + 2 :]
            await space.overwrite_body(job.id, changed)
            tampered.append(job.id)

    @run_async(timeout=60)
    async def run() -> Any:
        return await run_among_healthy(space, [], write, signing_key=KEY, follow=tampered)

    outcome = run()
    check_outcome(outcome, tampered, may_complete=False)
    (job_id,) = tampered
    assert job_id in outcome.dead and outcome.target_runs[job_id] == 0
