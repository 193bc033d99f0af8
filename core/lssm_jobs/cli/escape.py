"""Showing stored text on a terminal safely.

Error messages, tracebacks, queue names and envelopes come from jobs, that is from whoever could enqueue
one. Printed raw, a newline in an error forges an extra line of ``dlq list`` output, and an escape sequence
(``\\x1b[2J``) drives the terminal. The text output of the CLI goes through :func:`escape`; ``--json``
output is exact (JSON escapes control characters itself).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every character that is not printable (control characters, line and paragraph
    separators, lone surrogates, ...) written as its Python escape: ``"a\\nb"`` prints as ``a\\nb`` on one
    line. Printable text, non-ASCII letters included, is unchanged."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def escape_lines(text: str, indent: str = "  ") -> str:
    """Multi-line text (a traceback) kept on its lines, each line escaped and indented, so no line of it
    can pass for a line of the command's own output."""
    return "\n".join(indent + escape(line) for line in text.rstrip("\n").split("\n"))
