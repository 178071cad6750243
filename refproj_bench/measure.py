"""Sampling, summary statistics and the number formats every figure shares."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import event

from refproj.queries import QUERIES
from refproj_bench.config import Budget, Json, Progress

# One cell of a figure's row in the markdown table: from one profile's results.
Cell = Callable[[Json], str]


def rounds(budget: Budget) -> Iterator[int]:
    started = time.perf_counter()
    n = 0
    while n < budget.n and (n < budget.minimum or time.perf_counter() - started < budget.seconds):
        yield n
        n += 1


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def sample(
    fn: Callable[[], object], budget: Budget, *, say: Progress | None = None, what: str = "sample"
) -> list[float]:
    """Seconds per call of ``fn``, as many calls as ``budget`` allows."""
    samples: list[float] = []
    for n in rounds(budget):
        samples.append(timed(fn))
        if say is not None:
            say(f"  {what} {n + 1}: {samples[-1] * 1000:,.1f} ms")
    return samples


def stats(samples_s: Sequence[float]) -> Json:
    """n, p50, p95 (nearest rank), min and max, in milliseconds."""
    if not samples_s:
        return {"n": 0, "p50_ms": math.nan, "p95_ms": math.nan, "min_ms": math.nan, "max_ms": math.nan}
    ms = sorted(s * 1000 for s in samples_s)
    rank95 = max(0, math.ceil(0.95 * len(ms)) - 1)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 4),
        "p95_ms": round(ms[rank95], 4),
        "min_ms": round(ms[0], 4),
        "max_ms": round(ms[-1], 4),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or math.isnan(numerator):
        return None
    return round(numerator / denominator, 2)


def x(value: float | None) -> str:
    """A ratio as shown in the tables: ``1,234x`` or ``1.23x``."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def ms(value: float) -> str:
    """Milliseconds with the digits that matter at their size."""
    if math.isnan(value):
        return "n/a"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def goal(figure: str, goal: str, profile: str, shown: str, met: bool | None, value: Any) -> Json:
    """One line of the goals table: ``met`` is None where the goal does not apply to the profile."""
    return {"figure": figure, "goal": goal, "profile": profile, "measured": shown, "value": value, "met": met}


_SESSION_SETTINGS = QUERIES["session_settings"]


class StatementCounter:
    """Counts the statements sent on an SQLAlchemy engine's connections.

    ``Projection`` sends its statements on the psycopg connection under each pooled one (not
    through SQLAlchemy's execute, so SQLAlchemy's ``before_cursor_execute`` never sees them):
    every connection checked out from now on gets a psycopg cursor factory that counts
    ``execute`` calls, which is where ``Connection.execute`` ends up. The per-read settings
    statement (``session_settings`` in sql/queries.sql: the read's statement_timeout and
    TimeZone, sent in the same pipeline and round trip as the read on engines refproj creates)
    is counted apart, in ``settings``: ``count`` is the statements that do the work.
    """

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.count = 0
        self.settings = 0
        self._lock = threading.Lock()
        counter = self

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, *args: Any, **kwargs: Any) -> Any:
                with counter._lock:
                    if args and args[0] == _SESSION_SETTINGS:
                        counter.settings += 1
                    else:
                        counter.count += 1
                return super().execute(*args, **kwargs)

        def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
            driver.cursor_factory = CountingCursor

        event.listen(engine, "checkout", checkout)
