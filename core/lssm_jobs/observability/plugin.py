"""The operations event sinks, registered through the same hook as third-party sinks
(``plugins.BUILTIN_PLUGINS`` entry ``"observability"``)."""

from __future__ import annotations

from typing import Any

from lssm_jobs.events import EventSink
from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.registrations import EventSinkSpec


def _prometheus_sink(**options: Any) -> EventSink:
    from lssm_jobs.observability.prometheus import PrometheusSink

    return PrometheusSink(**options)


@hookimpl
def lssm_jobs_event_sinks() -> list[EventSinkSpec]:
    return [
        EventSinkSpec(
            name="prometheus",
            factory=_prometheus_sink,
            description="Prometheus counters, histograms and gauges per job type and queue "
            "(needs lssm-jobs[prometheus])",
        )
    ]
