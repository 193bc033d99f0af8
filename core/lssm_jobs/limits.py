"""The bounds on what a job may carry, and the cheap checks that enforce them before anything is stored.

Every bound is chosen so that whatever ``enqueue`` accepts can be stored exactly, read back and run on
every backend: integers fit a signed 32-bit column (sqlite ``INTEGER``, Redis scores and Lua numbers hold
them exactly), times stay finite and within what a ``datetime`` represents, strings encode as UTF-8, and
payloads are shallow enough for any worker to decode and validate.

The checks run on the enqueue hot path, so each is a type test and a comparison for the common case
(``type(value) is int``); the slower look (UTF-8 encoding, walking a payload) only happens for values that
need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from lssm_jobs.errors import SerializationError

#: Job type and queue names: 1 to this many characters, all printable (no control characters, no lone
#: surrogates).
MAX_NAME_LENGTH = 255
#: Priorities, and job type versions and retry counts, fit a signed 32-bit integer on every backend.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
MAX_VERSION = 2**31 - 1
MAX_RETRIES = 2**31 - 1
#: Longest ``timeout_ms``: 2**31 - 1 ms (about 24.8 days), the longest timer JavaScript's ``setTimeout``
#: (and so the original TypeScript library) can hold.
MAX_TIMEOUT_MS = 2**31 - 1
#: Longest ``delay_ms``, backoff and ``max_backoff_ms``, and the furthest ``run_at`` ahead: 3650 days.
MAX_DELAY_MS = 3650 * 86_400_000
#: ``dedupe_key``: 1 to this many UTF-8 bytes.
MAX_DEDUPE_KEY_BYTES = 1024
#: ``meta``: at most this many entries; keys 1 to 256 UTF-8 bytes, values up to 1024 (Pub/Sub's limits
#: for message attributes, which meta may travel as).
MAX_META_ENTRIES = 64
MAX_META_KEY_BYTES = 256
MAX_META_VALUE_BYTES = 1024
#: Default most bytes a job's encoded payload may take (``JobQueue(max_payload_bytes=...)``): 1 MiB.
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
#: Default deepest nesting of lists and objects in a payload (``JobQueue(max_payload_depth=...)``).
DEFAULT_MAX_PAYLOAD_DEPTH = 64
#: The largest ``max_payload_depth`` a queue accepts: deeper payloads could be stored but not always
#: decoded and validated again by a worker (Python's recursion limit).
MAX_PAYLOAD_DEPTH = 200


def _kind(value: object) -> str:
    return type(value).__name__


def _shown(value: object) -> str:
    """``repr(value)``, except that a huge integer is described rather than printed in full."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(value: Any, argument: str, low: int, high: int) -> int:
    """``value`` as a plain int within ``[low, high]``.

    :raises TypeError: not an integer (``bool`` is not one, nor ``1.0`` or ``"1"``).
    :raises ValueError: out of range.
    """
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{argument} must be an integer, got {_kind(value)} {_shown(value)}")
        value = int(value)  # an int subclass, e.g. an IntEnum member
    number: int = value
    if number < low or number > high:
        raise ValueError(f"{argument} must be between {low} and {high}, got {_shown(number)}")
    return number


def check_priority(value: Any, argument: str = "priority") -> int:
    if type(value) is int and MIN_PRIORITY <= value <= MAX_PRIORITY:
        return value
    return check_int(value, argument, MIN_PRIORITY, MAX_PRIORITY)


def _encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _plain_str(value: Any, argument: str) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (a StrEnum member): its text
    raise TypeError(f"{argument} must be a string, got {_kind(value)} {_shown(value)}")


