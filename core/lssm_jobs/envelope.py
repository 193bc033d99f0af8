"""The job envelope and its wire format: the envelope's mapping to plain data, the ``Serializer``
interface, and the built-in JSON serializer.

An envelope is everything a worker needs to run a job; a serializer turns it into the bytes a backend
stores. The payload inside is checked before it gets here (:mod:`lssm_jobs.payloads`).
"""

from __future__ import annotations

import builtins
import functools
import json
import json.encoder
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from lssm_jobs._slots import slot_setters
from lssm_jobs.errors import SerializationError
from lssm_jobs.jobs import DEFAULT_OPTIONS, Job, JobOptions, JobStatus, new_job
from lssm_jobs.limits import PayloadLimits, json_depth_exceeds, unencodable_path
from lssm_jobs.payloads import field_errors

ENVELOPE_FORMAT = 1  # bumped when the envelope's own shape changes incompatibly
_MISSING: Any = object()


@attrs.frozen(kw_only=True)
class Envelope:
    """Everything a worker needs to run a job, as stored by backends (after the serializer encodes it)."""

    id: str
    type: str
    version: int
    payload: Any
    queue: str = "default"
    priority: int = 0
    options: JobOptions = DEFAULT_OPTIONS
    dedupe_key: str | None = None
    created_at: float
    run_at: float
    meta: Mapping[str, str] = attrs.field(factory=dict)
    format: int = ENVELOPE_FORMAT



# ---------------------------------------------------------------------------------------------------------
# Envelope mapping and serializers.

#: Converts job options to and from plain data (defaults left out). The envelope around them is mapped by
#: hand in ``envelope_to_dict`` / ``envelope_from_dict``, since that runs once per job.
options_converter = cattrs.Converter(omit_if_default=True)


@functools.lru_cache(maxsize=512)
def _options_to_dict(options: JobOptions) -> dict[str, Any]:
    # Job types share a handful of JobOptions instances, so each is unstructured once.
    data: dict[str, Any] = options_converter.unstructure(options, JobOptions)
    return data


_options_from_cache: dict[tuple[tuple[str, Any], ...], JobOptions] = {}


def _options_from_dict(data: Any) -> JobOptions:
    if not isinstance(data, Mapping):
        raise SerializationError(f"envelope options must be an object, got {type(data).__name__}")
    try:
        key = tuple(sorted(data.items()))
        cached = _options_from_cache.get(key)
    except TypeError:  # unhashable values: malformed anyway, let cattrs explain
        key, cached = (), None
    if cached is not None:
        return cached
    try:
        options = options_converter.structure(data, JobOptions)
    except Exception as error:
        details = "; ".join(str(e) for e in field_errors(error))
        raise SerializationError(f"malformed envelope options: {details}") from error
    if key and len(_options_from_cache) < 4096:
        _options_from_cache[key] = options
    return options


def envelope_to_dict(envelope: Envelope) -> dict[str, Any]:
    """Plain data for the serializer; fields equal to their defaults are left out to keep jobs small.

    Written by hand rather than by cattrs because it runs once per enqueued job.
    """
    data: dict[str, Any] = {
        "id": envelope.id,
        "type": envelope.type,
        "version": envelope.version,
        "payload": envelope.payload,
        "queue": envelope.queue,
        "priority": envelope.priority,
        "created_at": envelope.created_at,
        "run_at": envelope.run_at,
    }
    if envelope.options != DEFAULT_OPTIONS:
        data["options"] = _options_to_dict(envelope.options)
    if envelope.dedupe_key is not None:
        data["dedupe_key"] = envelope.dedupe_key
    if envelope.meta:
        data["meta"] = dict(envelope.meta)
    if envelope.format != ENVELOPE_FORMAT:
        data["format"] = envelope.format
    return data


def _field(
    data: Mapping[str, Any], name: str, kinds: type | tuple[type, ...], default: Any = _MISSING
) -> Any:
    value = data.get(name, default)
    if value is _MISSING:
        raise SerializationError(f"malformed envelope: field {name!r} is missing")
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SerializationError(
            f"malformed envelope: field {name!r} has the wrong type ({type(value).__name__})"
        )
    return value


