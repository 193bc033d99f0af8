"""Developer tasks: `nox -s tests` (the README's test command), lint, typecheck, docs, bench, demo."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PLUGINS = sorted(path for path in (ROOT / "plugins").glob("*") if (path / "pyproject.toml").exists())
PLUGIN_TESTS = [str(path / "tests") for path in PLUGINS if (path / "tests").is_dir()]
EXAMPLE_PLUGIN = ROOT / "tests" / "example_plugin"


def _install_everything(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    for plugin in PLUGINS:
        extras = "[test]" if "test" in (plugin / "pyproject.toml").read_text() else ""
        session.install("-e", f"{plugin}{extras}")
    session.install("-e", str(EXAMPLE_PLUGIN))


#: The Cloud Tasks emulator pins protobuf<5, so it gets a virtualenv of its own (its tests find it here).
TASKS_EMULATOR_VENV = ROOT / ".nox" / "gcloud-tasks-emulator"
TASKS_EMULATOR = "gcloud-tasks-emulator==0.6.2"


def _tasks_emulator(session: nox.Session) -> dict[str, str]:
    """Make (once) the emulator's own virtualenv; the environment variable the plugin's tests read."""
    python = TASKS_EMULATOR_VENV / "bin" / "python"
    marker = TASKS_EMULATOR_VENV / ".installed"
    if not marker.exists() or marker.read_text() != TASKS_EMULATOR:
        session.run("python", "-m", "venv", "--clear", str(TASKS_EMULATOR_VENV), external=True)
        session.run(str(python), "-m", "pip", "install", "-q", TASKS_EMULATOR, external=True)
        marker.write_text(TASKS_EMULATOR)
    return {"LSSM_JOBS_TASKS_EMULATOR_PYTHON": str(python)}


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: core, conformance over every backend, plugins (real servers started by fixtures)."""
    _install_everything(session)
    env = _tasks_emulator(session)
    session.run("pytest", "tests", *PLUGIN_TESTS, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "core", "tests", "plugins", "bench", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install_everything(session)
    session.install("mypy>=1.10", "types-croniter")
    session.run("mypy", "core/lssm_jobs")
    for plugin in PLUGINS:
        packages = [
            str(child)
            for child in plugin.iterdir()
            if child.name.startswith("lssm_jobs_") and (child / "__init__.py").exists()
        ]
        if packages:
            session.run("mypy", "--strict", *packages)


@nox.session
def demo(session: nox.Session) -> None:
    session.install(".")
    session.run("lssm-jobs", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput and latency, side by side with peer libraries, on one local redis-server."""
    _install_everything(session)
    requirements = ROOT / "bench" / "requirements.txt"
    if requirements.exists():
        session.install("-r", str(requirements))
    session.run("python", "bench/run.py", *session.posargs)
    # Cloud Tasks through its emulator (no peers there: no other Python job library has this backend).
    session.run("python", "bench/gcp_tasks.py", env=_tasks_emulator(session))


@nox.session
def docs(session: nox.Session) -> None:
    """Check the docs: every hook, record field, conformance test, event, CLI flag and link is covered,
    and the runnable examples run (also part of the tests session)."""
    _install_everything(session)
    session.run("pytest", "tests/test_docs.py", "tests/test_scheduler_docs.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The long chaos run: thousands of jobs per backend (sqlite, Redis, Redis Cluster) through producer and
    worker processes while workers are killed and servers restarted or filled up; prints the report (a
    few minutes per backend). ``nox -s tests`` runs a short one."""
    _install_everything(session)
    session.run(
        "pytest", "tests/chaos", "-p", "no:cacheprovider", *session.posargs, env={"LSSM_CHAOS_PROFILE": "full"}
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz suite with ten times CI's budget and fresh randomness (``nox -s tests`` runs a fixed one)."""
    _install_everything(session)
    session.run("pytest", "tests/fuzz", "-p", "no:cacheprovider", *session.posargs, env={"LSSM_FUZZ_PROFILE": "full"})
