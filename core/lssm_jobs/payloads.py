"""Payload validation: the strict cattrs converter that checks a payload against its job type's class.

Following cattrs' preconf layout, the converter has a ``configure_*`` function that adds our hooks to a
converter you own and a ``make_*`` function that builds a fresh, configured one. The envelope a payload
travels in, and its wire format, are :mod:`lssm_jobs.envelope`'s.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Set as AbstractSet
from datetime import date, datetime
from decimal import Decimal
from typing import Any, is_typeddict

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError

from lssm_jobs.errors import FieldError, JobValidationError
from lssm_jobs.jobs import JobType

# ---------------------------------------------------------------------------------------------------------
# Payload converter: strict, so a payload that "almost" fits is rejected at enqueue rather than coerced.


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 datetime string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _structure_date(value: Any, _: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 date string, got {type(value).__name__}")
    return date.fromisoformat(value)


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID string, got {type(value).__name__}")
    return uuid.UUID(value)


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise TypeError(f"expected a decimal string, got {type(value).__name__}")
    return Decimal(value)


def _structure_bytes(value: Any, _: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise ValueError(f"invalid base64: {error}") from error


def configure_payload_converter(converter: cattrs.Converter) -> None:
    """Make ``converter`` strict about primitives and able to carry datetimes, dates, UUIDs, decimals and
    bytes through JSON (as ISO 8601 text, UUID text, decimal text and base64)."""
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
    converter.register_structure_hook(date, _structure_date)
    converter.register_unstructure_hook(date, lambda value: value.isoformat())
    converter.register_structure_hook(uuid.UUID, _structure_uuid)
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(bytes, _structure_bytes)
    converter.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))


def make_payload_converter() -> cattrs.Converter:
    """A new strict payload converter: unknown keys are errors, and every error names its field path."""
    # Sets travel as JSON arrays (and come back as sets, from the payload class's annotation).
    converter = cattrs.Converter(
        forbid_extra_keys=True,
        detailed_validation=True,
        unstruct_collection_overrides={AbstractSet: list},
    )
    configure_payload_converter(converter)
    return converter


payload_converter = make_payload_converter()


def field_errors(error: BaseException) -> list[FieldError]:
    """A cattrs error (or any other) as field errors, each with its path from the root (``$``)."""
    errors: list[FieldError] = []
    if isinstance(error, (ClassValidationError, IterableValidationError)):
        for message in cattrs.transform_error(error, path="$"):
            text, _, path = message.rpartition(" @ ")
            errors.append(FieldError(path=path or "$", message=text or message))
    else:
        errors.append(FieldError(path="$", message=f"{type(error).__name__}: {error}"))
    return errors


_TOO_DEEP = FieldError(path="$", message="the payload nests too deeply to validate")


def _from_recursion(error: BaseException) -> bool:
    """Whether ``error`` is, or (in cattrs' exception groups) holds, a RecursionError."""
    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, RecursionError):
            return True
        pending.extend(getattr(current, "exceptions", ()))
    return False


def structure_payload(job_type: JobType[Any], data: Any, converter: cattrs.Converter | None = None) -> Any:
    """Turn plain data into the job type's payload class, or raise :class:`JobValidationError`."""
    if job_type.payload is None:
        return data
    converter = converter or payload_converter
    try:
        return converter.structure(data, job_type.payload)
    except Exception as error:
        if _from_recursion(error):  # cattrs reports it deep down a path as long as the nesting
            raise JobValidationError(job_type.type, [_TOO_DEEP]) from error
        raise JobValidationError(job_type.type, field_errors(error)) from error


def validate_payload(
    job_type: JobType[Any], payload: Any, converter: cattrs.Converter | None = None
) -> tuple[Any, Any]:
    """Check ``payload`` (a payload instance or plain data) against ``job_type``.

    :returns: ``(data, typed)``: the plain JSON-ready data to store and the typed payload instance.
    :raises JobValidationError: naming every bad field and its path; nothing is stored.
    """
    converter = converter or payload_converter
    if job_type.payload is None:
        return payload, payload
    try:
        if not is_typeddict(job_type.payload) and isinstance(payload, job_type.payload):
            data = converter.unstructure(payload)
        else:
            data = payload
        typed = structure_payload(job_type, data, converter)
        return converter.unstructure(typed), typed
    except RecursionError as error:
        raise JobValidationError(job_type.type, [_TOO_DEEP]) from error


