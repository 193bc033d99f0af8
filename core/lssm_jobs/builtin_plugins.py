"""Built-in serializer and event sink, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from typing import Any

from lssm_jobs.events import LoggingEventSink
from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import EventSinkSpec, SerializerSpec
from lssm_jobs.serialization import JsonSerializer


@hookimpl
def lssm_jobs_serializers() -> list[SerializerSpec]:
    return [
        SerializerSpec(
            name="json",
            content_type=JsonSerializer.content_type,
            factory=JsonSerializer,
            description="compact UTF-8 JSON (the default; never pickle)",
        )
    ]


def _logging_sink(**options: Any) -> LoggingEventSink:
    return LoggingEventSink(**options)


@hookimpl
def lssm_jobs_event_sinks() -> list[EventSinkSpec]:
    return [
        EventSinkSpec(
            name="logging",
            factory=_logging_sink,
            description="logs lifecycle events to the 'lssm_jobs.events' logger (no payloads)",
        )
    ]
