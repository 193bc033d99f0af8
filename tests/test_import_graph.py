"""Module boundaries: the import graph of ``lssm_jobs`` and of every plugin package has no cycles, and no
runtime module imports pytest.

The graph is built from the source with :mod:`ast`, not by importing anything, and counts every ``import``
statement: module-level, inside functions (lazy imports), and under ``if TYPE_CHECKING:`` (a type-only
cycle still ties two modules' interfaces together). An edge points at the most specific module named:
``from lssm_jobs.scheduler import triggers`` depends on ``lssm_jobs.scheduler.triggers``, ``from
lssm_jobs.queue import JobQueue`` on ``lssm_jobs.queue``. Parent packages are not edges: a package's
``__init__`` re-exporting its own modules is not a cycle.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Collection, Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = (
    ROOT / "core" / "lssm_jobs",
    *sorted(path for path in ROOT.glob("plugins/*/lssm_jobs_*") if (path / "__init__.py").exists()),
)
#: Modules allowed to import pytest: the test-support package that ships the conformance suites.
TEST_SUPPORT = ("lssm_jobs.testing",)


@attrs.frozen
class Import:
    target: str  # a module name as written (absolute), possibly outside the packages
    line: int


def _module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package_dir in PACKAGE_DIRS:
        for path in sorted(package_dir.rglob("*.py")):
            parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(module: str, path: Path, modules: Collection[str]) -> Iterator[Import]:
    """Every module ``module`` imports, wherever the statement is (``ast.walk`` reaches function bodies and
    ``if TYPE_CHECKING:`` blocks alike). ``from pkg import name`` imports ``pkg.name`` when that is one of
    ``modules``, else ``pkg``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(submodule if submodule in modules else base, node.lineno)


def _graph() -> tuple[dict[str, dict[str, int]], dict[str, list[Import]]]:
    """Edges between our modules (module -> imported module -> line), and every import of each module."""
    modules = _module_files()
    edges: dict[str, dict[str, int]] = {name: {} for name in modules}
    everything: dict[str, list[Import]] = {}
    for name, path in modules.items():
        everything[name] = list(_imports(name, path, modules))
        for item in everything[name]:
            if item.target in modules and item.target != name:
                edges[name].setdefault(item.target, item.line)
    return edges, everything


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through
    them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(component, edges) for component in components]


def _one_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node]):
                if target == start:
                    return [*paths[node], start]
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def _describe(cycle: list[str], edges: dict[str, dict[str, int]]) -> str:
    modules = _module_files()
    steps = [
        f"{source} ({modules[source].relative_to(ROOT)}:{edges[source][target]}) imports {target}"
        for source, target in itertools.pairwise(cycle)
    ]
    return "\n  ".join(steps)


def _is_test_support(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in TEST_SUPPORT)


def test_the_packages_are_found() -> None:
    modules = _module_files()
    assert "lssm_jobs.queue" in modules
    assert any(name.startswith("lssm_jobs_redis") for name in modules)


def test_no_import_cycles() -> None:
    edges, _ = _graph()
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n  " + "\n\n  ".join(_describe(cycle, edges) for cycle in cycles)


def test_no_runtime_module_imports_pytest() -> None:
    _, everything = _graph()
    offenders = [
        f"{name}:{item.line} imports {item.target}"
        for name, found in everything.items()
        if not _is_test_support(name)
        for item in found
        if item.target.split(".")[0] in ("pytest", "_pytest") or _is_test_support(item.target)
    ]
    assert not offenders, "runtime modules import test support:\n" + "\n".join(offenders)


def test_the_testing_helpers_and_process_tools_work_without_pytest() -> None:
    """The benchmarks run where lssm-jobs is installed as users install it (no pytest) and start workers
    through lssm_jobs.testing.processes; only the conformance suites need pytest."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pytest'] = None\n"  # any import of pytest now fails
        "import lssm_jobs.testing.processes, lssm_jobs.testing.helpers\n"
        "from lssm_jobs.testing import run_async, wait_until\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import a.b\n", {"a.b"}),
        ("from a import b\n", {"a.b"}),  # a.b is a module: only it
        ("from a import x\n", {"a"}),  # x is a name in a
        ("from a import b, x\n", {"a", "a.b"}),
        ("def f():\n    from a.b import y\n", {"a.b"}),  # function-level
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import b\n", {"a.b"}),
        ("from .b import y\n", {"a.b"}),  # relative, from module a.c
    ],
)
def test_edges_are_read_like_this(source: str, expected: set[str], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "c.py").write_text(source)
    modules = {"a", "a.b", "a.c"}
    found = _imports("a.c", tmp_path / "a" / "c.py", modules)
    assert {item.target for item in found if item.target in modules} == expected


def test_a_cycle_is_reported_with_its_lines() -> None:
    edges = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 7}, "d": {"a": 1}}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
