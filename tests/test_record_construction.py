"""The direct constructors of the enqueue and dispatch hot paths build exactly what the attrs constructors
and the checked decoding path build."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import attrs
import pytest
from lssm_jobs._slots import slot_setters
from lssm_jobs.backends.base import OutgoingJob, PushResult, new_outgoing_job, new_push_result
from lssm_jobs.errors import SerializationError
from lssm_jobs.jobs import Job, JobOptions, JobStatus, new_job
from lssm_jobs.serialization import Envelope, envelope_from_dict


def _distinct_values(cls: type[Any]) -> dict[str, Any]:
    """A different value for every field, so a value set on the wrong slot shows."""
    samples: dict[str, Any] = {
        "id": "id-1",
        "type": "mail.send",
        "version": 3,
        "payload": {"to": "a@example.com"},
        "queue": "mail",
        "status": JobStatus.SCHEDULED,
        "attempt": 2,
        "max_retries": 7,
        "priority": -4,
        "run_at": 1700000001.5,
        "created_at": 1700000000.25,
        "dedupe_key": "mail:a",
        "last_error": "boom",
        "options": JobOptions(max_retries=7, queue="mail"),
        "meta": MappingProxyType({"trace": "t-1"}),
        "body": b'{"id":"id-1"}',
        "created": True,
        "origin": object(),
    }
    return {field.name: samples[field.name] for field in attrs.fields(cls) if field.name not in _DEFAULTED}


#: Fields ``new_job`` does not take: it sets them to their defaults (what queue.get and the dispatcher set
#: afterwards, when they apply: lssm_jobs.cancellation).
_DEFAULTED = {"_extra": None}


@pytest.mark.parametrize(
    ("cls", "build"), [(Job, new_job), (OutgoingJob, new_outgoing_job), (PushResult, new_push_result)]
)
def test_direct_construction_equals_the_attrs_constructor(cls: type[Any], build: Any) -> None:
    values = _distinct_values(cls)
    direct = build(*values.values())
    assert type(direct) is cls
    assert direct == cls(**values)
    defaulted = {name: value for name, value in _DEFAULTED.items() if cls is Job}
    assert attrs.asdict(direct, recurse=False) == {**values, **defaulted}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        direct.id = "other"


def test_classes_with_slots_beyond_their_fields_are_refused() -> None:
    @attrs.frozen(cache_hash=True)
    class Hashed:
        value: int

    with pytest.raises(TypeError, match="not exactly its fields"):
        slot_setters(Hashed)


def test_plain_envelopes_decode_like_the_checked_path() -> None:
    data: dict[str, Any] = {
        "type": "mail.send",
        "version": 2,
        "queue": "mail",
        "priority": 3,
        "id": "id-1",
        "created_at": 1700000000.25,
        "run_at": 1700000001.5,
        "payload": {"to": "a@example.com"},
    }
    expected = Envelope(
        id="id-1",
        type="mail.send",
        version=2,
        payload={"to": "a@example.com"},
        queue="mail",
        priority=3,
        created_at=1700000000.25,
        run_at=1700000001.5,
    )
    assert envelope_from_dict(data) == expected
    minimal = {key: data[key] for key in ("type", "version", "id", "created_at", "run_at")}
    assert envelope_from_dict(minimal) == attrs.evolve(expected, payload=None, queue="default", priority=0)
    # other shapes take the field-by-field path: converted where that path converts, refused naming the field
    assert envelope_from_dict({**data, "created_at": 1700000000}).created_at == 1700000000.0
    assert envelope_from_dict({**data, "meta": {"trace": "t"}}).meta == {"trace": "t"}
    with pytest.raises(SerializationError, match="'version'"):
        envelope_from_dict({**data, "version": True})
    with pytest.raises(SerializationError, match="'queue'"):
        envelope_from_dict({**data, "queue": 5})