def job_from_envelope(
    envelope: Envelope,
    payload: Any,
    *,
    status: JobStatus,
    attempt: int = 0,
    version: int | None = None,
    run_at: float | None = None,
    last_error: str | None = None,
    origin: Any = None,
) -> Job[Any]:
    """The user-facing :class:`~lssm_jobs.jobs.Job` for an envelope, with its (typed) payload and what the
    backend knows now: status, attempt, current ``run_at`` (a retry moves it) and last error. ``version``
    is the payload's version after any upgrade (the envelope's by default)."""
    return new_job(
        envelope.id,
        envelope.type,
        envelope.version if version is None else version,
        payload,
        envelope.queue,
        status,
        attempt,
        envelope.options.max_retries,
        envelope.priority,
        envelope.run_at if run_at is None else run_at,
        envelope.created_at,
        envelope.dedupe_key,
        last_error,
        envelope.options,
        envelope.meta,
        origin,
    )


(
    _set_id,
    _set_type,
    _set_version,
    _set_payload,
    _set_queue,
    _set_priority,
    _set_options,
    _set_dedupe_key,
    _set_created_at,
    _set_run_at,
    _set_meta,
    _set_format,
) = slot_setters(Envelope)


def _plain_envelope(data: dict[str, Any]) -> Envelope | None:
    """The envelope of the shape every job without options, dedupe key or meta has (what a worker decodes
    for each job), checked and built in one pass; None for any other shape (then every field is checked
    one by one, naming the bad one)."""
    get = data.get
    job_id, job_type, version = get("id"), get("type"), get("version")
    queue, priority = get("queue", "default"), get("priority", 0)
    created_at, run_at, envelope_format = get("created_at"), get("run_at"), get("format", ENVELOPE_FORMAT)
    if not (
        type(job_id) is str
        and type(job_type) is str
        and type(version) is int
        and type(queue) is str
        and type(priority) is int
        and type(created_at) is float
        and type(run_at) is float
        and type(envelope_format) is int
        and get("options") is None
        and get("dedupe_key") is None
        and get("meta") is None
    ):
        return None
    envelope: Envelope = object.__new__(Envelope)
    _set_id(envelope, job_id)
    _set_type(envelope, job_type)
    _set_version(envelope, version)
    _set_payload(envelope, get("payload"))
    _set_queue(envelope, queue)
    _set_priority(envelope, priority)
    _set_options(envelope, DEFAULT_OPTIONS)
    _set_dedupe_key(envelope, None)
    _set_created_at(envelope, created_at)
    _set_run_at(envelope, run_at)
    _set_meta(envelope, {})
    _set_format(envelope, envelope_format)
    return envelope


def envelope_from_dict(data: Any) -> Envelope:
    """Check and build an envelope from decoded data. :raises SerializationError: naming the bad field."""
    if type(data) is dict:
        plain = _plain_envelope(data)
        if plain is not None:
            return plain
    if not isinstance(data, Mapping):
        raise SerializationError(f"envelope must be an object, got {type(data).__name__}")
    options = data.get("options")
    meta = _field(data, "meta", Mapping, None)
    if meta is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SerializationError("malformed envelope: field 'meta' must map strings to strings")
    return Envelope(
        id=_field(data, "id", str),
        type=_field(data, "type", str),
        version=_field(data, "version", int),
        payload=data.get("payload"),
        queue=_field(data, "queue", str, "default"),
        priority=_field(data, "priority", int, 0),
        options=DEFAULT_OPTIONS if options is None else _options_from_dict(options),
        dedupe_key=_field(data, "dedupe_key", str, None),
        created_at=float(_field(data, "created_at", (int, float))),
        run_at=float(_field(data, "run_at", (int, float))),
        meta=dict(meta) if meta else {},
        format=_field(data, "format", int, ENVELOPE_FORMAT),
    )


def envelope_of(job: Job[Any], data: Any) -> Envelope:
    """The envelope of a job about to be stored, its payload as plain data ``data``."""
    return Envelope(
        id=job.id,
        type=job.type,
        version=job.version,
        payload=data,
        queue=job.queue,
        priority=job.priority,
        options=job.options,
        dedupe_key=job.dedupe_key,
        created_at=job.created_at,
        run_at=job.run_at,
        meta=job.meta,
    )


