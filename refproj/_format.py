"""How the CLI shows rows and URLs: plain-text tables, short times and counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# C0 controls, DEL and C1 controls: data printed raw could move the cursor, retitle the terminal
# or split a row, so they are shown as Python writes them in a repr (\n, \t, \x1b, \x9b).
_CONTROLS = {c: repr(chr(c))[1:-1] for c in (*range(0x20), *range(0x7F, 0xA0))}


def text(value: object) -> str:
    """``value`` as one printable line: control characters from the data escaped."""
    return str(value).translate(_CONTROLS)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[text(cell) for cell in line] for line in (header, *rows)]
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
