"""Developer tasks: `nox -s tests` (the README's test command), fast, lint, typecheck, docs, bench, demo."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PLUGINS = sorted(path for path in (ROOT / "plugins").glob("*") if (path / "pyproject.toml").exists())
PLUGIN_TESTS = [str(path / "tests") for path in PLUGINS if (path / "tests").is_dir()]
EXAMPLE_PLUGIN = ROOT / "tests" / "example_plugin"


def _install_everything(session: nox.Session) -> None:
    if _installed_already(session):
        return
    session.install("-e", ".[test]")
    for plugin in PLUGINS:
        extras = "[test]" if "test" in (plugin / "pyproject.toml").read_text() else ""
        session.install("-e", f"{plugin}{extras}")
    session.install("-e", str(EXAMPLE_PLUGIN))
    _mark_installed(session)


# -- reinstall only when what is installed changed ------------------------------------------------------------
# The packages are installed editable, so code changes need no reinstall; a reused virtualenv is reinstalled
# when a pyproject.toml or this file changes (new dependencies, entry points). `nox -s fast` then starts in a
# second instead of spending ~20 s in pip.


def _install_inputs() -> str:
    files = [ROOT / "pyproject.toml", ROOT / "noxfile.py", EXAMPLE_PLUGIN / "pyproject.toml"]
    files += [plugin / "pyproject.toml" for plugin in PLUGINS]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _install_marker(session: nox.Session) -> Path | None:
    location = getattr(session.virtualenv, "location", None)
    return Path(location) / ".lssm-jobs-installed" if location else None


def _installed_already(session: nox.Session) -> bool:
    marker = _install_marker(session)
    return marker is not None and marker.exists() and marker.read_text() == _install_inputs()


def _mark_installed(session: nox.Session) -> None:
    marker = _install_marker(session)
    if marker is not None:
        marker.write_text(_install_inputs())


#: The Cloud Tasks emulator pins protobuf<5, so it gets a virtualenv of its own (its tests find it here).
TASKS_EMULATOR_VENV = ROOT / ".nox" / "gcloud-tasks-emulator"
TASKS_EMULATOR = "gcloud-tasks-emulator==0.6.2"


def _tasks_emulator(session: nox.Session) -> dict[str, str]:
    """Make (once) the emulator's own virtualenv; the environment variable the plugin's tests read."""
    python = TASKS_EMULATOR_VENV / "bin" / "python"
    marker = TASKS_EMULATOR_VENV / ".installed"
    if not marker.exists() or marker.read_text() != TASKS_EMULATOR:
        session.run_install("python", "-m", "venv", "--clear", str(TASKS_EMULATOR_VENV), external=True)
        session.run_install(str(python), "-m", "pip", "install", "-q", TASKS_EMULATOR, external=True)
        marker.write_text(TASKS_EMULATOR)
    return {"LSSM_JOBS_TASKS_EMULATOR_PYTHON": str(python)}


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: core, conformance over every backend, plugins (real servers started by fixtures)."""
    _install_everything(session)
    env = _tasks_emulator(session)
    # One pytest process per core (xdist; worksteal evens out the slow files): the CI machines have 2 cores,
    # and every test starts its own servers on free ports, so the suite runs in about half the time.
    session.run("pytest", "-n", "auto", "--dist", "worksteal", "tests", *PLUGIN_TESTS, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "core", "tests", "plugins", "bench", "docs/_tools", "noxfile.py")


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


#: The peer libraries of the benchmark get a virtualenv of their own (their pins, e.g. on redis-py, must not
#: change what lssm-jobs is measured with).
BENCH_PEERS_VENV = ROOT / ".nox" / "bench-peers"


def _bench_peers(session: nox.Session) -> str:
    """Make (once, again when bench/requirements.txt changes) the peers' virtualenv; its Python."""
    python = BENCH_PEERS_VENV / "bin" / "python"
    requirements = (ROOT / "bench" / "requirements.txt").read_text()
    marker = BENCH_PEERS_VENV / ".installed"
    if not marker.exists() or marker.read_text() != requirements:
        session.run_install("python", "-m", "venv", "--clear", str(BENCH_PEERS_VENV), external=True)
        session.run_install(
            str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "bench" / "requirements.txt"), external=True
        )
        marker.write_text(requirements)
    return str(python)


