"""Reading the sqlite backend's rows without trusting them.

The rows are written by lssm-jobs, but the file is an ordinary sqlite database: anyone with the sqlite
shell can change a column, and sqlite keeps whatever value it is given (after ``UPDATE lssm_jobs SET body =
'...'`` the BLOB column holds TEXT; a REAL column keeps ``'soon'`` as TEXT). Every read of the backend goes
through these helpers: :func:`problems` says what is wrong with a row (so it goes to the dead letter queue
with that reason), and the ``*_of`` functions turn any stored value into the type a record needs (so a dead
letter is always listed, and a replay always writes a well-formed row).

Connections opened by :func:`~lssm_jobs.backends.sqlite_connection.connect` decode TEXT with
``surrogateescape``, so even TEXT that is not valid UTF-8 is read (as a string that does not encode) rather
than failing the whole query; :func:`blob_of` gives its original bytes back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

Kind = Literal["text", "text?", "int", "real", "real?", "blob"]

#: How sqlite names the storage class of each Python value it returns.
_STORAGE = {type(None): "NULL", int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}


def storage_class(value: object) -> str:
    return _STORAGE.get(type(value), type(value).__name__)


def _valid_text(value: object) -> bool:
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:  # TEXT that was not valid UTF-8 (decoded with surrogateescape)
        return False
    return True


def _fits(value: object, kind: Kind) -> bool:
    if kind == "text":
        return _valid_text(value)
    if kind == "text?":
        return value is None or _valid_text(value)
    if kind == "int":
        return type(value) is int
    if kind == "real":
        return type(value) in (float, int) and math.isfinite(value)  # type: ignore[arg-type]
    if kind == "real?":
        return value is None or (type(value) in (float, int) and math.isfinite(value))  # type: ignore[arg-type]
    return type(value) is bytes


def describe(name: str, value: object) -> str:
    """``column 'body' holds TEXT 'abc'`` (the value cut short: it may be job data)."""
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    if isinstance(value, str) and not _valid_text(value):
        return f"column {name!r} holds TEXT that is not valid UTF-8"
    return f"column {name!r} holds {storage_class(value)} {shown}"


def problems(row: Sequence[Any], columns: Sequence[tuple[str, Kind]]) -> list[str]:
    """What is wrong with ``row`` (one value per ``columns`` entry), as readable phrases; empty when every
    value has the type its column needs."""
    return [
        describe(name, value)
        for value, (name, kind) in zip(row, columns, strict=True)
        if not _fits(value, kind)
    ]


def text_of(value: object, default: str = "") -> str:
    """Any stored value as valid text: TEXT as is (invalid UTF-8 replaced), BLOB decoded as UTF-8 with
    replacement characters, numbers written out, NULL as ``default``."""
    if type(value) is str:
        if _valid_text(value):
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if value is None:
        return default
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return str(value)


def optional_text_of(value: object) -> str | None:
    return None if value is None else text_of(value)


def id_of(value: object) -> str:
    """A job id as it is shown and looked up again. TEXT ids are themselves; an id that is not valid UTF-8
    (TEXT written by another tool, or a BLOB) reads as Python reads undecodable bytes, with
    ``surrogateescape`` (what ``sys.argv`` gives for the same bytes on the command line), and
    :func:`id_param` / :func:`blob_id_matches` find the row again from it."""
    if type(value) is bytes:
        return value.decode("utf-8", "surrogateescape")
    return value if type(value) is str else text_of(value, "?")


def clean_id(value: object) -> str:
    """A job id as valid text, for writing a new row: invalid UTF-8 becomes U+FFFD."""
    return text_of(id_of(value), "?")


def id_param(job_id: str) -> str | bytes:
    """``job_id`` as a query parameter for ``id = CAST(? AS TEXT)``: itself, or (an id read from TEXT that
    was not valid UTF-8) its original bytes, which a ``str`` parameter cannot carry."""
    return job_id if _valid_text(job_id) else job_id.encode("utf-8", "surrogateescape")


def blob_id_matches(value: object, job_id: str) -> bool:
    return type(value) is bytes and id_of(value) == job_id


def int_of(value: object, default: int = 0) -> int:
    """An INTEGER as is; a whole, finite REAL as an int; anything else as ``default``."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return int(value)
    return default


def real_of(value: object, default: float) -> float:
    """A finite number as a float; anything else as ``default``."""
    if type(value) in (int, float) and math.isfinite(value):  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    return default


def blob_of(value: object) -> bytes:
    """Any stored value as bytes: a BLOB as is, TEXT as its original bytes (UTF-8), a number as its text,
    NULL as empty."""
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    if value is None:
        return b""
    return str(value).encode()
