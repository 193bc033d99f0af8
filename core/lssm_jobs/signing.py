"""Signed envelopes: an HMAC-SHA256 wrapper around any :class:`~lssm_jobs.serialization.Serializer`.

Whoever can write to the queue's storage (a Redis or sqlite reachable by more than the application, a
leaked connection string) could otherwise make workers run any job type with any payload. With signing
on, producers sign every envelope with a secret key and workers run only envelopes whose signature a key
they hold verifies; a forged, tampered or unsigned envelope fails to decode, so the dispatcher
dead-letters it with the reason and never runs it.

Enable it with ``signing_key=`` on :class:`~lssm_jobs.queue.JobQueue` / ``open_queue`` (or the
``LSSM_JOBS_SIGNING_KEY`` / ``LSSM_JOBS_SIGNING_KEY_FILE`` environment variables for the CLI). Several
keys rotate: the first signs, every one of them verifies. The queue and the backends do not change: the
signature travels inside the body the serializer produces.

Format (``inner`` is what the wrapped serializer produced, ``mac`` the unpadded URL-safe base64 of
``HMAC-SHA256(key, DOMAIN + inner)``, always 43 characters):

* a JSON object ``{...}`` becomes ``{"hmac":"<mac>",...}``: still a valid JSON envelope, so tools and
  queues without the key (``lssm-jobs status``, ``dlq show``, a dashboard) can read it; verifying removes
  the first member again and checks the rest byte for byte;
* anything else becomes ``MAGIC + mac + inner``.

Keys are bytes (``str`` keys are UTF-8 encoded) of at least :data:`MIN_KEY_BYTES`; they are never part
of a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from typing import Any

from lssm_jobs.errors import SerializationError
from lssm_jobs.jobs import JobOptions
from lssm_jobs.serialization import Envelope, JsonSerializer, Serializer

#: The signing keys of queues built by the CLI: one key, or several separated by commas (the first signs).
SIGNING_KEY_ENV = "LSSM_JOBS_SIGNING_KEY"
#: A file holding the signing keys, one per line (the first signs; blank lines and ``#`` lines skipped).
SIGNING_KEY_FILE_ENV = "LSSM_JOBS_SIGNING_KEY_FILE"

#: Shortest key accepted: HMAC-SHA256 is only as strong as its key, and short keys are guessable.
MIN_KEY_BYTES = 16

#: Mixed into every MAC, so a signature made for something else with the same key never verifies here.
DOMAIN = b"lssm-jobs envelope v1\n"
#: Prefix of signed envelopes whose inner serializer does not produce a JSON object.
MAGIC = b"\x00lssm-hmac1\x00"

_MAC_CHARS = 43  # unpadded base64 of 32 bytes
_BLOCK = 64  # SHA-256's block size
_JSON_HEAD = b'{"hmac":"'

SigningKeys = str | bytes | Sequence[str | bytes]


class SignatureError(SerializationError):
    """An envelope's signature is missing or does not verify (with signing on): the job is not run."""


