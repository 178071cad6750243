"""What one ``refproj browser-bench`` run reports: the ``--check`` verdict, JSON and a markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from refproj_bench.browser import Json, PageLoad


def check_failures(loads: Sequence[PageLoad]) -> list[str]:
    """What ``--check`` rejects: console errors, page errors, failed (not aborted) requests."""
    problems = []
    for load in loads:
        where = f"{load.route} ({load.viewport}, {load.cache})"
        problems += [f"{where}: console error: {m['text']}" for m in load.console_errors]
        problems += [f"{where}: page error: {e}" for e in load.page_errors]
        problems += [f"{where}: failed request {r['url']}: {r['error']}" for r in load.failed_requests]
    return problems


def as_json(loads: Sequence[PageLoad]) -> list[Json]:
    return [{**asdict(load), "failed": load.failed} for load in loads]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(loads: Sequence[PageLoad]) -> str:
    """A table of one harness run, one line per load."""
    lines = [
        "| route | viewport | cache | status | TTFB ms | DCL ms | load ms | FCP ms | LCP ms | CLS "
        "| wall ms | requests | list reads (stacked) | list read ms | console errors | failed requests |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for load in loads:
        lines.append(
            f"| `{load.route}` | {load.viewport} | {load.cache} | {load.status} | {_fmt(load.ttfb_ms)} "
            f"| {_fmt(load.dom_content_loaded_ms)} | {_fmt(load.load_ms)} | {_fmt(load.fcp_ms)} "
            f"| {_fmt(load.lcp_ms)} | {_fmt(load.cls, 3)} | {_fmt(load.wall_ms)} | {load.request_count} "
            f"| {len(load.list_reads)} ({'yes' if load.list_reads_stacked else 'no'}) "
            f"| {_fmt(load.list_read_ms)} | {len(load.console_errors)} | {len(load.failed_requests)} |"
        )
    return "\n".join(lines) + "\n"
