"""Plugin loading and the typed registry facade that the rest of lssm-jobs calls.

Built-in plugins are registered first, then every entry point in group ``lssm_jobs.plugins``, then
``check_pending()`` catches hook implementations that match no spec. A third-party plugin that fails to
import, has a misspelled hook or returns bad records is reported by name and skipped; asking for something
it would have provided is then a hard error that names the failure.

Call sites use the facade (``get_plugins().queue_backend("redis")``), never ``pm.hook.*``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
import importlib_metadata
import pluggy

from lssm_jobs.builtin_plugins import BUILTIN_PLUGINS
from lssm_jobs.errors import (
    BackendNotFoundError,
    DuplicateRegistrationError,
    PluginError,
    PluginNotFoundError,
)
from lssm_jobs.hookspecs import ENTRY_POINT_GROUP, HOOK_NAMES, PROJECT_NAME, LssmJobsSpec
from lssm_jobs.registrations import (
    EventSinkSpec,
    JobLedgerSpec,
    QueueBackendSpec,
    ResultStoreSpec,
    SchedulerStoreSpec,
    SerializerSpec,
    TriggerSpec,
)

log = logging.getLogger("lssm_jobs.plugins")

#: Comma-separated plugin (entry-point) names not to load, e.g. ``LSSM_JOBS_DISABLE_PLUGINS=redis,gcp-tasks``.
DISABLE_ENV = "LSSM_JOBS_DISABLE_PLUGINS"

# hook name -> (record type, registry kind shown to users)
_KINDS: dict[str, tuple[type[Any], str]] = {
    "lssm_jobs_queue_backends": (QueueBackendSpec, "backends"),
    "lssm_jobs_serializers": (SerializerSpec, "serializers"),
    "lssm_jobs_schedule_triggers": (TriggerSpec, "triggers"),
    "lssm_jobs_scheduler_stores": (SchedulerStoreSpec, "scheduler stores"),
    "lssm_jobs_event_sinks": (EventSinkSpec, "event sinks"),
    "lssm_jobs_job_ledgers": (JobLedgerSpec, "ledgers"),
    "lssm_jobs_result_stores": (ResultStoreSpec, "result stores"),
}
assert set(_KINDS) == set(HOOK_NAMES), "every hook spec needs a registry kind"

R = TypeVar("R")


@attrs.frozen(kw_only=True)
class PluginInfo:
    """A loaded plugin, what distribution it came from, and what it provides (kind -> names)."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    provides: dict[str, list[str]]


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that could not be loaded, with the error (shown by ``lssm-jobs plugins``)."""

    name: str
    distribution: str | None
    error: str


@attrs.frozen(kw_only=True)
class _Candidate:
    name: str
    load: Callable[[], object]
    distribution: str | None
    version: str | None
    builtin: bool


def _blocked_names(blocked: Iterable[str] | None) -> set[str]:
    names = set(blocked or ())
    names.update(part.strip() for part in os.environ.get(DISABLE_ENV, "").split(",") if part.strip())
    return names


class PluginRegistry:
    """Everything the loaded plugins provide, by kind and name. Build it with :func:`load_plugins`."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(LssmJobsSpec)
        self._records: dict[str, dict[str, Any]] = {hook: {} for hook in _KINDS}
        self._owners: dict[tuple[str, str], PluginInfo] = {}
        self._conflicts: dict[tuple[str, str], str] = {}
        self._plugins: list[PluginInfo] = []
        self._failures: list[PluginFailure] = []

    # -- loading ------------------------------------------------------------------------------------------

    def add(self, candidate: _Candidate) -> None:
        """Load and register one plugin; on any error record the failure and leave nothing behind."""
        try:
            plugin = candidate.load()
            self.manager.register(plugin, name=candidate.name)
        except Exception as error:  # a broken plugin must not take the others down
            self._fail(candidate, f"failed to load: {type(error).__name__}: {error}")
            return
        try:
            self.manager.check_pending()
            provided = self._collect(plugin, candidate)
        except Exception as error:
            self.manager.unregister(plugin)
            self._fail(candidate, f"invalid plugin: {type(error).__name__}: {error}")
            return
        info = PluginInfo(
            name=candidate.name,
            distribution=candidate.distribution,
            version=candidate.version,
            builtin=candidate.builtin,
            provides={kind: names for kind, names in provided.items() if names},
        )
        for hook, records in self._pending.items():
            for record in records:
                key = (hook, record.name)
                owner = self._owners.get(key)
                if owner is not None:
                    self._conflicts[key] = (
                        f"{_KINDS[hook][1][:-1]} {record.name!r} is registered by both plugin {owner.name!r} "
                        f"({owner.distribution or 'built in'}) and plugin {info.name!r} "
                        f"({info.distribution or 'built in'}); uninstall one, or block one with {DISABLE_ENV}"
                    )
                    log.error("%s", self._conflicts[key])
                    continue
                self._records[hook][record.name] = record
                self._owners[key] = info
        self._plugins.append(info)

    def _collect(self, plugin: object, candidate: _Candidate) -> dict[str, list[str]]:
        self._pending: dict[str, list[Any]] = {}
        provided: dict[str, list[str]] = {}
        for hook, (record_type, kind) in _KINDS.items():
            caller = getattr(self.manager.hook, hook)
            records: list[Any] = []
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                result = impl.function()
                if not isinstance(result, (list, tuple)):
                    raise PluginError(f"{hook} must return a list of {record_type.__name__}, got {result!r}")
                for record in result:
                    if not isinstance(record, record_type):
                        raise PluginError(f"{hook} returned {record!r}, not a {record_type.__name__}")
                records.extend(result)
            self._pending[hook] = records
            provided[kind] = [record.name for record in records]
        return provided

    def _fail(self, candidate: _Candidate, error: str) -> None:
        log.warning("lssm-jobs plugin %r (%s) %s", candidate.name, candidate.distribution or "?", error)
        self._failures.append(
            PluginFailure(name=candidate.name, distribution=candidate.distribution, error=error)
        )

    # -- the facade -----------------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        return list(self._plugins)

    def failures(self) -> list[PluginFailure]:
        return list(self._failures)

    def queue_backends(self) -> dict[str, QueueBackendSpec]:
        return dict(self._records["lssm_jobs_queue_backends"])

    def serializers(self) -> dict[str, SerializerSpec]:
        return dict(self._records["lssm_jobs_serializers"])

    def schedule_triggers(self) -> dict[str, TriggerSpec]:
        return dict(self._records["lssm_jobs_schedule_triggers"])

    def scheduler_stores(self) -> dict[str, SchedulerStoreSpec]:
        return dict(self._records["lssm_jobs_scheduler_stores"])

    def event_sinks(self) -> dict[str, EventSinkSpec]:
        return dict(self._records["lssm_jobs_event_sinks"])

    def job_ledgers(self) -> dict[str, JobLedgerSpec]:
        return dict(self._records["lssm_jobs_job_ledgers"])

    def result_stores(self) -> dict[str, ResultStoreSpec]:
        return dict(self._records["lssm_jobs_result_stores"])

    def _lookup(self, hook: str, name: str) -> Any:
        kind = _KINDS[hook][1][:-1]
        not_found = BackendNotFoundError if hook == "lssm_jobs_queue_backends" else PluginNotFoundError
        conflict = self._conflicts.get((hook, name))
        if conflict is not None:
            raise DuplicateRegistrationError(conflict)
        record = self._records[hook].get(name)
        if record is not None:
            return record
        failed = [failure for failure in self._failures if failure.name == name]
        available = ", ".join(sorted(self._records[hook])) or "none"
        if failed:
            raise not_found(
                f"{kind} {name!r} is not available: its plugin {failed[0].error}. Available: {available}"
            )
        blocked = name in _blocked_names(None)
        hint = f" (blocked by {DISABLE_ENV})" if blocked else ""
        raise not_found(f"unknown {kind} {name!r}{hint}. Available: {available}")

    def queue_backend(self, name: str) -> QueueBackendSpec:
        """:raises BackendNotFoundError: unknown, blocked, or its plugin failed to load (the error says which).
        :raises DuplicateRegistrationError: two plugins registered this name."""
        record: QueueBackendSpec = self._lookup("lssm_jobs_queue_backends", name)
        return record

    def serializer(self, name: str) -> SerializerSpec:
        record: SerializerSpec = self._lookup("lssm_jobs_serializers", name)
        return record

    def schedule_trigger(self, name: str) -> TriggerSpec:
        record: TriggerSpec = self._lookup("lssm_jobs_schedule_triggers", name)
        return record

    def scheduler_store(self, name: str) -> SchedulerStoreSpec:
        record: SchedulerStoreSpec = self._lookup("lssm_jobs_scheduler_stores", name)
        return record

    def event_sink(self, name: str) -> EventSinkSpec:
        record: EventSinkSpec = self._lookup("lssm_jobs_event_sinks", name)
        return record

    def job_ledger(self, name: str) -> JobLedgerSpec:
        """:raises PluginNotFoundError: unknown, blocked, or its plugin failed to load."""
        record: JobLedgerSpec = self._lookup("lssm_jobs_job_ledgers", name)
        return record

    def result_store(self, name: str) -> ResultStoreSpec:
        """:raises PluginNotFoundError: unknown, blocked, or its plugin failed to load."""
        record: ResultStoreSpec = self._lookup("lssm_jobs_result_stores", name)
        return record

    def result_store_for_backend(self, backend: str) -> ResultStoreSpec | None:
        """The result store registered for queue backend ``backend`` (its own storage), if any."""
        for spec in self._records["lssm_jobs_result_stores"].values():
            if spec.backend == backend:
                return spec  # type: ignore[no-any-return]
        return None