class Serializer(ABC):
    """Turns envelopes (as plain data) into bytes and back. Plugins add more through the serializers hook.

    Implementations must never execute code found in the data (no pickle, no eval).
    """

    name: str
    content_type: str

    @abstractmethod
    def encode(self, data: Mapping[str, Any]) -> bytes:
        """:raises SerializationError: the data cannot be represented."""

    @abstractmethod
    def decode(self, raw: bytes) -> Any:
        """:raises SerializationError: the bytes are not valid in this format."""

    def dumps(self, envelope: Envelope) -> bytes:
        return self.encode(envelope_to_dict(envelope))

    def loads(self, raw: bytes) -> Envelope:
        return envelope_from_dict(self.decode(raw))

    # A job is written in two steps, so that a bulk enqueue can check every job before it stores any, and
    # a serializer can leave work that cannot fail to the moment the job is sent (overlapping the
    # backend's work on earlier jobs). The producer keeps what ``encode_job`` returned without looking
    # into it and hands it back to ``job_bytes``.

    def encode_job(self, job: Job[Any], data: Any, limits: PayloadLimits) -> Any:
        """First step of writing ``job`` (its payload as plain data in ``data``): everything that can fail.

        By default the whole envelope is encoded here (``dumps``) and checked against ``limits`` (its size,
        and the payload's depth).

        :returns: what :meth:`job_bytes` takes for this job.
        :raises SerializationError: the payload cannot be encoded, or exceeds ``limits``.
        """
        try:
            body = self.dumps(envelope_of(job, data))
        except (UnicodeError, RecursionError) as error:  # a serializer that lets them through
            raise SerializationError(
                f"payload cannot be serialized: {type(error).__name__}: {error}"
            ) from error
        limits.check_encoded(data, body)
        return body

    def job_bytes(self, job: Job[Any], encoded: Any) -> bytes:
        """Second step: the stored bytes of ``job`` from what :meth:`encode_job` returned. Must not fail."""
        body: bytes = encoded
        return body

    def payload_encoder(self, created_at: float, run_at: float) -> Callable[[Any, PayloadLimits], Any] | None:
        """For a bulk enqueue: a function ``encode(data, limits)`` doing what :meth:`encode_job` does for
        any job with these times, from the payload alone (so the caller need not build each job first), or
        None (the default) when :meth:`encode_job` must see each job."""
        return None


