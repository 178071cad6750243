"""How the CLI shows rows and URLs: plain-text tables, short times and counts."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

# Characters data must not send to a terminal raw: controls (C0, DEL, C1: they move the cursor,
# retitle the terminal, split a row), format characters (Cf: U+202E turns the rest of the line
# right to left, zero-width ones hide text) and the line and paragraph separators (Zl, Zp).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
CELL_WIDTH = 60  # characters a table cell shows at most (README, "The CLI prints data ...")


class _Escapes(dict[int, str]):
    """str.translate's table: each character as is, or as Python writes it in a repr (\n, \x1b,
    \x9b, \u202e). Filled as characters are met: there are too many code points to list."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        self[code] = repr(char)[1:-1] if unicodedata.category(char) in _ESCAPED_CATEGORIES else char
        return self[code]


_ESCAPES = _Escapes()


def text(value: object) -> str:
    """``value`` as one printable line: controls, format characters and line separators escaped.
    Every line the CLI prints from data or from a message goes through here."""
    return str(value).translate(_ESCAPES)


def cell(value: object) -> str:
    """A table cell: :func:`text`, cut to CELL_WIDTH characters ending in "..." (``--json`` has
    the whole value), so one long value does not widen every row."""
    shown = text(value)
    return shown if len(shown) <= CELL_WIDTH else shown[: CELL_WIDTH - 3] + "..."


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[cell(value) for value in line] for line in (header, *rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*cells, strict=True)]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def health(health: Mapping[str, Any]) -> str:
    return health["state"] if not health.get("reason") else f"{health['state']} ({health['reason']})"


def run(run: Mapping[str, Any] | None) -> str:
    if run is None:
        return "-"
    return f"{run['run_id']} {run['status']} {short_time(run['last_at'])}"


def when(run: Mapping[str, Any] | None) -> str:
    return "-" if run is None else short_time(run["last_at"])


def short_time(iso: str | None) -> str:
    # None: a time no ISO-8601 parser reads (README)
    return "-" if iso is None else iso.replace("T", " ")[:16]


def count(value: int | None) -> str:
    """A count or size; None is a sum too large for a bigint (see README)."""
    return "-" if value is None else f"{value:,}"


def shown(url: Any) -> str:
    from refproj._core import where

    return where(url)
