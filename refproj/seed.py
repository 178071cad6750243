"""The deterministic workload generator behind ``refproj seed`` (BENCHMARK.md "Workloads").

All the work is the SQL of ``sql/seed.sql``: named set-based statements that this module runs in
order, in one transaction. The same (profile, history factor, seed) always writes the same rows,
event ids, event_seq values and timestamps included: every choice is a hash of the seed, and every
timestamp is :data:`SEED_BASE_TIME` minus an offset.

At ``SEED_BASE_TIME + 1 hour`` the demo connections (present in every profile) show each health
state: amazon_work healthy, amazon_personal failing, github_personal running, laptop_home setup,
chase_savings paused, chase_joint revoked, laptop_work idle; amazon_setup is a retired setup
attempt and is not listed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from refproj._resources import read_sql
from refproj.errors import InvalidArgument
from refproj.settings import SOURCE_TABLES

__all__ = ["PROFILES", "SEED_BASE_TIME", "Profile", "load_queries", "seed"]

SEED_BASE_TIME = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""Every seeded timestamp lies before this instant; read the overview at it plus an hour."""

# The demo set every profile starts with: 4 connectors and 8 connections.
_DEMO_CONNECTORS = 4
_DEMO_CONNECTIONS = 8


@dataclass(frozen=True)
class Profile:
    """The size of a workload.

    ``runs`` is the total at history factor 1 (exact); ``events_per_run`` is the mean number of
    events of an ordinary run (started, progress, terminal). Besides those, one run in every
    ``long_run_every`` (at least one) is a long run of 5,000 to 5,500 events.
    """

    connectors: int
    connections: int
    runs: int
    events_per_run: int
    long_run_every: int = 10_000

    def __post_init__(self) -> None:
        if self.connectors < _DEMO_CONNECTORS or self.connections < _DEMO_CONNECTIONS:
            raise ValueError(
                f"a profile needs at least {_DEMO_CONNECTORS} connectors and {_DEMO_CONNECTIONS} connections"
            )
        if self.connections - _DEMO_CONNECTIONS < self.connectors - _DEMO_CONNECTORS:
            raise ValueError("a profile needs at least one connection per connector")
        if self.events_per_run < 3 or self.long_run_every < 1 or self.runs < 1:
            raise ValueError("a profile needs runs, at least 3 events per run and long_run_every >= 1")


MAX_RUNS = 2**31 - 1  # far beyond what seeds in hours; bounds --history-factor

# Seed 0 at history factor 1 writes 7,044 spine events for tiny (one long run of 5,100 events),
# 618,253 for S and 3,144,242 for M; L plans 10,453,055 run events (100 long runs).
PROFILES: dict[str, Profile] = {
    "tiny": Profile(connectors=4, connections=8, runs=200, events_per_run=10),
    "S": Profile(connectors=25, connections=60, runs=40_000, events_per_run=15),
    "M": Profile(connectors=200, connections=1_000, runs=300_000, events_per_run=10),
    "L": Profile(connectors=1_000, connections=10_000, runs=1_000_000, events_per_run=10),
}

_HEADER = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$")


