"""Resolve ``APP`` arguments (``module:attribute``) and backend options from flags or the environment."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import attrs

from lssm_jobs.handlers import Handlers
from lssm_jobs.queue import QUEUE_OPTIONS, JobQueue, open_queue
from lssm_jobs.queue_selection import QueueSelection
from lssm_jobs.signing import SigningSerializer, signing_keys_from_environment

BACKEND_ENV = "LSSM_JOBS_BACKEND"
URL_ENV = "LSSM_JOBS_URL"
OPTIONS_ENV = "LSSM_JOBS_OPTIONS"  # JSON object of extra backend options
DEFAULT_BACKEND = "sqlite"
DEFAULT_SQLITE_PATH = "lssm-jobs.db"


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


def load_object(spec: str) -> Any:
    """Import ``module:attribute`` (attribute may be dotted), with the current directory importable."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"APP must look like 'module:attribute', got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import module {module_name!r}: {error}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


def parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"options look like key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.replace("-", "_"), value


def backend_options(backend: str, url: str | None, options: Sequence[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    env_options = os.environ.get(OPTIONS_ENV)
    if env_options:
        try:
            loaded = json.loads(env_options)
        except ValueError as error:
            raise UsageError(f"{OPTIONS_ENV} must be a JSON object: {error}") from error
        if not isinstance(loaded, dict):
            raise UsageError(f"{OPTIONS_ENV} must be a JSON object")
        result.update(loaded)
    for text in options:
        key, value = parse_option(text)
        result[key] = value
    if url:
        result["url"] = url
    elif backend == "sqlite" and "path" not in result and "url" not in result:
        result["path"] = DEFAULT_SQLITE_PATH
    return result


def build_queue(
    backend: str | None,
    url: str | None,
    options: Sequence[str],
    *,
    app: Any = None,
    queue_options: dict[str, Any] | None = None,
) -> JobQueue:
    """The queue a command works on: the APP's own JobQueue, or one opened from flags/env with the APP's
    handlers included."""
    queue_options = {key: value for key, value in (queue_options or {}).items() if value is not None}
    try:
        keys = signing_keys_from_environment()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if any(text.partition("=")[0].replace("-", "_") == "signing_key" for text in options):
        # every user of the machine can read a command line (ps): keys come from the environment
        raise UsageError("signing keys are not taken from the command line; set LSSM_JOBS_SIGNING_KEY(_FILE)")
    if isinstance(app, JobQueue):
        if keys is not None and not isinstance(app.serializer, SigningSerializer):
            # The keys from the environment apply to an APP queue without its own; one with keys keeps them.
            app.serializer = SigningSerializer(app.serializer, keys)
        if backend or url or options:
            raise UsageError(
                "APP is a JobQueue with its own backend; drop --backend/--url/--option, or point APP "
                "at a Handlers set"
            )
        for key, value in queue_options.items():
            if key in ("concurrency", "queues", "shutdown_timeout"):
                app.consume_options = _evolve(app.consume_options, key, value)
        return app
    name = backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    url = url or os.environ.get(URL_ENV)
    opts = backend_options(name, url, options)
    unknown = set(queue_options) - QUEUE_OPTIONS
    if unknown:
        raise UsageError(f"unknown queue options: {sorted(unknown)}")
    if keys is not None:
        queue_options["signing_key"] = keys
    queue = open_queue(name, **opts, **queue_options)
    if app is not None:
        if not isinstance(app, Handlers):
            raise UsageError(
                f"APP must be a JobQueue, a Handlers set, or a function returning one; got {type(app).__name__}"
            )
        queue.include(app)
    return queue


def _evolve(options: Any, key: str, value: Any) -> Any:
    if key == "queues" and not isinstance(value, QueueSelection):
        value = tuple(value)
    return attrs.evolve(options, **{key: value})
