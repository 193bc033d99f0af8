"""Log output for operators: ``text`` (today's lines) or ``json`` (one object per line), both with
credentials removed from every line.

A job lifecycle event logged by the ``logging`` event sink carries its fields (``extra={"lssm_jobs":
...}``), so a JSON line has ``event``, ``job_id``, ``job_type``, ``queue``, ``attempt``, ``duration_ms``
and ``error`` as keys of their own, never parsed out of the message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: The attribute of a log record that holds an event's fields (set by ``LoggingEventSink``).
EVENT_FIELDS = "lssm_jobs"

# user:password@ in any URL; password-like query options and key=value pairs.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^@\s/?#]*):([^@\s/?#]*)@")
_SECRET_OPTION = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|secret|token|api_key|apikey|credentials?)[\w.-]*)(=|\": ?\"|': ?')"
    r"([^&\s\"',;)}\]]+)"
)


def redact(text: str) -> str:
    """``text`` with the passwords of URLs (``redis://user:***@host``) and password-like options
    (``password=***``, ``"token": "***"``) replaced by ``***``."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)
    if "=" in text or ":" in text:
        text = _SECRET_OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return text


class RedactingFormatter(logging.Formatter):
    """The text format, with :func:`redact` applied to each whole line (message and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the event
    fields when the record is a job event, ``exception`` when one is attached; redacted like the text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, EVENT_FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


_notice_format: str = "text"


def notice(message: str) -> None:
    """A line for the operator on stderr, whatever the log level (a worker starting, draining, a worker
    process restarted): plain text, or a JSON object with level ``NOTICE`` in the JSON format."""
    text = redact(message)
    if _notice_format == "json":
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "level": "NOTICE",
            "logger": "lssm_jobs.cli",
            "message": text.strip(),
        }
        text = json.dumps(entry, ensure_ascii=False)
    print(text, file=sys.stderr, flush=True)


def configure_logging(level: int, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root logger for a command: one handler on ``stream`` (stderr) in the given format.

    :raises ValueError: an unknown format.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Python warnings (a library's DeprecationWarning or FutureWarning at import) go through the same
    # handler, so with --log-format json every line on stderr is still one JSON object.
    logging.captureWarnings(True)
    global _notice_format
    _notice_format = log_format