def _loaded(plugin: object) -> Callable[[], object]:
    return lambda: plugin


def _entry_point_candidates() -> list[_Candidate]:
    candidates = []
    for entry_point in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        candidates.append(
            _Candidate(
                name=entry_point.name,
                load=entry_point.load,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
                builtin=False,
            )
        )
    return candidates


def load_plugins(*, entry_points: bool = True, blocked: Iterable[str] | None = None) -> PluginRegistry:
    """Build a registry: built-ins, then entry points of group ``lssm_jobs.plugins``, minus blocked names.

    :param entry_points: False loads the built-ins only.
    :param blocked: plugin names not to load, in addition to those in ``LSSM_JOBS_DISABLE_PLUGINS``.
    """
    registry = PluginRegistry()
    skip = _blocked_names(blocked)
    try:
        core_version: str | None = importlib_metadata.version("lssm-jobs")
    except importlib_metadata.PackageNotFoundError:
        core_version = None
    candidates = [
        _Candidate(
            name=name, load=_loaded(plugin), distribution="lssm-jobs", version=core_version, builtin=True
        )
        for name, plugin in BUILTIN_PLUGINS
    ]
    if entry_points:
        candidates.extend(_entry_point_candidates())
    for candidate in candidates:
        if candidate.name in skip:
            log.info("lssm-jobs plugin %r blocked by %s", candidate.name, DISABLE_ENV)
            continue
        registry.add(candidate)
    return registry


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_plugins() -> PluginRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = load_plugins()
        return _registry


def reset_plugins() -> None:
    """Forget the process-wide registry so the next :func:`get_plugins` loads again (tests, reloads)."""
    global _registry
    with _registry_lock:
        _registry = None