def _fail_to_encode(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# CPython's C JSON encoder, built once: ``JSONEncoder.encode`` builds a new one on every call, which costs
# more than encoding a small payload. None on interpreters without it (then JSONEncoder is used).
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


class JsonSerializer(Serializer):
    """Compact UTF-8 JSON; the default."""

    name = "json"
    content_type = "application/json"
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    _decoder = json.JSONDecoder()
    # No circular-reference bookkeeping: a circular payload exhausts the recursion limit instead, which
    # encode_value reports like any other unencodable payload.
    _value_encoder = (
        _c_make_encoder(None, _fail_to_encode, _encode_str, None, ":", ",", False, False, False)
        if _c_make_encoder is not None
        else None
    )

    def __init__(self) -> None:
        # The fields that jobs of one type share, pre-encoded: (type, version, queue, priority, options).
        self._heads: dict[tuple[str, int, str, int, JobOptions], str] = {}
        self._last_time: tuple[float | None, str] = (None, "")
        # A subclass that changes encode() or dumps() gets them called, never the pre-encoded shortcut.
        cls = builtins.type(self)
        self._shortcut = cls.encode is JsonSerializer.encode and cls.dumps is JsonSerializer.dumps

    def encode(self, data: Mapping[str, Any]) -> bytes:
        return self.encode_value(data).encode()

    def encode_value(self, value: Any) -> str:
        """``value`` as JSON text. :raises SerializationError: it cannot be represented."""
        try:
            if self._value_encoder is not None:
                return "".join(self._value_encoder(value, 0))
            return self._encoder.encode(value)
        except (TypeError, ValueError, RecursionError) as error:
            raise SerializationError(f"payload is not JSON-serializable: {error}") from error

    def decode(self, raw: bytes) -> Any:
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise SerializationError(f"an envelope must be bytes, got {builtins.type(raw).__name__}")
        try:
            return self._decoder.decode(bytes(raw).decode())
        except (UnicodeDecodeError, ValueError) as error:
            raise SerializationError(f"not valid JSON: {error}") from error
        except RecursionError as error:  # written by something that does not check the depth at enqueue
            raise SerializationError("not readable: the JSON nests too deeply to decode") from error

    def dumps(self, envelope: Envelope) -> bytes:
        if envelope.format != ENVELOPE_FORMAT or not self.assembles(envelope.created_at, envelope.run_at):
            return super().dumps(envelope)
        return self.assemble(
            envelope.id,
            envelope.type,
            envelope.version,
            self.encode_value(envelope.payload),
            envelope.queue,
            envelope.priority,
            envelope.options,
            envelope.dedupe_key,
            envelope.created_at,
            envelope.run_at,
            envelope.meta,
        )

    def encode_job(self, job: Job[Any], data: Any, limits: PayloadLimits) -> Any:
        """Only the payload is encoded now (the part that can fail): its JSON text, checked against
        ``limits``. :meth:`job_bytes` assembles the envelope around it when the job is sent. Jobs whose
        envelope :meth:`assembles` cannot build are encoded whole, as any serializer does."""
        if not self.assembles(job.created_at, job.run_at):
            return super().encode_job(job, data, limits)
        return self.encode_payload(data, limits)

    def job_bytes(self, job: Job[Any], encoded: Any) -> bytes:
        if builtins.type(encoded) is not str:  # encoded whole by encode_job already
            body: bytes = encoded
            return body
        return self.assemble(
            job.id,
            job.type,
            job.version,
            encoded,
            job.queue,
            job.priority,
            job.options,
            job.dedupe_key,
            job.created_at,
            job.run_at,
            job.meta,
        )

    def payload_encoder(self, created_at: float, run_at: float) -> Callable[[Any, PayloadLimits], Any] | None:
        return self.encode_payload if self.assembles(created_at, run_at) else None

    def encode_payload(self, data: Any, limits: PayloadLimits) -> str:
        """A payload's JSON text, checked against ``limits``.

        The checks cost a flag test and a comparison for the usual small ASCII payload: the UTF-8 encoding
        only runs for non-ASCII text (where it also finds lone surrogates), and the depth is measured on
        the text (see :func:`~lssm_jobs.limits.json_depth_exceeds`).

        :raises SerializationError: not serializable, not valid Unicode, too large or too deep.
        """
        try:
            text = self.encode_value(data)
        except SerializationError as error:
            if isinstance(error.__cause__, RecursionError):
                raise limits.too_deep() from error
            raise
        if text.isascii():
            size = len(text)
        else:
            try:
                size = len(text.encode())
            except UnicodeEncodeError:
                raise SerializationError(
                    f"payload is not valid Unicode: the string at {unencodable_path(data)} holds a lone "
                    "surrogate"
                ) from None
        if size > limits.max_bytes:
            raise limits.too_large(size)
        # A text of up to 2 * depth characters cannot nest deeper than depth: no call for small payloads.
        if size > limits.depth_gate and json_depth_exceeds(text, data, limits.max_depth):
            raise limits.too_deep()
        return text

    def assembles(self, created_at: float, run_at: float) -> bool:
        """Whether :meth:`assemble` can build the envelope of a job with these times (finite floats, and
        ``dumps`` not changed by a subclass)."""
        return (
            self._shortcut
            and builtins.type(created_at) is float
            and math.isfinite(created_at)
            and (run_at is created_at or (builtins.type(run_at) is float and math.isfinite(run_at)))
        )

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
        """The envelope's JSON from its fields and its payload already encoded (``encode_value``), when
        :meth:`assembles` says so. The envelope's keys come in another order than ``envelope_to_dict``'s:
        the fields that jobs of one type share are encoded once and kept, since this runs once per job.
        Cannot fail for string ids, keys and meta and finite times, so callers can encode every payload
        first (where failures happen) and assemble later."""
        key = (type, version, queue, priority, options)
        head = self._heads.get(key)
        if head is None:
            head = self._head(*key)
            if len(self._heads) < 1024:
                self._heads[key] = head
        extra = ""
        if dedupe_key is not None:
            extra = ',"dedupe_key":' + _encode_str(dedupe_key)
        if meta:
            extra += ',"meta":' + self.encode_value(dict(meta))
        # repr() of a finite float is valid JSON, and is what the encoder itself writes. The jobs of one
        # enqueue_many share one time object: its text is kept (repr costs more than the rest together).
        last_time, created = self._last_time
        if created_at is not last_time:
            created = repr(created_at)
            self._last_time = (created_at, created)
        times = f'"created_at":{created},"run_at":{created if run_at == created_at else repr(run_at)}'
        return f'{head}"id":{_encode_str(id)},{times}{extra},"payload":{payload_json}}}'.encode()

    def _head(self, type: str, version: int, queue: str, priority: int, options: JobOptions) -> str:
        static: dict[str, Any] = {"type": type, "version": version, "queue": queue, "priority": priority}
        if options != DEFAULT_OPTIONS:
            static["options"] = _options_to_dict(options)
        return self.encode_value(static)[:-1] + ","
