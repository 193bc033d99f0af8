"""Process sizes: resident memory (RSS) without psutil, and human sizes for ``--max-memory``."""

from __future__ import annotations

import os
import re
import resource
import sys

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``"512MB"``, ``"512M"``, ``"512MiB"``, ``"1.5G"`` or bytes (``"1048576"``) -> bytes (binary units:
    a memory limit is compared with RSS, which the kernel counts in pages of 1024-multiples).

    :raises ValueError: not a size, or not above zero.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"expected a size like 512MB, 1.5GB or a number of bytes, got {text!r}")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise ValueError(f"a size must be above zero, got {text!r}")
    return value


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | None = None) -> int | None:
    """The resident set size of process ``pid`` (this process when None), in bytes.

    Read from ``/proc/<pid>/statm`` (Linux). Elsewhere, for this process only, the peak RSS from
    ``getrusage`` (an upper bound of the current size); None when it cannot be known.
    """
    path = f"/proc/{'self' if pid is None else pid}/statm"
    try:
        with open(path, "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    if pid is not None and pid != os.getpid():
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