def signing_keys(keys: SigningKeys) -> tuple[bytes, ...]:
    """Normalize ``signing_key=`` to a tuple of byte keys (the first signs).

    :raises ValueError: no key, a key shorter than :data:`MIN_KEY_BYTES`, or a key of another type.
    """
    given = [keys] if isinstance(keys, (str, bytes)) else list(keys)
    if not given:
        raise ValueError("signing_key needs at least one key")
    result: list[bytes] = []
    for index, key in enumerate(given):
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes):
            raise ValueError(f"signing key [{index}] must be str or bytes, got {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"signing key [{index}] is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        result.append(key)
    return tuple(result)


def signing_keys_from_environment(environ: Mapping[str, str] | None = None) -> tuple[bytes, ...] | None:
    """The keys named by :data:`SIGNING_KEY_ENV` or :data:`SIGNING_KEY_FILE_ENV`, or None when neither is
    set (signing off).

    :raises ValueError: both are set, the file cannot be read, or a key is invalid (the key itself is
        never part of the message).
    """
    environ = os.environ if environ is None else environ
    inline, path = environ.get(SIGNING_KEY_ENV), environ.get(SIGNING_KEY_FILE_ENV)
    if inline and path:
        raise ValueError(f"set {SIGNING_KEY_ENV} or {SIGNING_KEY_FILE_ENV}, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                lines = [line.strip() for line in file]
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{SIGNING_KEY_FILE_ENV}: cannot read {path}: {error}") from None
        keys = [line for line in lines if line and not line.startswith("#")]
        if not keys:
            raise ValueError(f"{SIGNING_KEY_FILE_ENV}: {path} holds no key")
        return signing_keys(keys)
    if inline:
        return signing_keys([key.strip() for key in inline.split(",") if key.strip()])
    return None


class SigningSerializer(Serializer):
    """Signs what ``inner`` encodes and verifies what it decodes. See the module docstring for the format.

    Over the built-in JSON serializer this makes a :class:`JsonSigningSerializer`, which keeps the queue's
    fast JSON path; over any other serializer, this class itself.

    :param inner: the serializer whose output is signed (JSON by default).
    :param keys: one key or several; the first signs, any of them verifies.
    :raises ValueError: as :func:`signing_keys`.
    """

    def __new__(cls, inner: Serializer, keys: SigningKeys) -> SigningSerializer:
        if cls is SigningSerializer and isinstance(inner, JsonSerializer):
            cls = JsonSigningSerializer
        return super().__new__(cls)

    def __init__(self, inner: Serializer, keys: SigningKeys) -> None:
        if isinstance(inner, SigningSerializer):
            raise ValueError("this serializer already signs; give the keys to one SigningSerializer")
        self.inner = inner
        self._keys = signing_keys(keys)
        self._macs = tuple(_Mac(key) for key in self._keys)
        self.name = f"{inner.name}+hmac-sha256"
        self.content_type = inner.content_type

    def __repr__(self) -> str:
        count = len(self._keys)
        return f"SigningSerializer({self.inner!r}, {count} key{'s' if count != 1 else ''})"

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # -- the Serializer interface ------------------------------------------------------------------------

    def encode(self, data: Mapping[str, Any]) -> bytes:
        return self.sign(self.inner.encode(data))

    def decode(self, raw: bytes) -> Any:
        return self.inner.decode(self.verify(raw))

    def dumps(self, envelope: Envelope) -> bytes:
        return self.sign(self.inner.dumps(envelope))

    def loads(self, raw: bytes) -> Envelope:
        return self.inner.loads(self.verify(raw))

    # -- signing and verifying ---------------------------------------------------------------------------

    def sign(self, inner: bytes) -> bytes:
        """``inner`` with its signature, made with the first key."""
        mac = self._macs[0](inner)
        if inner[:1] == b"{" and inner[-1:] == b"}":
            rest = inner[1:]
            return _JSON_HEAD + mac + (b'"' + rest if rest == b"}" else b'",' + rest)
        return MAGIC + mac + inner

    def verify(self, raw: bytes) -> bytes:
        """The inner bytes of a signed envelope.

        :raises SignatureError: it carries no signature, or no key verifies it.
        """
        if not isinstance(raw, bytes):
            raise SignatureError(f"a signed envelope must be bytes, got {type(raw).__name__}")
        if raw.startswith(_JSON_HEAD):
            start = len(_JSON_HEAD)
            mac, after = raw[start : start + _MAC_CHARS], raw[start + _MAC_CHARS : start + _MAC_CHARS + 2]
            if after == b'"}' and len(raw) == start + _MAC_CHARS + 2:
                inner = b"{}"
            elif after == b'",':
                inner = b"{" + raw[start + _MAC_CHARS + 2 :]
            else:
                raise SignatureError("malformed signature: the 'hmac' member is not a signature")
        elif raw.startswith(MAGIC):
            mac, inner = raw[len(MAGIC) : len(MAGIC) + _MAC_CHARS], raw[len(MAGIC) + _MAC_CHARS :]
        else:
            raise SignatureError(
                "unsigned envelope: signing is on and this job carries no signature, so it was not run"
            )
        for compute in self._macs:
            if hmac.compare_digest(compute(inner), mac):
                return inner
        raise SignatureError(
            "signature mismatch: the envelope was changed after it was signed, or signed with a key this "
            "worker does not hold, so it was not run"
        )


class JsonSigningSerializer(SigningSerializer, JsonSerializer):
    """A :class:`SigningSerializer` over a :class:`~lssm_jobs.serialization.JsonSerializer`, made by
    ``SigningSerializer(json_serializer, keys)``.

    It is a ``JsonSerializer`` too, so the queue keeps its JSON fast path: payloads are encoded as the job
    is prepared (``encode_value``) and the envelope is assembled from pre-encoded parts as it is sent
    (``assemble``), here with its signature added. Everything else (``dumps``, ``loads``, ``encode``,
    ``decode``) is the plain :class:`SigningSerializer`'s, whose result is the same bytes.
    """

    inner: JsonSerializer

    def __init__(self, inner: JsonSerializer, keys: SigningKeys) -> None:
        JsonSerializer.__init__(self)
        SigningSerializer.__init__(self, inner, keys)

    def assembles(self, created_at: float, run_at: float) -> bool:
        return self.inner.assembles(created_at, run_at)

    def assemble(
        self,
        id: str,
        type: str,
        version: int,
        payload_json: str,
        queue: str,
        priority: int,
        options: JobOptions,
        dedupe_key: str | None,
        created_at: float,
        run_at: float,
        meta: Mapping[str, str],
    ) -> bytes:
        return self.sign(
            self.inner.assemble(
                id, type, version, payload_json, queue, priority, options, dedupe_key, created_at, run_at, meta
            )
        )


class _Mac:
    """``HMAC-SHA256(key, DOMAIN + message)`` as unpadded URL-safe base64, computed as RFC 2104 defines it
    with the key's inner and outer pads (and the domain) hashed once: per message that is two copies of a
    hash state instead of a new HMAC. With OpenSSL 3, ``hmac.digest`` sets up its MAC anew on each call,
    which costs more than hashing a small envelope. ``tests/test_signing.py`` checks it against
    ``hmac.digest``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._inner.update(DOMAIN)
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def __call__(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return base64.urlsafe_b64encode(outer.digest())[:_MAC_CHARS]

