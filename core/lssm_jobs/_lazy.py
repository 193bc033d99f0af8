"""Lazy package exports: a package names what it exports, and each name's module is imported on first use.

The plugin registry imports every plugin package to find its hooks, and ``import lssm_jobs`` starts every
command: importing the heavy modules behind their exports (Google clients, the queue machinery) only when
a name is used keeps start-up fast and free of the warnings those libraries print.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose exports ``modules`` maps to their modules.

    Example, in a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"Backend": "my_plugin.backend"}, globals())

    A name, once imported, is stored in ``namespace`` (the package's globals), so it is looked up once.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *modules})

    return __getattr__, __dir__
