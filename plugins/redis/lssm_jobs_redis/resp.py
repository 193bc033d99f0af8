"""RESP2, the Redis wire protocol, for the commands this plugin writes by hand: every command built as
bytes and every reply parsed here, and nowhere else.

Most calls go through redis-py. The hot paths (script calls over the pipelined channel of
:mod:`.channel`, pushes from synchronous code in :mod:`.blocking`) write their commands themselves:
:func:`pack_command` for a command from plain values, and, for the two commands sent tens of thousands of
times a second, encoders that write the arguments of a push (:func:`push_arguments`) and of a settle
(:func:`settle_arguments`) straight into RESP. Replies are parsed by hiredis' C reader when it is
installed (a dependency of lssm-jobs-redis), else by :class:`RespParser`; error replies become redis-py's
exception classes (:func:`as_exception`), so callers handle one set of errors whichever way a call went.

RESP2 in brief: a command is an array of bulk strings, ``*<count>\\r\\n`` then ``$<length>\\r\\n<bytes>\\r\\n``
per argument. Replies are simple strings (``+``), errors (``-``), integers (``:``), bulk strings (``$``,
length -1 for nil) and arrays (``*``, nestable).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from lssm_jobs.backends.base import OutgoingJob
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

_hiredis: Any
try:  # hiredis parses replies in C (installed with lssm-jobs-redis)
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

#: An empty bulk string.
EMPTY_BULK = b"$0\r\n\r\n"

_ERRORS: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError,
    "LOADING": BusyLoadingError,
    "READONLY": ReadOnlyError,
    "CLUSTERDOWN": ClusterDownError,
    "TRYAGAIN": TryAgainError,
    "MASTERDOWN": ConnectionError,
    "OOM": OutOfMemoryError,
}


# -- commands ----------------------------------------------------------------------------------------------


def array_head(count: int) -> bytes:
    """The start of a command of ``count`` arguments."""
    return b"*%d\r\n" % count


def bulk(data: bytes) -> bytes:
    """One argument: ``data`` as a bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulk_text(value: str | int) -> bytes:
    """A text or integer argument as a bulk string (text as UTF-8; surrogate escapes give back the bytes a
    name read from Redis had)."""
    data = value.encode(errors="surrogateescape") if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_command(args: Sequence[Any], count: int | None = None) -> bytes:
    """RESP encoding of one command: bytes as they are, str as UTF-8, int and float as text.

    :param count: the number of arguments in the whole command when more follow, already encoded.
    :raises TypeError: an argument of another type.
    """
    parts = [b"*%d\r\n" % (len(args) if count is None else count)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = str(arg).encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis: use bytes, str, int or float")
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


def command_prefix(args: Sequence[Any]) -> bytes:
    """The arguments ``args`` encoded, without the array head: the fixed start of a command whose length
    varies (see :func:`join_command`)."""
    encoded = pack_command(args)
    return encoded[encoded.index(b"\r\n") + 2 :]


def join_command(count: int, parts: Sequence[bytes]) -> bytes:
    """A command of ``count`` arguments from arguments already encoded (``parts``, joined as they are)."""
    return b"".join((b"*%d\r\n" % count, *parts))


def push_command(
    invocation: bytes, now_ms: int, jobs: Sequence[OutgoingJob], heads: dict[tuple[str, str, int], bytes]
) -> bytes:
    """A whole push call: ``invocation`` (the 5 arguments before the clock, from :func:`command_prefix`:
    ``FCALL <push> 1 <route> <prefix>`` or ``EVALSHA ...``), the clock in ms, then :func:`push_arguments`."""
    count, arguments = push_arguments(jobs, heads)
    now = b"%d" % now_ms
    return b"".join((b"*%d\r\n" % (6 + count), invocation, b"$%d\r\n%b\r\n" % (len(now), now), *arguments))


def push_arguments(
    jobs: Sequence[OutgoingJob], heads: dict[tuple[str, str, int], bytes]
) -> tuple[int, list[bytes]]:
    """The arguments of a push after its clock (see ``lua/push.lua``), encoded, and how many there are: the
    number of kinds of job, each kind (type, queue, priority, created_at: what the jobs of one
    ``enqueue_many`` share) written once, then 5 arguments per job (id, kind number, run_at or empty when
    it equals created_at, dedupe key or empty, body).

    :param heads: a cache of encoded (type, queue, priority) triples, kept by the caller between calls.
    """
    wire: list[bytes] = []
    kinds: dict[tuple[str, str, int, float], bytes] = {}
    kind_wire: list[bytes] = []
    last: tuple[str, str, int, float] | None = None
    number = b""
    for job in jobs:
        created = job.created_at
        if last is None or not (
            job.type is last[0] and job.queue is last[1] and job.priority == last[2] and created is last[3]
        ):
            last = (job.type, job.queue, job.priority, created)
            found = kinds.get(last)
            if found is None:
                head = heads.get(last[:3])
                if head is None:
                    head = b"".join(
                        b"$%d\r\n%b\r\n" % (len(field), field)
                        for field in (job.type.encode(), job.queue.encode(), b"%d" % job.priority)
                    )
                    if len(heads) < 1024:
                        heads[last[:3]] = head
                created_text = repr(float(created)).encode()
                kind_wire.append(head + b"$%d\r\n%b\r\n" % (len(created_text), created_text))
                index = b"%d" % (len(kinds) + 1)
                found = kinds[last] = b"$%d\r\n%b\r\n" % (len(index), index)
            number = found
        job_id = job.id.encode()
        run_at = b"" if job.run_at == created else repr(float(job.run_at)).encode()
        dedupe = job.dedupe_key.encode() if job.dedupe_key else b""
        body = job.body
        wire.append(
            b"$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
            % (len(job_id), job_id, number, len(run_at), run_at, len(dedupe), dedupe, len(body), body)
        )
    count = b"%d" % len(kinds)
    return 1 + 4 * len(kinds) + 5 * len(jobs), [b"$%d\r\n%b\r\n" % (len(count), count), *kind_wire, *wire]


_SETTLE_OPS = {name: bulk(name.encode()) for name in ("ack", "retry", "dead", "release", "extend", "cancel")}


def delivery_arguments(job_id: str, token: bytes, queue: str) -> bytes:
    """What every settle operation of one delivery sends (see :func:`settle_arguments`), encoded once per
    delivery: the id, token and queue as three bulk strings (what :func:`bulk_text` and :func:`bulk` give,
    written out in one expression since it runs for every leased job)."""
    job = job_id.encode(errors="surrogateescape")
    name = queue.encode(errors="surrogateescape")
    return b"$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(job), job, len(token), token, len(name), name)


def settle_arguments(op: str, delivery: bytes, extra: Sequence[str | int]) -> bytes:
    """The 7 arguments of one settle operation (see ``lua/settle.lua``): its name, the delivery's id,
    token and queue (``delivery``, from :func:`delivery_arguments`), and up to 3 more, empty when absent."""
    head = _SETTLE_OPS[op] + delivery
    if not extra:
        return head + EMPTY_BULK + EMPTY_BULK + EMPTY_BULK
    encoded = [bulk_text(value) for value in extra]
    encoded.extend([EMPTY_BULK] * (3 - len(encoded)))
    return head + b"".join(encoded)


# -- replies -----------------------------------------------------------------------------------------------


class ReplyError(Exception):
    """An error reply as parsed; :func:`as_exception` turns it into the matching redis-py exception."""


def as_exception(error: BaseException) -> Exception:
    """The redis-py exception for an error reply (``NOSCRIPT ...`` is a ``NoScriptError``, and so on)."""
    text = str(error)
    code = text.split(" ", 1)[0]
    if code == "MOVED":
        return MovedError(text.split(" ", 1)[1])
    if code == "ASK":
        return AskError(text.split(" ", 1)[1])
    kind = _ERRORS.get(code)
    if kind is not None:
        return kind(text)
    return ResponseError(text)


class ReplyReader(Protocol):
    """Incremental reply parsing: ``feed(data)``, then ``gets()`` until it returns ``False``. Error replies
    come back as :class:`ReplyError` instances (not raised)."""

    def feed(self, data: bytes) -> None: ...

    def gets(self) -> Any: ...


class RespParser:
    """The pure-Python :class:`ReplyReader`, used where hiredis is not installed."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        try:
            value, position = self._parse(self._position)
        except IndexError:  # incomplete reply: wait for more data
            return False
        self._position = position
        if position == len(self._buffer):
            self._buffer.clear()
            self._position = 0
        elif position > 65_536:
            del self._buffer[:position]
            self._position = 0
        return value

    def _parse(self, position: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", position)
        if end < 0:
            raise IndexError
        kind = buffer[position]
        if kind == 36:  # $ bulk string
            length = int(buffer[position + 1 : end])
            if length < 0:
                return None, end + 2
            start = end + 2
            stop = start + length
            if len(buffer) < stop + 2:
                raise IndexError
            return bytes(buffer[start:stop]), stop + 2
        if kind == 42:  # * array
            count = int(buffer[position + 1 : end])
            if count < 0:
                return None, end + 2
            items = []
            position = end + 2
            parse = self._parse
            for _ in range(count):
                item, position = parse(position)
                items.append(item)
            return items, position
        if kind == 58:  # : integer
            return int(buffer[position + 1 : end]), end + 2
        if kind == 43:  # + simple string
            return bytes(buffer[position + 1 : end]), end + 2
        if kind == 45:  # - error
            return ReplyError(buffer[position + 1 : end].decode(errors="replace")), end + 2
        raise ConnectionError(f"unexpected RESP type byte {chr(kind)!r} from Redis")


def reply_reader() -> ReplyReader:
    """A new reply parser: hiredis' when installed, else :class:`RespParser`."""
    if _hiredis is not None:
        reader: ReplyReader = _hiredis.Reader(replyError=ReplyError)
        return reader
    return RespParser()


def reader_name() -> str:
    """Which parser :func:`reply_reader` makes: ``"hiredis"`` or ``"python"``."""
    return "hiredis" if _hiredis is not None else "python"
