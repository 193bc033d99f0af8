"""Plugin discovery: built-ins and entry points alike, broken plugins reported and skipped, blocked and
duplicate names, and hard errors for a backend the user asked for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from lssm_jobs.errors import BackendNotFoundError, DuplicateRegistrationError
from lssm_jobs.plugins import DISABLE_ENV, load_plugins
from lssm_jobs.queue import open_queue


def _distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A real installed distribution (dist-info with entry points) on a sys.path entry."""
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lssm_jobs.plugins]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    _distribution(
        root,
        "lssm-jobs-broken",
        {"broken": "lssm_test_broken_plugin"},
        {"lssm_test_broken_plugin": "raise ImportError('needs libfoo 2.0')\n"},
    )
    _distribution(
        root,
        "lssm-jobs-typo",
        {"typo": "lssm_test_typo_plugin"},
        {
            "lssm_test_typo_plugin": """
        from lssm_jobs.hookspecs import hookimpl

        @hookimpl
        def lssm_jobs_queue_backend():  # misspelled: the spec is lssm_jobs_queue_backends
            return []
    """
        },
    )
    _distribution(
        root,
        "lssm-jobs-shadow",
        {"shadow": "lssm_test_shadow_plugin"},
        {
            "lssm_test_shadow_plugin": """
        from lssm_jobs.hookspecs import hookimpl
        from lssm_jobs.registrations import QueueBackendSpec
        from lssm_jobs.backends.memory import MemoryBackend

        @hookimpl
        def lssm_jobs_queue_backends():
            return [QueueBackendSpec(name="memory", factory=MemoryBackend),
                    QueueBackendSpec(name="shadow", factory=MemoryBackend)]
    """
        },
    )
    _distribution(
        root,
        "lssm-jobs-wrong-records",
        {"wrong": "lssm_test_wrong_plugin"},
        {
            "lssm_test_wrong_plugin": """
        from lssm_jobs.hookspecs import hookimpl

        @hookimpl
        def lssm_jobs_serializers():
            return ["not a SerializerSpec"]
    """
        },
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def test_builtins_register_through_the_hooks() -> None:
    registry = load_plugins(entry_points=False)
    assert {"memory", "sqlite"} <= set(registry.queue_backends())
    assert "json" in registry.serializers()
    assert "logging" in registry.event_sinks()
    assert all(info.builtin for info in registry.plugins())


def test_broken_third_party_plugins_are_reported_by_name_and_skipped(third_party: Path) -> None:
    registry = load_plugins()
    failures = {failure.name: failure for failure in registry.failures()}
    assert "needs libfoo 2.0" in failures["broken"].error
    assert failures["broken"].distribution == "lssm-jobs-broken"
    assert "lssm_jobs_queue_backend" in failures["typo"].error  # check_pending caught the misspelling
    assert "SerializerSpec" in failures["wrong"].error
    # Everything else still works.
    assert "memory" not in {f.name for f in registry.failures()}
    assert "shadow" in registry.queue_backends()


def test_asking_for_a_backend_whose_plugin_failed_is_a_hard_error(third_party: Path) -> None:
    registry = load_plugins()
    with pytest.raises(BackendNotFoundError) as raised:
        registry.queue_backend("broken")
    message = str(raised.value)
    assert "'broken'" in message and "needs libfoo 2.0" in message and "Available:" in message


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(BackendNotFoundError, match=r"unknown backend 'nosuch'.*Available: .*memory"):
        open_queue("nosuch")


def test_duplicate_names_are_an_error_naming_both_distributions(third_party: Path) -> None:
    registry = load_plugins()
    with pytest.raises(DuplicateRegistrationError) as raised:
        registry.queue_backend("memory")
    message = str(raised.value)
    assert "lssm-jobs-shadow" in message and "'shadow'" in message and "'memory'" in message


def test_plugins_can_be_blocked_by_name(third_party: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "shadow, broken")
    registry = load_plugins()
    assert registry.queue_backend("memory").name == "memory"  # no conflict once shadow is blocked
    assert "broken" not in {failure.name for failure in registry.failures()}
    with pytest.raises(BackendNotFoundError, match="blocked"):
        registry.queue_backend("shadow")


def test_open_queue_rejects_options_the_backend_does_not_take() -> None:
    with pytest.raises(TypeError, match="backend 'memory' rejected its options"):
        open_queue("memory", no_such_option=1)


def test_plugins_command_lists_failures(third_party: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lssm_jobs import plugins as plugins_module
    from lssm_jobs.cli import main

    plugins_module.reset_plugins()
    try:
        assert main(["plugins"]) == 0
    finally:
        plugins_module.reset_plugins()
    out = capsys.readouterr().out
    assert "memory" in out and "built in" in out
    assert "broken" in out and "FAILED" in out and "needs libfoo 2.0" in out


def test_a_plugin_serializer_is_used_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from lssm_jobs.queue import MemoryJobQueue
    from lssm_jobs.testing import wait_until

    root = tmp_path / "site"
    root.mkdir()
    _distribution(
        root,
        "lssm-jobs-sorted-json",
        {"sorted-json": "lssm_test_sorted_json"},
        {
            "lssm_test_sorted_json": """
        import json
        from lssm_jobs.hookspecs import hookimpl
        from lssm_jobs.registrations import SerializerSpec
        from lssm_jobs.serialization import JsonSerializer

        class SortedJson(JsonSerializer):
            name = "sorted-json"

            def encode(self, data):
                return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

        @hookimpl
        def lssm_jobs_serializers():
            return [SerializerSpec(name="sorted-json", content_type="application/json", factory=SortedJson)]
    """
        },
    )
    monkeypatch.syspath_prepend(str(root))
    registry = load_plugins()

    async def main() -> list[int]:
        queue = MemoryJobQueue(serializer="sorted-json", plugins=registry, sinks=[])
        seen: list[int] = []
        queue.register("sorted.job", lambda job: seen.append(job.payload["b"]))
        async with queue:
            job = await queue.enqueue("sorted.job", {"b": 2, "a": 1})
            record = await queue.backend.get(job.id)
            assert record is not None and record.body.startswith(b'{"created_at":')
            await queue.start()
            await wait_until(lambda: seen)
        return seen

    assert asyncio.run(main()) == [2]