def check_name(value: Any, argument: str) -> str:
    """A job type or queue name: a non-empty string of up to :data:`MAX_NAME_LENGTH` printable characters.

    :raises TypeError: not a string.
    :raises ValueError: empty, too long, or holding a control character or lone surrogate.
    """
    text = _plain_str(value, argument)
    if 0 < len(text) <= MAX_NAME_LENGTH and text.isprintable():
        return text
    if not text:
        raise ValueError(f"{argument} must not be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise ValueError(f"{argument} must be at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    bad = next(char for char in text if not char.isprintable())
    raise ValueError(f"{argument} must hold only printable characters, got {_shown(text)} (with {bad!a})")


def check_text(value: Any, argument: str, max_bytes: int, *, empty: bool = False) -> str:
    """A string of up to ``max_bytes`` UTF-8 bytes (non-empty unless ``empty``), with no lone surrogate.

    :raises TypeError: not a string.
    :raises ValueError: empty, too long, or not encodable as UTF-8.
    """
    text = _plain_str(value, argument)
    if not text and not empty:
        raise ValueError(f"{argument} must not be empty")
    if not _encodable(text):
        raise ValueError(f"{argument} is not valid Unicode (it holds a lone surrogate): {_shown(text)}")
    size = _utf8_length(text)
    if size > max_bytes:
        raise ValueError(f"{argument} must be at most {max_bytes} bytes (UTF-8), got {size}")
    return text


def check_meta(meta: Any) -> Mapping[str, str]:
    """``meta`` as a read-only copy: a mapping of up to :data:`MAX_META_ENTRIES` string keys to strings.

    :raises TypeError: not a mapping, or a key or value that is not a string.
    :raises ValueError: too many entries, or a key or value that is empty (keys), too long or not encodable.
    """
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping of strings to strings, got {_kind(meta)}")
    if len(meta) > MAX_META_ENTRIES:
        raise ValueError(f"meta may hold at most {MAX_META_ENTRIES} entries, got {len(meta)}")
    checked: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                "meta keys and values must be strings (they travel as message headers), got "
                f"{_kind(key)} {_shown(key)}: {_kind(value)}"
            )
        name = check_text(key, "meta key", MAX_META_KEY_BYTES)
        checked[name] = check_text(value, f"meta[{name!r}]", MAX_META_VALUE_BYTES, empty=True)
    return MappingProxyType(checked)


