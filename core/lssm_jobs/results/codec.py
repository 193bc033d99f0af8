"""Results as stored: a handler's return value checked against its job type's ``result`` type with the
payload converter (the same rules as payloads: strict types, unknown keys refused, every bad field named),
then encoded as compact UTF-8 JSON (never pickle). Reading one back structures it into the type again."""

from __future__ import annotations

import json
from typing import Any, get_origin

from typing_extensions import is_typeddict

from lssm_jobs.errors import InvalidResultError
from lssm_jobs.payloads import field_errors, payload_converter


def _type_name(result_type: Any) -> str:
    return getattr(result_type, "__qualname__", None) or repr(result_type)


def encode_result(job_type: str, result_type: Any, value: Any) -> bytes:
    """The stored form of ``value``, a return value of a handler of ``job_type``.

    :raises InvalidResultError: ``value`` does not fit ``result_type`` (naming every bad field) or cannot be
        encoded as JSON.
    """
    try:
        # A plain class only: ``isinstance`` refuses generic aliases (``dict[str, int]``), which Python 3.10
        # still reports as types.
        plain_class = isinstance(result_type, type) and get_origin(result_type) is None
        if plain_class and not is_typeddict(result_type) and isinstance(value, result_type):
            data = payload_converter.unstructure(value)
        else:
            data = value
        typed = payload_converter.structure(data, result_type)
        data = payload_converter.unstructure(typed)
    except Exception as error:
        problems = "; ".join(str(problem) for problem in field_errors(error))
        raise InvalidResultError(
            f"the handler of {job_type!r} returned {type(value).__name__} {_short(value)}, which is not a valid "
            f"{_type_name(result_type)} (its declared result type): {problems}"
        ) from error
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, UnicodeError, RecursionError) as error:
        raise InvalidResultError(
            f"the result of {job_type!r} cannot be stored as JSON: {type(error).__name__}: {error}"
        ) from error


def decode_result(result_type: Any, raw: bytes) -> Any:
    """A stored result as ``result_type`` (plain JSON data when ``result_type`` is None)."""
    data = json.loads(raw)
    return data if result_type is None else payload_converter.structure(data, result_type)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return "(unprintable)"
    return text if len(text) <= 80 else text[:77] + "..."
