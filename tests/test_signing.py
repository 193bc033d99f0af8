"""Signed envelopes (lssm_jobs.signing): the format, key rotation, tampering anywhere, keys never shown, and
the CLI's keys from the environment. Workers dead-lettering forged jobs on each backend are in
tests/fuzz/test_signed_envelopes.py."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.cli import main
from lssm_jobs.cli.app import build_queue
from lssm_jobs.errors import SerializationError
from lssm_jobs.handlers import Handlers
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import JobQueue, MemoryJobQueue, open_queue
from lssm_jobs.serialization import Envelope, JsonSerializer, Serializer
from lssm_jobs.signing import (
    DOMAIN,
    MAGIC,
    MIN_KEY_BYTES,
    SIGNING_KEY_ENV,
    SIGNING_KEY_FILE_ENV,
    JsonSigningSerializer,
    SignatureError,
    SigningSerializer,
    signing_keys_from_environment,
)
from lssm_jobs.testing import run_async, wait_until

KEY = "k-current-0123456789abcdef"
OLD_KEY = "k-previous-0123456789abcdef"
OTHER_KEY = "k-somebody-else-0123456789"


def _envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": "a" * 32,
        "type": "signed.test",
        "version": 1,
        "payload": {"to": "user@example.com", "n": 1},
        "created_at": 1_700_000_000.5,
        "run_at": 1_700_000_000.5,
    }
    fields.update(changes)
    return Envelope(**fields)


class Reversed(Serializer):
    """A non-JSON serializer (JSON text reversed), to check the binary signature form."""

    name = "reversed"
    content_type = "application/x-reversed"

    def encode(self, data: Mapping[str, Any]) -> bytes:
        return JsonSerializer().encode(data)[::-1]

    def decode(self, raw: bytes) -> Any:
        return JsonSerializer().decode(raw[::-1])


@pytest.mark.parametrize("inner", [JsonSerializer(), Reversed()], ids=["json", "binary"])
def test_a_signed_envelope_round_trips(inner: Serializer) -> None:
    signing = SigningSerializer(inner, KEY)
    envelope = _envelope(meta={"trace": "t-1"}, dedupe_key="once")
    body = signing.dumps(envelope)
    assert body.startswith(b'{"hmac":"') if isinstance(inner, JsonSerializer) else body.startswith(MAGIC)
    assert signing.loads(body) == envelope
    assert signing.decode(signing.encode({"x": [1, 2]})) == {"x": [1, 2]}
    assert signing.decode(signing.encode({})) == {}


@pytest.mark.parametrize("length", [16, 63, 64, 65, 200])
def test_the_mac_is_hmac_sha256_of_the_domain_and_the_envelope(length: int) -> None:
    key = bytes(range(256))[:length] if length <= 256 else b"k" * length
    signing = SigningSerializer(JsonSerializer(), key)
    for inner in (b"{}", JsonSerializer().dumps(_envelope()), b"\x00binary", b"x" * 1000):
        signed = signing.sign(inner)
        expected = base64.urlsafe_b64encode(hmac.digest(key, DOMAIN + inner, "sha256")).rstrip(b"=")
        assert expected in signed
        assert signing.verify(signed) == inner


def test_signed_json_stays_readable_without_the_key() -> None:
    """The signature is the object's first member, so tools without the key still read the envelope."""
    envelope = _envelope()
    body = SigningSerializer(JsonSerializer(), KEY).dumps(envelope)
    assert JsonSerializer().loads(body) == envelope
    assert set(json.loads(body)) >= {"hmac", "id", "payload"}


def test_every_changed_or_missing_byte_is_refused() -> None:
    signing = SigningSerializer(JsonSerializer(), KEY)
    body = signing.dumps(_envelope())
    for index in range(len(body)):
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        with pytest.raises(SignatureError):
            signing.loads(tampered)
    for end in range(len(body)):
        with pytest.raises(SignatureError):
            signing.loads(body[:end])
    with pytest.raises(SignatureError):
        signing.loads(body + b" ")


def test_unsigned_and_foreign_envelopes_are_refused_with_the_reason() -> None:
    signing = SigningSerializer(JsonSerializer(), KEY)
    unsigned = JsonSerializer().dumps(_envelope())
    with pytest.raises(SignatureError, match="unsigned envelope"):
        signing.loads(unsigned)
    foreign = SigningSerializer(JsonSerializer(), OTHER_KEY).dumps(_envelope())
    with pytest.raises(SignatureError, match="signature mismatch"):
        signing.loads(foreign)
    # A signature lifted from another envelope does not cover this one.
    mac = signing.dumps(_envelope())[: len(b'{"hmac":"') + 43]
    spliced = mac + b'",' + JsonSerializer().dumps(_envelope(payload={"n": 2}))[1:]
    with pytest.raises(SignatureError, match="signature mismatch"):
        signing.loads(spliced)
    with pytest.raises(SignatureError, match="not a signature"):
        signing.loads(b'{"hmac":"short"}')
    assert issubclass(SignatureError, SerializationError)  # the dispatcher dead-letters it as undecodable