def parse_queries(text: str) -> dict[str, str]:
    """Split SQL text into ``{name: statement}`` on ``-- name: <name>`` headers.

    The line after each header is its one-line description; text before the first header is the
    file's preamble.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    lines = iter(text.splitlines())
    for line in lines:
        header = _HEADER.match(line)
        if header is None:
            if current is not None:
                current.append(line)
            continue
        name = header.group("name")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        description = next(lines, "")
        if not description.startswith("-- "):
            raise ValueError(f"query {name!r} has no one-line description")
        current = queries[name] = []
    return {name: "\n".join(body).strip() for name, body in queries.items()}


@cache
def load_queries() -> dict[str, str]:
    """The named queries of ``sql/seed.sql``."""
    return parse_queries(read_sql("seed.sql"))


def seed(
    conn: psycopg.Connection[Any],
    profile: str = "tiny",
    *,
    history_factor: float = 1.0,
    seed: int = 0,
    base_time: datetime = SEED_BASE_TIME,
    progress: Callable[[str], None] | None = None,
    replace: bool = False,
) -> dict[str, int]:
    """Fill the empty source tables with the ``profile`` workload and return the row counts.

    ``history_factor`` multiplies the runs (and so the events) per connection; connectors and
    connections stay fixed. ``replace`` empties the six source tables first, in the same
    transaction, so a seed that fails leaves every row as it was. Raises
    :class:`~refproj.errors.InvalidArgument` (a ``ValueError``) for an unknown profile, a factor
    that is not a positive number, a seed outside bigint, (without ``replace``) a database
    whose source tables already hold connectors, or (with it) a source table another table's
    foreign key references, which TRUNCATE cannot empty; every argument is checked before anything is
    written. A size beyond an adopted ``integer``/``smallint`` column's range is written as its
    largest value; an id or ``event_seq`` an adopted column cannot hold raises ``InvalidArgument``
    with nothing written. Everything is written in one transaction (a savepoint if ``conn`` is already in
    one). ``base_time`` anchors every timestamp (the data is deterministic for a given seed and
    base time).
    """
    sizes = PROFILES.get(profile)
    if sizes is None:
        raise InvalidArgument(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if isinstance(history_factor, bool) or not isinstance(history_factor, int | float):
        raise InvalidArgument(f"history factor must be a number, not {type(history_factor).__name__}")
    if not (history_factor > 0 and math.isfinite(history_factor)):
        raise InvalidArgument(f"history factor must be a positive number, not {history_factor}")
    # Bounded before rounding: a huge finite factor (1e308) makes the product inf, which round()
    # cannot turn into an int (OverflowError).
    planned = sizes.runs * history_factor
    if planned > MAX_RUNS:
        raise InvalidArgument(f"history factor {history_factor:g} asks for more than {MAX_RUNS:,} runs")
    runs = max(1, round(planned))
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise InvalidArgument(f"seed must be a whole number that fits in a bigint, not {seed!r}")
    if base_time.utcoffset() is None:
        raise InvalidArgument("base time must be a timezone-aware datetime")
    queries = load_queries()
    params: dict[str, Any] = {
        "seed": seed,
        "base": base_time,
        "connectors": sizes.connectors,
        "connections": sizes.connections,
        "runs": runs,
        "events_per_run": sizes.events_per_run,
        "long_run_every": sizes.long_run_every,
    }

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    def run(name: str) -> psycopg.Cursor[dict[str, Any]]:
        return conn.cursor(row_factory=dict_row).execute(queries[name], params)

    with _workload_fits(profile), conn.transaction():
        run("prepare_transaction")
        if replace:
            params["source_tables"] = list(SOURCE_TABLES)
            references = run("foreign_references").fetchall()
            if references:
                first = references[0]
                more = f" (and {len(references) - 1} more)" if len(references) > 1 else ""
                raise InvalidArgument(
                    f"--replace cannot empty {first['referenced']}: the application's table"
                    f" {first['referencing']} references it (foreign key {first['constraint_name']}){more};"
                    " empty that table or drop its foreign key first, or seed another database"
                )
            say("emptying the source tables")
            conn.execute(f"TRUNCATE {', '.join(SOURCE_TABLES)}")
        if _one(run("refuse_populated"))["populated"]:
            raise InvalidArgument(
                "the source tables already hold connectors; seed an empty database,"
                " or pass --replace to empty them first"
            )
        run("create_seed_unit")
        run("create_seed_pick")
        run("create_seed_fit")
        run("create_seed_fit")
        run("plan_params")
        run("analyze_params")

        say(f"connectors and connections: {sizes.connectors:,} / {sizes.connections:,}")
        for name in ("plan_connectors", "insert_connectors", "plan_connections", "insert_connections"):
            run(name)

        say(f"planning {params['runs']:,} runs")
        run("plan_runs")

        say(f"spine events for {params['runs']:,} runs (about {params['runs'] * sizes.events_per_run:,})")
        params["first_event_seq"] = _one(run("next_event_seq"))["first_event_seq"]
        lifecycle_events = run("insert_lifecycle_events").rowcount
        params["run_event_seq"] = params["first_event_seq"] + lifecycle_events
        run_events = run("insert_run_events").rowcount
        params["last_event_seq"] = params["run_event_seq"] + run_events - 1
        run("set_event_seq")

        say("active runs and retained sizes")
        for name in ("insert_active_runs", "insert_retained_streams", "insert_retained_connections"):
            run(name)

        say("analyzing and counting")
        run("analyze_sources")
        counts = {key: int(value) for key, value in _one(run("count_rows")).items()}
        run("drop_helpers")
    return counts


@contextmanager
def _workload_fits(profile: str) -> Iterator[None]:
    """An id or event_seq an adopted narrower column cannot hold (sizes are capped, seed_fit),
    as one line; the seed's transaction is rolled back by then, so nothing was written."""
    try:
        yield
    except (psycopg.errors.NumericValueOutOfRange, psycopg.errors.StringDataRightTruncation) as error:
        raise InvalidArgument(
            f"the {profile} workload does not fit the source tables' columns"
            f" ({error.diag.message_primary}); nothing was written: widen the column"
            " or seed a smaller profile"
        ) from None


def _one(cursor: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("seed query returned no row")
    return row