def _install_as_users_do(session: nox.Session) -> None:
    """lssm-jobs and its Redis plugin as ``pip install lssm-jobs-redis`` installs them: built packages (not
    editable), default dependencies only."""
    session.install(str(ROOT), str(ROOT / "plugins" / "redis"))
    # the same version number as last time: rebuilt from the working tree regardless
    session.install("--force-reinstall", "--no-deps", str(ROOT), str(ROOT / "plugins" / "redis"))


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput and latency, side by side with peer libraries: on one local redis-server, then on sqlite
    files beside huey's SqliteHuey.

    lssm-jobs is measured as its users install it (``pip install lssm-jobs-redis``, hiredis included); the
    Redis peers run in their own virtualenv. ``nox -s bench -- --libs lssm`` measures lssm-jobs alone."""
    _install_as_users_do(session)
    session.run("python", "bench/run.py", "--peers-python", _bench_peers(session), *session.posargs)
    if not session.posargs:
        # Drain throughput of `lssm-jobs worker --processes 2` against one process, on the same redis-server.
        session.run("python", "bench/run.py", "--libs", "lssm", "--processes", "1,2", "--jobs", "20000")
        # The sqlite backend beside huey's SqliteHuey, each worker started by its CLI from this virtualenv
        # (huey has no dependencies: it changes nothing lssm-jobs is measured with).
        session.install("huey>=2.5")
        session.run("python", "bench/sqlite.py")
    # Cloud Tasks through its emulator (no peers there: no other Python job library has this backend).
    if not session.posargs:
        session.install(str(ROOT / "plugins" / "gcp-tasks"))
        session.run("python", "bench/gcp_tasks.py", env=_tasks_emulator(session))


@nox.session
def bench_without_hiredis(session: nox.Session) -> None:
    """lssm-jobs alone on Redis, installed as users do but with hiredis removed: what the C reply parser
    (a default dependency of lssm-jobs-redis) is worth (docs/performance.md)."""
    _install_as_users_do(session)
    session.run("python", "-m", "pip", "uninstall", "-y", "-q", "hiredis")
    session.run("python", "bench/run.py", "--libs", "lssm", *session.posargs)


def _redis_py_bounds() -> tuple[str, str]:
    """The lowest and the highest redis-py lssm-jobs-redis supports, as pip requirements: its pyproject's
    ``redis>=LOW,<HIGH`` as ``redis==LOW`` and ``redis>=LOW,<HIGH`` (pip takes the newest there is)."""
    text = (ROOT / "plugins" / "redis" / "pyproject.toml").read_text()
    match = re.search(r'"redis>=([0-9.]+),<([0-9.]+)"', text)
    if match is None:
        raise RuntimeError("plugins/redis/pyproject.toml must pin redis as >=LOW,<HIGH")
    low, high = match.groups()
    return f"redis=={low}", f"redis>={low},<{high}"


@nox.session
@nox.parametrize("redis_py", ["lowest", "highest"])
def redis_versions(session: nox.Session, redis_py: str) -> None:
    """The Redis plugin's tests with the lowest and with the highest redis-py it supports (CI runs both).

    The plugin reaches into redis-py's internals for its fast transports (lssm_jobs_redis.internals); these
    runs show the transports work, or fall back, across the supported range."""
    _install_everything(session)
    lowest, highest = _redis_py_bounds()
    session.install(lowest if redis_py == "lowest" else highest)
    session.run("python", "-c", "import redis; print('redis-py', redis.__version__)")
    session.run(
        "pytest", "-n", "auto", "--dist", "worksteal", "plugins/redis/tests", "-p", "no:cacheprovider", *session.posargs
    )


@nox.session
def fast(session: nox.Session) -> None:
    """The inner loop: the unit tests (in process, no servers; see conftest.py), in parallel.

    Any supported Python: `nox -s fast -P 3.10` (CI runs the oldest and the newest of SUPPORTED_PYTHONS).
    """
    _install_everything(session)
    session.run(
        "pytest", "-m", "unit", "-n", "auto", "--dist", "worksteal", "tests", *PLUGIN_TESTS, *session.posargs
    )


#: The Pythons the project supports and tests; pyproject.toml's requires-python and classifiers name them.
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")

DOCS_REQUIREMENTS = ("mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs.yml) in strict mode, with the API reference generated from the
    docstrings: a broken link or anchor, a page left out of the nav, or a docstring naming a parameter
    that does not exist fails the build. Then check the docs against the code: every hook, record field,
    conformance test, event, option and CLI flag is covered, and the runnable examples run."""
    _install_everything(session)
    session.install(*DOCS_REQUIREMENTS)
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about its successor
    session.run("mkdocs", "build", "--strict", "--clean", "--site-dir", str(ROOT / "site"))
    session.run(
        "pytest",
        "tests/test_docs.py",
        "tests/test_docs_options.py",
        "tests/test_docs_references.py",
        "tests/test_scheduler_docs.py",
        *session.posargs,
    )


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