def test_rotation_signs_with_the_first_key_and_accepts_any() -> None:
    old = SigningSerializer(JsonSerializer(), OLD_KEY)
    rotated = SigningSerializer(JsonSerializer(), [KEY, OLD_KEY])
    new = SigningSerializer(JsonSerializer(), KEY)
    from_old = old.dumps(_envelope())
    assert rotated.loads(from_old) == _envelope()
    from_rotated = rotated.dumps(_envelope())
    assert new.loads(from_rotated) == _envelope()
    with pytest.raises(SignatureError):
        old.loads(from_rotated)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        ("short", f"at least {MIN_KEY_BYTES}"),
        ([KEY, b"tiny"], "key [1] is 4 bytes"),
        ([KEY, 12345], "key [1] must be str or bytes"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(keys: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        SigningSerializer(JsonSerializer(), keys)
    assert "short" not in str(error.value) and "tiny" not in str(error.value)


def test_keys_never_appear_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queue = MemoryJobQueue(signing_key=[KEY, OLD_KEY], sinks=["logging"], catalog=JobCatalog())
    signing = queue.serializer
    assert isinstance(signing, SigningSerializer) and signing.key_count == 2
    texts = [repr(signing), str(signing), repr(queue), signing.name, repr(vars(queue))]
    with pytest.raises(SignatureError) as refused:
        signing.loads(SigningSerializer(JsonSerializer(), OTHER_KEY).dumps(_envelope()))
    texts.append(str(refused.value))

    @run_async(timeout=20)
    async def run_one() -> None:
        async with queue:
            queue.register("signed.test", lambda job: None)
            job = await queue.enqueue("signed.test", {})
            await queue.start()
            await wait_until(lambda: _status(queue, job.id, JobStatus.COMPLETED), message="job completed")

    run_one()
    texts.append(caplog.text)
    for text in texts:
        for key in (KEY, OLD_KEY):
            assert key not in text and repr(key.encode()) not in text


async def _status(queue: JobQueue, job_id: str, status: JobStatus) -> bool:
    job = await queue.get(job_id)
    return job is not None and job.status is status


def test_a_queue_that_signs_enqueues_signed_bodies_through_every_path() -> None:
    """enqueue, enqueue_many (pairs and requests) and the blocking API all sign (the JSON fast paths are
    for the plain serializer only)."""
    from lssm_jobs.blocking import BlockingQueue
    from lssm_jobs.queue import EnqueueRequest

    @run_async(timeout=20)
    async def check() -> None:
        async with MemoryJobQueue(signing_key=KEY, sinks=[], catalog=JobCatalog()) as queue:
            jobs = [await queue.enqueue("signed.test", {"n": 1})]
            jobs += await queue.enqueue_many(
                [("signed.test", {"n": 2}), EnqueueRequest(job_type="signed.test", payload={"n": 3}, priority=2)]
            )
            for job in jobs:
                record = await queue.backend.get(job.id)
                assert record is not None and record.body.startswith(b'{"hmac":"')
                assert (await queue.get(job.id)) is not None  # verified on read

    check()
    blocking = BlockingQueue(MemoryJobQueue(signing_key=KEY, sinks=[], catalog=JobCatalog()))
    try:
        job = blocking.enqueue("signed.test", {"n": 4})
        assert blocking.get(job.id) is not None
    finally:
        blocking.close()


def test_open_queue_takes_signing_key() -> None:
    queue = open_queue("memory", signing_key=KEY, sinks=[])
    assert isinstance(queue.serializer, SigningSerializer)
    assert queue.serializer.inner.name == "json"


def test_over_json_the_fast_path_signs_the_same_bytes_as_dumps() -> None:
    """Over JSON the signing serializer is a JsonSerializer too (the queue's fast path stays on), and the
    envelope it assembles from parts is what dumps makes; over anything else it is the plain wrapper."""
    signing = SigningSerializer(JsonSerializer(), KEY)
    assert isinstance(signing, JsonSigningSerializer) and isinstance(signing, JsonSerializer)
    assert not isinstance(SigningSerializer(Reversed(), KEY), JsonSerializer)
    envelope = _envelope(dedupe_key="d", meta={"m": "1"}, priority=3)
    assert signing.assembles(envelope.created_at, envelope.run_at)
    assembled = signing.assemble(
        envelope.id,
        envelope.type,
        envelope.version,
        signing.encode_value(envelope.payload),
        envelope.queue,
        envelope.priority,
        envelope.options,
        envelope.dedupe_key,
        envelope.created_at,
        envelope.run_at,
        envelope.meta,
    )
    assert assembled == signing.dumps(envelope)
    assert signing.loads(assembled) == envelope
    with pytest.raises(ValueError, match="already signs"):
        SigningSerializer(signing, KEY)


# -- keys from the environment (the CLI) ------------------------------------------------------------------


def test_keys_from_the_environment(tmp_path: Path) -> None:
    assert signing_keys_from_environment({}) is None
    assert signing_keys_from_environment({SIGNING_KEY_ENV: f" {KEY} , {OLD_KEY} "}) == (
        KEY.encode(),
        OLD_KEY.encode(),
    )
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# current first\n{KEY}\n\n{OLD_KEY}\n")
    assert signing_keys_from_environment({SIGNING_KEY_FILE_ENV: str(keys_file)}) == (
        KEY.encode(),
        OLD_KEY.encode(),
    )
    with pytest.raises(ValueError, match="not both"):
        signing_keys_from_environment({SIGNING_KEY_ENV: KEY, SIGNING_KEY_FILE_ENV: str(keys_file)})
    with pytest.raises(ValueError, match="cannot read"):
        signing_keys_from_environment({SIGNING_KEY_FILE_ENV: str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        signing_keys_from_environment({SIGNING_KEY_FILE_ENV: str(tmp_path / "empty")})


def test_the_cli_signs_and_verifies_with_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert main(["enqueue", "signed.cli", "--payload", '{"n": 1}', "--url", url]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]

    @run_async(timeout=20)
    async def stored_body() -> bytes:
        queue = open_queue("sqlite", path=str(tmp_path / "jobs.db"), sinks=[])
        async with queue:
            record = await queue.backend.get(job_id)
            assert record is not None
            return record.body

    body = stored_body()
    assert SigningSerializer(JsonSerializer(), KEY).loads(body).payload == {"n": 1}

    handlers = Handlers()
    handlers.register("signed.cli", lambda job: None)
    queue = build_queue(None, url, [], app=handlers)
    assert isinstance(queue.serializer, SigningSerializer)
    plain_app = JobQueue(open_queue("memory").backend, sinks=[])
    assert isinstance(build_queue(None, None, [], app=plain_app).serializer, SigningSerializer)
    own = MemoryJobQueue(signing_key=OTHER_KEY, sinks=[])
    kept = build_queue(None, None, [], app=own).serializer
    assert isinstance(kept, SigningSerializer)
    with pytest.raises(SignatureError):  # the APP's own key was kept, not replaced by the environment's
        kept.loads(body)

    assert main(["status", "--url", url, "-o", f"signing-key={KEY}"]) == 2
    error = capsys.readouterr().err
    assert "not taken from the command line" in error and KEY not in error

    monkeypatch.setenv(SIGNING_KEY_ENV, "too-short")
    assert main(["status", "--url", url]) == 2
    error = capsys.readouterr().err
    assert "at least 16" in error and "too-short" not in error and "Traceback" not in error


def test_a_cli_worker_dead_letters_an_unsigned_job(tmp_path: Path) -> None:
    """End to end through the real CLI: `lssm-jobs enqueue` without a key, `lssm-jobs worker` with one."""
    (tmp_path / "signed_app.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from lssm_jobs.handlers import Handlers

            handlers = Handlers()

            @handlers.register("signed.cli")
            def run(job):
                Path(__file__).with_name(f"ran-{job.payload['n']}").touch()
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    base = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    signed = {**base, SIGNING_KEY_ENV: KEY}
    cli = [sys.executable, "-m", "lssm_jobs.cli"]
    for n, env in ((1, signed), (2, base)):
        done = subprocess.run(
            [*cli, "enqueue", "signed.cli", "--payload", json.dumps({"n": n}), "--url", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    worker = subprocess.Popen(
        [*cli, "worker", "signed_app:handlers", "--url", url, "--no-progress"],
        env=signed,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            listing = subprocess.run(
                [*cli, "dlq", "list", "--json", "--url", url],
                env=base,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=tmp_path,
            )
            dead = json.loads(listing.stdout or "[]")
            if dead and (tmp_path / "ran-1").exists():
                break
            assert time.monotonic() < deadline, "the worker did not settle both jobs"
            time.sleep(0.1)
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    assert (tmp_path / "ran-1").exists() and not (tmp_path / "ran-2").exists()
    assert len(dead) == 1 and "unsigned envelope" in dead[0]["reason"]
    assert KEY not in stderr and "Traceback" not in stderr
