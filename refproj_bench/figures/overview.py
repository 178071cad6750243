"""Figures 1 and 2: the overview read (``list()`` cold and warm) against its baselines, and the
SQL statements one read takes.

Goals (BENCHMARK.md): naive / list-cold >= 100x at S and >= 1,000x at M; list-cold / raw fetch
<= 2x; statements per overview read constant (1-2) across profiles. Issue 11: ``await
AsyncProjection.list()`` / ``Projection.list()`` (both cold) <= 1.2x.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import psycopg

from refproj.projection import Projection
from refproj.projection_async import AsyncProjection
from refproj_bench.baselines import LIVE_QUERY, RAW_FETCH, SUMMARIES_FETCH, naive_overview
from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, StatementCounter, goal, ms, ratio, rounds, sample, stats, timed, x


def measure(url: str, it: Iterations, say: Progress) -> Json:
    out: Json = {}
    say("overview reads: list() cold, raw fetch and connection_summaries(), interleaved")
    with (
        Projection(url, read_reuse=0, staleness_bound=None) as cold,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        first = cold.list()  # opens the pool's connection; not counted
        counter = StatementCounter(cold.engine)
        cold_samples: list[float] = []
        raw_samples: list[float] = []
        summaries_samples: list[float] = []

        def cold_read() -> None:
            cold._reads.forget()
            cold.list()

        def raw_read() -> None:
            conn.execute(RAW_FETCH).fetchall()

        def summaries_read() -> None:
            conn.execute(SUMMARIES_FETCH).fetchall()

        for _ in rounds(it.overview_reads):
            cold_samples.append(timed(cold_read))
            raw_samples.append(timed(raw_read))
            summaries_samples.append(timed(summaries_read))
        list_statements = counter.count / len(cold_samples)
        connections = len(first)

    say("overview reads: await AsyncProjection.list() cold, interleaved with Projection.list() cold")
    async_samples, sync_samples = asyncio.run(_async_and_sync(url, it))

    say("overview reads: list() warm (default read reuse)")
    with Projection(url, staleness_bound=None) as warm:
        warm.list()
        warm_samples = [timed(warm.list) for _ in range(it.warm_reads)]

    say("overview reads: live query over the source tables")
    with psycopg.connect(url, autocommit=True) as conn:
        live_samples = sample(lambda: conn.execute(LIVE_QUERY).fetchall(), it.live_reads)

    say(f"overview reads: naive, {connections} connections")
    naive_statements: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:

        def naive_read() -> None:
            naive_statements.append(naive_overview(conn)[1])

        naive_samples = sample(naive_read, it.naive_reads, say=say, what="naive read")

    ov: Json = {
        "list_cold": stats(cold_samples),
        "list_warm": stats(warm_samples),
        "raw_fetch": stats(raw_samples),
        "summaries_fetch": stats(summaries_samples),
        "live_query": stats(live_samples),
        "naive": stats(naive_samples),
        "async_list_cold": stats(async_samples),
        "sync_list_cold": stats(sync_samples),
    }
    ov["ratio_async_over_sync_list"] = ratio(ov["async_list_cold"]["p50_ms"], ov["sync_list_cold"]["p50_ms"])
    ov["ratio_naive_over_list_cold"] = ratio(ov["naive"]["p50_ms"], ov["list_cold"]["p50_ms"])
    ov["ratio_live_over_list_cold"] = ratio(ov["live_query"]["p50_ms"], ov["list_cold"]["p50_ms"])
    ov["ratio_list_cold_over_raw_fetch"] = ratio(ov["list_cold"]["p50_ms"], ov["raw_fetch"]["p50_ms"])
    out["connections"] = connections
    out["overview"] = ov
    out["statements"] = {
        "list": round(list_statements, 2),
        "naive": round(statistics.mean(naive_statements), 2),
    }
    return out


async def _async_and_sync(url: str, it: Iterations) -> tuple[list[float], list[float]]:
    """Seconds per cold overview read, ``await`` on the async twin and a call on the sync one,
    call by call in one process (the sync call blocks this loop, which serves nothing else)."""
    async_samples: list[float] = []
    sync_samples: list[float] = []
    async with AsyncProjection(url, read_reuse=0, staleness_bound=None) as aproj:
        with Projection(url, read_reuse=0, staleness_bound=None) as proj:
            await aproj.list()  # open each pool's connection; not counted
            proj.list()
            for _ in rounds(it.overview_reads):
                started = time.perf_counter()
                await aproj.list()
                async_samples.append(time.perf_counter() - started)
                sync_samples.append(timed(proj.list))
    return async_samples, sync_samples


def goals(results: Json) -> list[Json]:
    profiles: dict[str, Json] = results["profiles"]
    out: list[Json] = []
    for name, p in profiles.items():
        value = p["overview"]["ratio_naive_over_list_cold"]
        bar = {"S": 100.0, "M": 1000.0, "L": 1000.0}.get(name)
        met = None if bar is None or value is None else value >= bar
        out.append(goal("naive / list-cold", ">= 100x at S, >= 1,000x at M", name, x(value), met, value))
    for name, p in profiles.items():
        value = p["overview"]["ratio_list_cold_over_raw_fetch"]
        met = None if value is None else value <= 2.0
        out.append(goal("list-cold / raw-fetch", "<= 2x", name, x(value), met, value))
    for name, p in profiles.items():
        value = p["overview"].get("ratio_async_over_sync_list")
        met = None if value is None else value <= 1.2
        out.append(goal("await list() / list()", "<= 1.2x", name, x(value), met, value))
    if profiles:
        counts = {name: p["statements"]["list"] for name, p in profiles.items()}
        shown = ", ".join(f"{c:g} ({n})" for n, c in counts.items())
        constant = all(1 <= c <= 2 for c in counts.values()) and len(set(counts.values())) == 1
        out.append(
            goal("statements per overview read", "constant (1-2)", ", ".join(counts), shown, constant, counts)
        )
    return out


def _dist(key: str) -> Cell:
    return lambda p: f"{ms(p['overview'][key]['p50_ms'])} / {ms(p['overview'][key]['p95_ms'])}"


def _sizes(p: Json) -> str:
    counts = p["counts"]
    return f"{counts['spine_events']:,} / {counts['runs']:,} / {p['connections']:,}"


ROWS: list[tuple[str, Cell]] = [
    ("spine events / runs / visible connections", _sizes),
    ("overview `list()` cold, p50 / p95 (ms)", _dist("list_cold")),
    ("overview `list()` warm, p50 / p95 (ms)", _dist("list_warm")),
    ("raw fetch of `connection_summary`, p50 / p95 (ms)", _dist("raw_fetch")),
    ("(diagnostic) `connection_summaries()` via psycopg, p50 / p95 (ms)", _dist("summaries_fetch")),
    ("live query over source tables, p50 / p95 (ms)", _dist("live_query")),
    ("naive N+1 (old system), p50 / p95 (ms)", _dist("naive")),
    ("`await AsyncProjection.list()` cold, p50 / p95 (ms)", _dist("async_list_cold")),
    ("`Projection.list()` cold, interleaved with it, p50 / p95 (ms)", _dist("sync_list_cold")),
    ("naive / list-cold", lambda p: x(p["overview"]["ratio_naive_over_list_cold"])),
    ("list-cold / raw-fetch", lambda p: x(p["overview"]["ratio_list_cold_over_raw_fetch"])),
    ("await list() / list() (cold)", lambda p: x(p["overview"].get("ratio_async_over_sync_list"))),
    (
        "SQL statements per overview read: `list()` / naive",
        lambda p: f"{p['statements']['list']:g} / {p['statements']['naive']:,.0f}",
    ),
]

DEFINITIONS = [
    "- **`list()` cold**: `Projection(read_reuse=0, staleness_bound=None)`, in-process reuse forgotten",
    "  before every call, so each call is one round trip (pooled connection, JSON rows parsed).",
    "  Interleaved call by call with the **raw fetch**: `SELECT * FROM refproj.connection_summary`",
    "  through psycopg, all rows fetched, nothing else (the floor for serving the overview).",
    "- **(diagnostic) `connection_summaries()`**: `SELECT * FROM refproj.connection_summaries()`",
    "  through psycopg, interleaved with the two above: the typed overview a DBA reads, with",
    "  freshness and health as jsonb columns. `list()` reads the same rows as JSON text serialised",
    "  at refresh time (`refproj.connection_summaries_json()`), which is why it can beat this.",
    "- **`await AsyncProjection.list()` / `Projection.list()`**: both with `read_reuse=0`, call by",
    "  call in one process (an event loop doing nothing else), each a round trip plus the JSON parse",
    "  and freeze; the price of the asyncio twin (psycopg's async connection, SQLAlchemy's async pool).",
    "- **`list()` warm**: a default `Projection` called repeatedly: answers reused within `read_reuse`.",
    "- **live query**: one statement computing the overview from the source tables:",
    "  `refproj.connection_evidence` with freshness and health, not the materialized view.",
    "- **naive**: the old system, N+1 through psycopg: the visible connections, then per connection its",
    "  latest run and its latest successful run (each grouping the connector's spine events by run",
    "  through `spine_events_source_run_summary_idx`), its retained stream rows and its retained",
    "  connection row: 1 + 4 x connections statements.",
    "- **statements per read**: counted with an SQLAlchemy `before_cursor_execute` listener on the",
    "  `Projection`'s engine (for `list()`), and by the naive code itself.",
]