def check_run_at(value: Any, now: float) -> float:
    """``run_at`` (an aware datetime, or epoch seconds) as epoch seconds.

    :raises TypeError: neither a datetime nor a number.
    :raises ValueError: a naive datetime, not finite, before 1970, or more than :data:`MAX_DELAY_MS` ahead.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("run_at must be timezone-aware (naive datetimes are ambiguous)")
        when = value.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # float() of a huge int overflows; clamped, it fails the range checks below with their message
        when = float(max(min(value, 2**53), -(2**53))) if isinstance(value, int) else float(value)
    else:
        raise TypeError(
            f"run_at must be an aware datetime or epoch seconds, got {_kind(value)} {_shown(value)}"
        )
    if not math.isfinite(when):
        raise ValueError(f"run_at must be a finite time, got {_shown(value)}")
    if when < 0:
        raise ValueError(f"run_at must not be before 1970 (epoch seconds >= 0), got {_shown(value)}")
    if when > now + MAX_DELAY_MS / 1000:
        raise ValueError(
            f"run_at must be at most {MAX_DELAY_MS // 86_400_000} days ahead, got {_shown(value)}"
        )
    return when


def check_payload_limits(max_bytes: Any, max_depth: Any) -> tuple[int, int]:
    """The queue options ``max_payload_bytes`` and ``max_payload_depth``, checked.

    :raises TypeError: not integers.
    :raises ValueError: below 1, or a depth above :data:`MAX_PAYLOAD_DEPTH`.
    """
    return (
        check_int(max_bytes, "max_payload_bytes", 1, 2**62),
        check_int(max_depth, "max_payload_depth", 1, MAX_PAYLOAD_DEPTH),
    )


class PayloadLimits:
    """A queue's ``max_payload_bytes`` and ``max_payload_depth`` (checked), and the errors a serializer raises
    when a payload exceeds them (see :meth:`lssm_jobs.envelope.Serializer.encode_job`).

    :raises TypeError: not integers.
    :raises ValueError: below 1, or a depth above :data:`MAX_PAYLOAD_DEPTH`.
    """

    __slots__ = ("depth_gate", "max_bytes", "max_depth")

    def __init__(self, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, max_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH):
        self.max_bytes, self.max_depth = check_payload_limits(max_bytes, max_depth)
        #: A JSON text of up to this many characters cannot nest deeper than ``max_depth``.
        self.depth_gate = 2 * self.max_depth

    def __repr__(self) -> str:
        return f"PayloadLimits(max_bytes={self.max_bytes}, max_depth={self.max_depth})"

    def too_large(self, size: int) -> SerializationError:
        return SerializationError(
            f"payload is {size} bytes encoded, more than this queue's max_payload_bytes "
            f"({self.max_bytes}); store large data elsewhere and enqueue a reference to it"
        )

    def too_deep(self) -> SerializationError:
        return SerializationError(
            f"payload nests lists and objects more than this queue's max_payload_depth "
            f"({self.max_depth}) levels deep"
        )

    def check_encoded(self, data: Any, body: bytes) -> None:
        """The limits for a payload ``data`` whose whole envelope encodes to ``body`` (serializers that do
        not encode the payload on its own). :raises SerializationError: too large or too deep."""
        if len(body) > self.max_bytes:
            raise self.too_large(len(body))
        if depth_exceeds(data, self.max_depth):
            raise self.too_deep()


def depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists, tuples and mappings more than ``limit`` levels deep (a scalar is at
    level 0, ``{"a": [1]}`` at level 2). Walks one level at a time, without recursion."""
    level: list[Any] = [data]  # the values inside as many containers as iterations so far
    for _ in range(limit):
        below: list[Any] = []
        for value in level:
            if type(value) is dict:
                below.extend(value.values())
            elif type(value) is list or type(value) is tuple:
                below.extend(value)
            elif isinstance(value, Mapping):
                below.extend(value.values())
            elif isinstance(value, (list, tuple)):
                below.extend(value)
        if not below:
            return False
        level = below
    # Past ``limit`` levels: too deep if any of these values is a container itself.
    return any(isinstance(value, (Mapping, list, tuple)) for value in level)


# The brackets and quotes of a JSON text's bytes, as one kind of bracket ('{' and '[' nest alike); every
# other byte (letters, digits, punctuation, backslashes) is deleted.
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"')


def json_depth_exceeds(text: str, data: Any, limit: int) -> bool:
    """:func:`depth_exceeds` for ``data`` encoded as the compact JSON ``text``, by string operations in C
    rather than a walk in Python. A text with at most ``limit`` brackets is shallow enough. Otherwise the
    brackets of its structure are kept, the strings cut out (escaped backslashes and quotes first; then
    strings without brackets, the usual case, in one replace; any other string by splitting at quotes),
    and innermost pairs removed one level per pass: a wide payload empties in a few passes, a text still
    holding brackets after ``limit`` passes is too deep (confirmed on ``data``)."""
    if len(text) <= 2 * limit or text.count("[") + text.count("{") <= limit:
        return False
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    # Only strings hold non-ASCII characters, and none of them is a bracket or a quote: dropped.
    brackets = text.encode("ascii", "ignore").translate(_ONE_BRACKET, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:  # strings holding brackets
        brackets = b"".join(brackets.split(b'"')[::2])
    for _ in range(limit):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return depth_exceeds(data, limit)


def unencodable_path(data: Any) -> str | None:
    """The path (``$.items[2].name``) of the first string in ``data`` (keys included) that is not valid
    Unicode, or None. For error messages only: it walks the whole payload."""
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, Mapping):
            for key, child in value.items():
                if isinstance(key, str) and not _encodable(key):
                    return f"{path} (a key)"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(value, (list, tuple)):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(value))
    return None
