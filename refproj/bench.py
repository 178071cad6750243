"""``refproj bench``: measure the projection against its baselines (spec BENCHMARK.md).

Everything for one profile is measured in one run against one seeded database, side by side, so
the ratios hold on a shared, noisy machine: the overview read through ``Projection.list()`` (cold
and warm) next to the naive N+1 reads of the old system, a live set-based query over the source
tables and a raw fetch of the materialized view; statements per read; refresh after a change;
the write cost of spine events with and without the projection; read and refresh coalescing;
detail latency; and the staleness readers see under a steady stream of writes. Refresh time
against history size is measured on separately seeded databases (history factors 1, 3, 10).

The harness creates and drops its own databases, ``refproj_bench_<profile>[_suffix]``, on the
server of the URL it is given; for the first profile it can instead use an existing database.
Results go to ``<output>/results/<UTC timestamp>.json`` and ``<output>/results/latest.json``,
and ``<output>/README.md`` is regenerated from them. Only public names are used: the SQL
objects of CONTRACT.md (plus the ``connection_evidence`` view for the live baseline) and the
``Projection`` API.
"""

from __future__ import annotations

import inspect
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy import event

from refproj import migrate
from refproj.projection import Projection
from refproj.seed import PROFILES, SEED_BASE_TIME, seed
from refproj.settings import database_url, libpq_url

__all__ = [
    "FULL",
    "QUICK",
    "BenchConfig",
    "Budget",
    "Iterations",
    "render_markdown",
    "run_bench",
    "write_outputs",
]

Progress = Callable[[str], None]
Json = dict[str, Any]

PROFILE_ORDER = ("tiny", "S", "M", "L")
HISTORY_FACTORS = (1.0, 3.0, 10.0)
# The revision with the source tables and the summary index but no projection.
WITHOUT_PROJECTION_REVISION = "0002"
_PROJECTION_DEFAULTS = inspect.signature(Projection.__init__).parameters
DEFAULT_READ_REUSE = float(_PROJECTION_DEFAULTS["read_reuse"].default)
DEFAULT_STALENESS_BOUND = float(_PROJECTION_DEFAULTS["staleness_bound"].default)


# -- how much to measure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Take up to ``n`` samples, stopping early once ``seconds`` have passed and ``minimum`` are in."""

    n: int
    seconds: float
    minimum: int


@dataclass(frozen=True)
class Iterations:
    overview_reads: Budget  # list() cold and raw fetch, interleaved
    warm_reads: int
    live_reads: Budget
    naive_reads: Budget
    details: Budget
    refreshes: Budget
    history_refreshes: Budget  # rounds over the history databases
    write_rounds: int  # rounds, each one block per database (with / without projection)
    single_rows_per_block: int
    batches_per_block: int
    batch_rows: int = 1000
    staleness_seconds: float = 10.0
    write_interval: float = 0.05
    list_threads: int = 64
    refresh_processes: int = 8
    refresh_threads: int = 8


FULL = Iterations(
    overview_reads=Budget(200, 30.0, 30),
    warm_reads=2000,
    live_reads=Budget(10, 45.0, 3),
    naive_reads=Budget(10, 60.0, 3),
    details=Budget(200, 30.0, 20),
    refreshes=Budget(11, 60.0, 3),
    history_refreshes=Budget(11, 90.0, 3),
    write_rounds=6,
    single_rows_per_block=300,
    batches_per_block=3,
)

QUICK = Iterations(
    overview_reads=Budget(30, 5.0, 5),
    warm_reads=300,
    live_reads=Budget(3, 10.0, 1),
    naive_reads=Budget(2, 15.0, 1),
    details=Budget(20, 5.0, 5),
    refreshes=Budget(3, 20.0, 2),
    history_refreshes=Budget(2, 30.0, 1),
    write_rounds=2,
    single_rows_per_block=150,
    batches_per_block=2,
    staleness_seconds=5.0,
)


@dataclass
class BenchConfig:
    """One benchmark run.

    ``server_url``: any database URL on the server; the harness connects to its ``postgres``
    database to create and drop ``refproj_bench_<profile><suffix>[_...]`` databases.
    ``existing_database``: use this (migrated or empty) database for the single profile instead of
    creating one; it is seeded when empty and never dropped, but the benchmark writes to it (runs,
    a ``bench_stream`` connector and connection, spine events). ``history_profile`` defaults to the
    smallest requested profile other than ``tiny`` (or ``tiny``): seeding M at history factor 10
    (about 30M spine events) takes too long on a small machine.
    """

    profiles: Sequence[str]
    server_url: str | None = None
    output_dir: Path | None = Path("bench")
    iterations: Iterations = FULL
    quick: bool = False
    history_profile: str | None = None
    history_factors: Sequence[float] = HISTORY_FACTORS
    existing_database: str | None = None
    name_suffix: str = ""
    seed: int = 0
    keep_databases: bool = False
    command: str = ""
    progress: Progress | None = None


# -- the run ---------------------------------------------------------------------------------------


def run_bench(config: BenchConfig) -> Json:
    """Run every phase for every profile, then the history series; return the results document."""
    profiles = list(config.profiles)
    for name in profiles:
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    if not profiles:
        raise ValueError("no profile to measure")
    if config.existing_database is not None and len(profiles) != 1:
        raise ValueError("an existing database can serve exactly one profile")
    history_profile = config.history_profile or _default_history_profile(profiles)
    if history_profile not in PROFILES:
        raise ValueError(f"unknown history profile {history_profile!r}")
    say = _progress_printer(config.progress)
    server = _Server(config.server_url or config.existing_database, config.keep_databases, say)
    started = datetime.now(UTC)
    results: Json = {
        "format": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "command": config.command,
        "quick": config.quick,
        "seed": config.seed,
        "iterations": asdict(config.iterations),
        "machine": server.describe(),
        "profiles": {},
    }
    try:
        for name in profiles:
            say(f"profile {name}")
            results["profiles"][name] = _bench_profile(server, config, name, say)
        say(f"history series on profile {history_profile}")
        results["history"] = _bench_history(server, config, history_profile, say)
    finally:
        server.drop_created()
    finished = datetime.now(UTC)
    results["finished_at"] = finished.isoformat(timespec="seconds")
    results["duration_s"] = round((finished - started).total_seconds(), 1)
    results["machine"]["load_average_end"] = _load_average()
    results["goals"] = evaluate_goals(results)
    return results


def _default_history_profile(profiles: Sequence[str]) -> str:
    ordered = sorted(profiles, key=PROFILE_ORDER.index)
    return next((name for name in ordered if name != "tiny"), ordered[0])


def _progress_printer(progress: Progress | None) -> Progress:
    if progress is not None:
        return progress
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[bench {time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return say


class _Server:
    """Creates, migrates and seeds the benchmark databases; drops the ones it created."""

    def __init__(self, url: str | None, keep: bool, say: Progress) -> None:
        self.url = database_url(url)
        self.keep = keep
        self.say = say
        self.created: list[str] = []

    def url_of(self, dbname: str) -> str:
        return libpq_url(self.url.set(database=dbname))

    def _maintenance(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url_of("postgres"), autocommit=True, connect_timeout=10)

    def create(self, dbname: str, revision: str = "head") -> str:
        with self._maintenance() as conn:
            name = sql.Identifier(dbname)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        self.created.append(dbname)
        url = self.url_of(dbname)
        migrate.upgrade(url, revision)
        return url

    def drop(self, dbname: str) -> None:
        if self.keep or dbname not in self.created:
            return
        with self._maintenance() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        self.created.remove(dbname)

    def drop_created(self) -> None:
        for dbname in list(self.created):
            try:
                self.drop(dbname)
            except psycopg.Error as error:
                self.say(f"could not drop {dbname}: {error}")

    def seed(self, url: str, profile: str, *, history_factor: float, seed_value: int) -> tuple[Json, float]:
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            counts = seed(
                conn,
                profile,
                history_factor=history_factor,
                seed=seed_value,
                progress=lambda message: self.say(f"  seed: {message}"),
            )
        return dict(counts), round(time.perf_counter() - started, 1)

    def describe(self) -> Json:
        with self._maintenance() as conn:
            row = conn.execute("SELECT current_setting('server_version'), version()").fetchone()
            assert row is not None
            settings = {
                name: _scalar(conn, "SELECT current_setting(%s)", (name,))
                for name in (
                    "shared_buffers",
                    "work_mem",
                    "maintenance_work_mem",
                    "effective_cache_size",
                    "synchronous_commit",
                    "max_parallel_workers_per_gather",
                    "jit",
                )
            }
        return {
            "nproc": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "cpu": _cpu_model(),
            "os": platform.platform(),
            "python": platform.python_version(),
            "postgresql": row[0],
            "postgresql_version": row[1],
            "postgresql_settings": settings,
            "psycopg": psycopg.__version__,
            "sqlalchemy": sqlalchemy.__version__,
            "git_commit": _git_commit(),
            "server": f"{self.url.username or ''}@{self.url.host or 'localhost'}:{self.url.port or 5432}",
            "load_average_start": _load_average(),
        }


def _bench_profile(server: _Server, config: BenchConfig, profile: str, say: Progress) -> Json:
    it = config.iterations
    base = f"refproj_bench_{profile}{config.name_suffix}"
    out: Json = {}
    if config.existing_database is not None:
        url = libpq_url(database_url(config.existing_database))
        migrate.upgrade(url)
        out["database"] = database_url(url).database
    else:
        say(f"creating {base}")
        url = server.create(base)
        out["database"] = base
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            populated = _scalar(conn, "SELECT EXISTS (SELECT 1 FROM connectors)")
        if populated:
            say(f"using the data already in {out['database']}")
            out["seed_s"] = None
        else:
            say(f"seeding {out['database']} with profile {profile}")
            _, out["seed_s"] = server.seed(url, profile, history_factor=1.0, seed_value=config.seed)
        with psycopg.connect(url, autocommit=True) as conn:
            out["revision"] = _scalar(conn, "SELECT version_num FROM alembic_version")
            say("first refresh")
            out["first_refresh_ms"] = round(_refresh(conn)[0], 1)
            out["counts"] = _counts(conn)
        out.update(_bench_overview(url, it, say))
        out["detail"] = _bench_detail(url, it, say)
        out["coalescing"] = _bench_list_coalescing(url, it, say)
        out["refresh"] = _bench_refresh(url, it, say)
        out["coalescing"].update(_bench_refresh_coalescing(url, it, say))
        out["staleness"] = _bench_staleness(url, it, say)
        noproj = f"{base}_noproj"
        say(f"creating {noproj} (revision {WITHOUT_PROJECTION_REVISION}: no projection) for the write cost")
        noproj_url = server.create(noproj, WITHOUT_PROJECTION_REVISION)
        server.seed(noproj_url, profile, history_factor=1.0, seed_value=config.seed)
        out["write_cost"] = _bench_write_cost(url, noproj_url, it, say)
        server.drop(noproj)
    finally:
        if config.existing_database is None:
            server.drop(base)
    return out


# -- 1, 2: overview reads and statements per read ------------------------------------------------------

RAW_FETCH = "SELECT * FROM refproj.connection_summary"
# A diagnostic between the two: the overview function list() wraps, fetched through psycopg.
SUMMARIES_FETCH = "SELECT * FROM refproj.connection_summaries()"

# The overview computed live from the source tables in one set-based statement: the evidence view
# the materialized view stores, plus read-time freshness and health (the rules of DOMAIN.md
# section 5, written out here so the baseline depends on no internal helper), in overview order.
LIVE_QUERY = """
SELECT
    e.*,
    jsonb_build_object(
        'status', read_time.freshness,
        'captured_at', e.last_successful_run -> 'last_at',
        'last_attempted_at', e.last_run -> 'last_at',
        'max_staleness_seconds', extract(epoch FROM e.max_staleness)) AS freshness,
    CASE
        WHEN e.status = 'revoked' THEN jsonb_build_object('state', 'revoked', 'reason', 'connection_revoked')
        WHEN e.status = 'paused' THEN jsonb_build_object('state', 'paused', 'reason', 'connection_paused')
        WHEN e.status = 'draft' THEN jsonb_build_object('state', 'setup', 'reason', 'connection_draft')
        WHEN e.last_run ->> 'status' = 'in_progress'
            THEN jsonb_build_object('state', 'running', 'reason', 'run_in_progress')
        WHEN e.last_run IS NULL THEN jsonb_build_object('state', 'idle', 'reason', 'never_run')
        WHEN e.last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
            THEN jsonb_build_object(
                'state', 'failing',
                'reason', COALESCE(e.last_run ->> 'failure_reason', e.last_run ->> 'status'))
        WHEN read_time.freshness = 'stale'
            THEN jsonb_build_object('state', 'stale', 'reason', 'past_max_staleness')
        WHEN read_time.freshness = 'current'
            THEN jsonb_build_object('state', 'healthy', 'reason', NULL)
        ELSE jsonb_build_object('state', 'unknown', 'reason', 'no_successful_run')
    END AS health
FROM refproj.connection_evidence AS e
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN e.last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
             AND (e.last_successful_run IS NULL
                  OR (e.last_run ->> 'last_at')::timestamptz
                     >= (e.last_successful_run ->> 'last_at')::timestamptz)
            THEN 'stale'
        WHEN e.last_successful_run IS NOT NULL
            THEN CASE WHEN now() - (e.last_successful_run ->> 'last_at')::timestamptz <= e.max_staleness
                      THEN 'current' ELSE 'stale' END
        ELSE 'unknown'
    END AS freshness
) AS read_time
ORDER BY e.connector_id, e.created_at, e.connector_instance_id
"""

# The naive baseline: what the console did before the projection, N+1 style. One statement for the
# visible connections, then four per connection: its latest run and its latest successful run
# (each grouping the connector's spine events by run through the source/run summary index), its
# retained stream rows and its retained connection row.
NAIVE_CONNECTIONS = """
SELECT
    ci.connector_instance_id,
    ci.connector_id,
    COALESCE(NULLIF(ci.display_name, ''), c.display_name, c.connector_id) AS display_name,
    ci.status,
    ci.source_kind,
    ci.created_at,
    c.manifest
FROM connector_instances AS ci
JOIN connectors AS c
    ON c.connector_id = ci.connector_id
WHERE NOT (ci.status = 'revoked'
           AND COALESCE(ci.source_binding ->> 'kind', '') IN ('browser_enrollment_shell',
                                                              'static_secret_draft',
                                                              'manual_upload_draft'))
ORDER BY ci.connector_id, ci.created_at, ci.connector_instance_id
"""

_NAIVE_RUN = """
SELECT
    e.run_id,
    min(e.occurred_at) AS started_at,
    max(e.occurred_at) AS last_at,
    count(*) AS event_count,
    (array_agg(e.status ORDER BY e.event_seq DESC)
        FILTER (WHERE e.event_type IN ('run.completed', 'run.failed', 'run.cancelled',
                                       'run.browser_surface_failed', 'run.abandoned')))[1] AS status,
    (array_agg(COALESCE(e.data ->> 'reason', e.data ->> 'failure_reason') ORDER BY e.event_seq)
        FILTER (WHERE e.status IN ('failed', 'rejected')))[1] AS failure_reason
FROM spine_events AS e
WHERE e.source_kind = 'connector'
  AND e.source_id = %(connector_id)s
  AND e.run_id IS NOT NULL
GROUP BY e.run_id
HAVING bool_or(COALESCE(e.connector_instance_id, e.data ->> 'connector_instance_id',
                        e.data ->> 'connection_id') = %(connection)s){extra}
ORDER BY max(e.occurred_at) DESC
LIMIT 1
"""
NAIVE_LATEST_RUN = _NAIVE_RUN.format(extra="")
NAIVE_LATEST_SUCCESS = _NAIVE_RUN.format(
    extra="\n   AND bool_or(e.event_type = 'run.completed' AND e.status = 'succeeded')"
)
NAIVE_STREAMS = """
SELECT stream, record_count, current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at
FROM retained_size_stream
WHERE connector_instance_id = %(connection)s
ORDER BY stream
"""
NAIVE_RETAINED = """
SELECT record_count, current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at
FROM retained_size_connection
WHERE connector_instance_id = %(connection)s
"""


def naive_overview(conn: psycopg.Connection[Any]) -> tuple[list[Json], int]:
    """The overview the old way; returns the rows and the number of statements it took."""
    cur = conn.cursor(row_factory=dict_row)
    connections = cur.execute(NAIVE_CONNECTIONS).fetchall()
    statements = 1
    rows: list[Json] = []
    for connection in connections:
        params = {
            "connector_id": connection["connector_id"],
            "connection": connection["connector_instance_id"],
        }
        last_run = cur.execute(NAIVE_LATEST_RUN, params).fetchone()
        last_success = cur.execute(NAIVE_LATEST_SUCCESS, params).fetchone()
        streams = cur.execute(NAIVE_STREAMS, params).fetchall()
        retained = cur.execute(NAIVE_RETAINED, params).fetchone()
        statements += 4
        rows.append(
            {
                **connection,
                "last_run": last_run,
                "last_successful_run": last_success,
                "streams_retained": streams,
                "total_records": sum(int(s["record_count"]) for s in streams),
                "retained": retained,
            }
        )
    return rows, statements


class _StatementCounter:
    """Counts the statements an SQLAlchemy engine sends (``before_cursor_execute``)."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        with self._lock:
            self.count += 1


def _bench_overview(url: str, it: Iterations, say: Progress) -> Json:
    out: Json = {}
    say("overview reads: list() cold, raw fetch and connection_summaries(), interleaved")
    with (
        Projection(url, read_reuse=0, staleness_bound=None) as cold,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        first = cold.list()  # opens the pool's connection; not counted
        counter = _StatementCounter(cold.engine)
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

        for _ in _rounds(it.overview_reads):
            cold_samples.append(_time(cold_read))
            raw_samples.append(_time(raw_read))
            summaries_samples.append(_time(summaries_read))
        list_statements = counter.count / len(cold_samples)
        connections = len(first)

    say("overview reads: list() warm (default read reuse)")
    with Projection(url, staleness_bound=None) as warm:
        warm.list()
        warm_samples = [_time(warm.list) for _ in range(it.warm_reads)]

    say("overview reads: live query over the source tables")
    with psycopg.connect(url, autocommit=True) as conn:
        live_samples = _sample(lambda: conn.execute(LIVE_QUERY).fetchall(), it.live_reads)

    say(f"overview reads: naive, {connections} connections")
    naive_statements: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:

        def naive_read() -> None:
            naive_statements.append(naive_overview(conn)[1])

        naive_samples = _sample(naive_read, it.naive_reads, say=say, what="naive read")

    out["connections"] = connections
    out["overview"] = {
        "list_cold": _stats(cold_samples),
        "list_warm": _stats(warm_samples),
        "raw_fetch": _stats(raw_samples),
        "summaries_fetch": _stats(summaries_samples),
        "live_query": _stats(live_samples),
        "naive": _stats(naive_samples),
    }
    ov = out["overview"]
    out["overview"]["ratio_naive_over_list_cold"] = _ratio(ov["naive"]["p50_ms"], ov["list_cold"]["p50_ms"])
    out["overview"]["ratio_live_over_list_cold"] = _ratio(
        ov["live_query"]["p50_ms"], ov["list_cold"]["p50_ms"]
    )
    out["overview"]["ratio_list_cold_over_raw_fetch"] = _ratio(
        ov["list_cold"]["p50_ms"], ov["raw_fetch"]["p50_ms"]
    )
    out["statements"] = {
        "list": round(list_statements, 2),
        "naive": round(statistics.mean(naive_statements), 2),
    }
    return out


# -- 6: detail -----------------------------------------------------------------------------------------


def _bench_detail(url: str, it: Iterations, say: Progress) -> Json:
    with Projection(url, read_reuse=0, staleness_bound=None) as proj:
        ids = [row["connector_instance_id"] for row in proj.list()]
        step = max(1, len(ids) // 50)
        sample = ids[::step][:50]
        say(f"detail: get() over {len(sample)} connections")
        position = 0

        def get() -> None:
            nonlocal position
            proj.get(sample[position % len(sample)])
            position += 1

        samples = _sample(get, it.details)
    return {**_stats(samples), "connections_sampled": len(sample)}


# -- 5: coalescing -------------------------------------------------------------------------------------


def _concurrent_list_statements(proj: Projection, threads: int) -> int:
    proj.list()  # opens a pooled connection
    proj._reads.forget()
    counter = _StatementCounter(proj.engine)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def read() -> None:
        barrier.wait()
        try:
            proj.list()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=read) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return counter.count


def _bench_list_coalescing(url: str, it: Iterations, say: Progress) -> Json:
    say(f"coalescing: {it.list_threads} threads call list() at once on a cold cache")
    with Projection(url, staleness_bound=None) as proj:
        default_reuse = _concurrent_list_statements(proj, it.list_threads)
    with Projection(url, read_reuse=0, staleness_bound=None) as proj:
        in_flight_only = _concurrent_list_statements(proj, it.list_threads)
    return {
        "list_threads": it.list_threads,
        "list_statements": default_reuse,
        "list_statements_without_reuse": in_flight_only,
    }


def refresh_worker(url: str, threads: int, ready: Any, results: Any) -> None:
    """One process of the refresh-coalescing phase: ``threads`` threads call refresh() at once.

    A top-level function so that multiprocessing's spawn start method can import it. One
    Projection per process, as an application has; its pool is opened before the start signal.
    Puts (calls that ran a refresh, errors, earliest and latest call start) on ``results``.
    """
    refreshed = 0
    errors: list[str] = []
    starts: list[float] = []
    lock = threading.Lock()
    try:
        with Projection(url, staleness_bound=None, pool_size=threads, max_overflow=0) as proj:
            held = [proj.engine.connect() for _ in range(threads)]
            for connection in held:
                connection.close()
            barrier = threading.Barrier(threads)

            def call() -> None:
                nonlocal refreshed
                barrier.wait()
                with lock:
                    starts.append(time.time())
                try:
                    result = proj.refresh()
                    with lock:
                        refreshed += int(result.refreshed)
                except Exception as error:
                    with lock:
                        errors.append(repr(error))

            ready.wait()
            workers = [threading.Thread(target=call) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    except Exception as error:
        errors.append(repr(error))
    results.put((refreshed, errors, min(starts, default=math.nan), max(starts, default=math.nan)))


# Backends of the benchmark database waiting on a lock inside a refresh call: the one refreshing
# (held by the gate) and the ones queued behind it on the refresh's advisory lock.
_QUEUED_REFRESHES = """
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND wait_event_type = 'Lock'
  AND query LIKE '%refresh_connection_summary%'
"""


_BACKEND_STATES = """
SELECT wait_event_type, wait_event, state, left(query, 100), count(*)
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
GROUP BY 1, 2, 3, 4
ORDER BY 5 DESC
"""


def _refresh_burst(url: str, processes: int, threads: int, gated: bool) -> Json:
    """``processes`` x ``threads`` refresh() calls released together; count the refreshes.

    Gated: a transaction holds ``connector_instances`` exclusively until every call is queued in
    the database, so the first refresh is still running when the last call arrives (the case the
    "at most 2" guarantee is about). Ungated: calls arrive as fast as the machine starts them; a
    call arriving after a refresh took its snapshot rightly costs one more refresh.
    """
    calls = processes * threads
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as gate:
        _change(conn, _targets(conn)[0], "coalesce")
        before = int(_scalar(conn, "SELECT refresh_count FROM refproj.projection_status()"))
        if gated:
            gate.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(processes + 1)
        results = ctx.Queue()
        workers = [
            ctx.Process(target=refresh_worker, args=(url, threads, ready, results), daemon=True)
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        queued = None
        waits: list[list[Any]] = []
        try:
            ready.wait(timeout=180)
            started = time.perf_counter()
            if gated:
                deadline = time.monotonic() + 60
                while (queued := int(_scalar(conn, _QUEUED_REFRESHES))) < calls:
                    if time.monotonic() > deadline:  # release anyway; say what the calls were doing
                        waits = [list(row) for row in conn.execute(_BACKEND_STATES).fetchall()]
                        break
                    time.sleep(0.02)
                gate.rollback()
            outcomes = [results.get(timeout=900) for _ in workers]
            elapsed = time.perf_counter() - started
        finally:
            if gated:
                gate.rollback()
            for worker in workers:
                worker.join(timeout=60)
                if worker.is_alive():
                    worker.kill()
        after = int(_scalar(conn, "SELECT refresh_count FROM refproj.projection_status()"))
    errors = [error for _, errs, _, _ in outcomes for error in errs]
    first = min(start for _, _, start, _ in outcomes)
    last = max(end for _, _, _, end in outcomes)
    return {
        "refreshes_executed": after - before,
        "calls_that_refreshed": sum(outcome[0] for outcome in outcomes),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "call_start_spread_ms": round((last - first) * 1000, 1),
        "calls_queued_at_release": queued,
        "backends_when_not_all_queued": waits,
        "burst_s": round(elapsed, 3),
    }


def _bench_refresh_coalescing(url: str, it: Iterations, say: Progress) -> Json:
    processes, threads = it.refresh_processes, it.refresh_threads
    say(f"coalescing: {processes} processes x {threads} threads call refresh() at once (gated)")
    gated = _refresh_burst(url, processes, threads, gated=True)
    say(f"coalescing: {processes} processes x {threads} threads call refresh() at once (ungated)")
    ungated = _refresh_burst(url, processes, threads, gated=False)
    for name, burst in (("gated", gated), ("ungated", ungated)):
        if burst["errors"]:
            say(f"refresh coalescing ({name}): {burst['errors']} errors, first: {burst['first_error']}")
    return {
        "refresh_processes": processes,
        "refresh_threads": threads,
        "refresh_calls": processes * threads,
        "refresh_errors": gated["errors"] + ungated["errors"],
        "refreshes_executed": gated["refreshes_executed"],
        "refresh_calls_that_refreshed": gated["calls_that_refreshed"],
        "refresh_gated": gated,
        "refresh_ungated": ungated,
    }


# -- 3: refresh ----------------------------------------------------------------------------------------

# A small run (started, completed) for one connection: the kind of change a refresh follows.
CHANGE_RUN = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
SELECT
    v.event_type, v.status, 'connector', %(connector_id)s, 'connector', %(connector_id)s, %(run_id)s,
    %(connection)s, clock_timestamp(), v.data
FROM (VALUES ('run.started', 'ok', '{"trigger": "bench"}'::jsonb),
             ('run.completed', 'succeeded', '{"records_emitted": 10}'::jsonb)) AS v (event_type, status, data)
"""

REFRESH = "SELECT refresh_ms FROM refproj.refresh_connection_summary()"


def _targets(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Active connections (connector id, connection id), in overview order: where changes go."""
    rows = conn.execute(
        "SELECT connector_id, connector_instance_id FROM refproj.connection_summary"
        " WHERE status = 'active' ORDER BY connector_id, created_at, connector_instance_id"
    ).fetchall()
    if not rows:
        raise RuntimeError("the benchmark database has no active connection")
    return [(row[0], row[1]) for row in rows]


def _change(conn: psycopg.Connection[Any], target: tuple[str, str], tag: str) -> None:
    run_id = f"bench_{tag}_{time.time_ns()}"
    conn.execute(CHANGE_RUN, {"connector_id": target[0], "connection": target[1], "run_id": run_id})


def _refresh(conn: psycopg.Connection[Any]) -> tuple[float, float]:
    """Run one refresh; (client ms, the refresh's own refresh_ms)."""
    started = time.perf_counter()
    row = conn.execute(REFRESH).fetchone()
    elapsed = (time.perf_counter() - started) * 1000
    assert row is not None
    return elapsed, float(row[0] or 0.0)


def _bench_refresh(url: str, it: Iterations, say: Progress) -> Json:
    say("refresh after a change")
    client: list[float] = []
    server: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        targets = _targets(conn)

        def one() -> None:
            _change(conn, targets[len(client) % len(targets)], "refresh")
            elapsed, own = _refresh(conn)
            client.append(elapsed / 1000)
            server.append(own / 1000)

        one()  # warm-up, not counted
        client.clear()
        server.clear()
        _sample(one, it.refreshes, say=say, what="refresh")
    return {**_stats(client), "server_p50_ms": _stats(server)["p50_ms"]}


# -- 7: staleness ----------------------------------------------------------------------------------------

STALENESS_CONNECTOR = "bench_stream"
STALENESS_CONNECTION = "bench_stream_live"


def _bench_staleness(url: str, it: Iterations, say: Progress) -> Json:
    say(f"staleness: a run event every {it.write_interval * 1000:.0f} ms for {it.staleness_seconds:.0f} s")
    commits: dict[str, float] = {}
    target = (STALENESS_CONNECTOR, STALENESS_CONNECTION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO connectors (connector_id, display_name) VALUES (%s, 'Bench stream')"
            " ON CONFLICT DO NOTHING",
            (STALENESS_CONNECTOR,),
        )
        conn.execute(
            "INSERT INTO connector_instances (connector_instance_id, connector_id, display_name)"
            " VALUES (%s, %s, 'Bench stream') ON CONFLICT DO NOTHING",
            (STALENESS_CONNECTION, STALENESS_CONNECTOR),
        )
        first = f"bench_stream_{time.time_ns()}"
        conn.execute(CHANGE_RUN, {"connector_id": target[0], "connection": target[1], "run_id": first})
        commits[first] = time.monotonic()
        _refresh(conn)

    stop = threading.Event()
    writer_errors: list[BaseException] = []

    def writer() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as wconn:
                tick = time.monotonic()
                n = 0
                while not stop.is_set():
                    run_id = f"bench_stream_{time.time_ns()}_{n}"
                    # The commit time: when the one-statement transaction went out (recorded first,
                    # so a reader never sees a run it cannot date).
                    commits[run_id] = time.monotonic()
                    wconn.execute(
                        CHANGE_RUN, {"connector_id": target[0], "connection": target[1], "run_id": run_id}
                    )
                    n += 1
                    tick += it.write_interval
                    time.sleep(max(0.0, tick - time.monotonic()))
        except BaseException as error:
            writer_errors.append(error)

    ages: list[float] = []
    unknown = 0
    with Projection(url) as reader:
        reader.list()  # starts the watcher
        thread = threading.Thread(target=writer, name="bench-writer")
        thread.start()
        deadline = time.monotonic() + it.staleness_seconds
        while time.monotonic() < deadline:
            rows = reader.list()
            now = time.monotonic()
            row = next((r for r in rows if r["connector_instance_id"] == STALENESS_CONNECTION), None)
            run_id = row["last_run"]["run_id"] if row and row["last_run"] else None
            if run_id in commits:
                ages.append(max(0.0, now - commits[run_id]))
            else:
                unknown += 1
            time.sleep(0.005)
        stop.set()
        thread.join()
        say("staleness: waiting for the watcher to stop")
    if writer_errors:
        raise writer_errors[0]
    stats = _stats(ages)
    return {
        "bound_s": DEFAULT_STALENESS_BOUND,
        "read_reuse_s": DEFAULT_READ_REUSE,
        "duration_s": it.staleness_seconds,
        "writes": len(commits) - 1,
        "reads": len(ages),
        "reads_without_a_known_write": unknown,
        "p50_s": round(stats["p50_ms"] / 1000, 3),
        "p95_s": round(stats["p95_ms"] / 1000, 3),
        "max_s": round(stats["max_ms"] / 1000, 3),
    }


# -- 4: write cost ---------------------------------------------------------------------------------------

WRITE_SINGLE = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
VALUES ('run.progress_reported', 'ok', 'connector', %(connector_id)s, 'connector', %(connector_id)s,
        %(run_id)s, %(connection)s, %(occurred_at)s, %(data)s::jsonb)
"""

WRITE_BATCH = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
SELECT 'run.progress_reported', 'ok', 'connector', %(connector_id)s, 'connector', %(connector_id)s,
       b.run_id, %(connection)s, b.occurred_at, b.data::jsonb
FROM unnest(%(run_ids)s::text[], %(occurred_ats)s::timestamptz[], %(datas)s::text[])
    AS b (run_id, occurred_at, data)
"""


class _EventSource:
    """Spine events of one connection, shaped like the seeded progress events, 50 per run."""

    def __init__(self, target: tuple[str, str], tag: str) -> None:
        self.target = target
        self.tag = tag
        self.n = 0
        self.at = SEED_BASE_TIME

    def next(self) -> tuple[str, datetime, str]:
        self.n += 1
        self.at += timedelta(milliseconds=250)
        data = json.dumps({"stream": "orders", "records_so_far": self.n * 25, "connector_instance_id": None})
        return f"bench_write_{self.tag}_{self.n // 50}", self.at, data


def _write_block(conn: psycopg.Connection[Any], source: _EventSource, it: Iterations, batch: bool) -> float:
    """Seconds per event for one block of single-row transactions or of batches."""
    connector_id, connection = source.target
    if batch:
        statements: list[Json] = []
        for _ in range(it.batches_per_block):
            events = [source.next() for _ in range(it.batch_rows)]
            statements.append(
                {
                    "connector_id": connector_id,
                    "connection": connection,
                    "run_ids": [e[0] for e in events],
                    "occurred_ats": [e[1] for e in events],
                    "datas": [e[2] for e in events],
                }
            )
        started = time.perf_counter()
        for params in statements:
            conn.execute(WRITE_BATCH, params)
        return (time.perf_counter() - started) / (it.batches_per_block * it.batch_rows)
    rows: list[Json] = []
    for _ in range(it.single_rows_per_block):
        run_id, at, data = source.next()
        rows.append(
            {
                "connector_id": connector_id,
                "connection": connection,
                "run_id": run_id,
                "occurred_at": at,
                "data": data,
            }
        )
    started = time.perf_counter()
    for params in rows:
        conn.execute(WRITE_SINGLE, params)
    return (time.perf_counter() - started) / it.single_rows_per_block


def _bench_write_cost(url: str, noproj_url: str, it: Iterations, say: Progress) -> Json:
    say(
        f"write cost: {it.write_rounds} rounds of {it.single_rows_per_block} single-row transactions and"
        f" {it.batches_per_block} x {it.batch_rows}-row batches, with and without the projection"
    )
    per_event: dict[tuple[str, bool], list[float]] = {}
    with psycopg.connect(url, autocommit=True) as head, psycopg.connect(noproj_url, autocommit=True) as bare:
        target = _targets(head)[0]
        databases = {"with": (head, _EventSource(target, "w")), "without": (bare, _EventSource(target, "wo"))}
        for round_no in range(it.write_rounds):
            order = ["with", "without"] if round_no % 2 == 0 else ["without", "with"]
            for batch in (False, True):
                for name in order:
                    conn, source = databases[name]
                    per_event.setdefault((name, batch), []).append(_write_block(conn, source, it, batch))

    def shape(batch: bool) -> Json:
        with_us = statistics.median(per_event[("with", batch)]) * 1e6
        without_us = statistics.median(per_event[("without", batch)]) * 1e6
        return {
            "with_projection_us": round(with_us, 2),
            "without_projection_us": round(without_us, 2),
            "ratio": _ratio(with_us, without_us),
            "blocks": len(per_event[("with", batch)]),
        }

    return {"single_row": shape(False), "batch": {**shape(True), "rows_per_batch": it.batch_rows}}


# -- history series ----------------------------------------------------------------------------------------


def _factor_name(factor: float) -> str:
    return f"{factor:g}".replace(".", "p")


def _bench_history(server: _Server, config: BenchConfig, profile: str, say: Progress) -> Json:
    it = config.iterations
    factors = list(config.history_factors)
    out: Json = {
        "profile": profile,
        "factors": {},
        "note": (
            f"refresh time against history size is measured on profile {profile}"
            + (
                ""
                if profile in ("M", "L")
                else " (seeding M at history x10, ~30M spine events, takes too long on this machine)"
            )
        ),
    }
    urls: dict[float, str] = {}
    names: list[str] = []
    try:
        for factor in factors:
            name = f"refproj_bench_{profile}{config.name_suffix}_h{_factor_name(factor)}"
            say(f"history: creating {name} (history factor {factor:g})")
            url = server.create(name)
            names.append(name)
            counts, seed_s = server.seed(url, profile, history_factor=factor, seed_value=config.seed)
            with psycopg.connect(url, autocommit=True) as conn:
                say(f"history: first refresh of x{factor:g}")
                first_ms = _refresh(conn)[0]
            urls[factor] = url
            out["factors"][_factor_name(factor)] = {
                "history_factor": factor,
                "spine_events": counts.get("spine_events"),
                "runs": counts.get("runs"),
                "seed_s": seed_s,
                "first_refresh_ms": round(first_ms, 1),
            }
        samples: dict[float, list[float]] = {factor: [] for factor in factors}
        conns = {factor: psycopg.connect(urls[factor], autocommit=True) for factor in factors}
        try:
            targets = {factor: _targets(conns[factor]) for factor in factors}

            def one_round() -> None:
                for factor in factors:  # side by side: one refresh per database per round
                    ts = targets[factor]
                    _change(conns[factor], ts[len(samples[factor]) % len(ts)], "history")
                    samples[factor].append(_refresh(conns[factor])[0] / 1000)

            one_round()  # warm-up, not counted
            for factor in factors:
                samples[factor].clear()
            _sample(one_round, it.history_refreshes, say=say, what="history round")
        finally:
            for conn in conns.values():
                conn.close()
        for factor in factors:
            out["factors"][_factor_name(factor)]["refresh"] = _stats(samples[factor])
        if factors:
            low, high = min(factors), max(factors)
            out["ratio_max_over_min"] = _ratio(
                out["factors"][_factor_name(high)]["refresh"]["p50_ms"],
                out["factors"][_factor_name(low)]["refresh"]["p50_ms"],
            )
            out["ratio_factors"] = [low, high]
    finally:
        for name in names:
            server.drop(name)
    return out


# -- goals -------------------------------------------------------------------------------------------------


def evaluate_goals(results: Json) -> list[Json]:
    """The goals of BENCHMARK.md, each with the measured value and whether it is met."""
    goals: list[Json] = []

    def add(figure: str, goal: str, profile: str, shown: str, met: bool | None, value: Any) -> None:
        goals.append(
            {
                "figure": figure,
                "goal": goal,
                "profile": profile,
                "measured": shown,
                "value": value,
                "met": met,
            }
        )

    profiles: dict[str, Json] = results["profiles"]
    for name, p in profiles.items():
        ratio = p["overview"]["ratio_naive_over_list_cold"]
        bar = {"S": 100.0, "M": 1000.0, "L": 1000.0}.get(name)
        add(
            "naive / list-cold",
            ">= 100x at S, >= 1,000x at M",
            name,
            _x(ratio),
            None if bar is None or ratio is None else ratio >= bar,
            ratio,
        )
    for name, p in profiles.items():
        ratio = p["overview"]["ratio_list_cold_over_raw_fetch"]
        add("list-cold / raw-fetch", "<= 2x", name, _x(ratio), None if ratio is None else ratio <= 2.0, ratio)
    if profiles:
        counts = {name: p["statements"]["list"] for name, p in profiles.items()}
        shown = ", ".join(f"{c:g} ({n})" for n, c in counts.items())
        constant = all(1 <= c <= 2 for c in counts.values()) and len(set(counts.values())) == 1
        add("statements per overview read", "constant (1-2)", ", ".join(counts), shown, constant, counts)
    history = results.get("history")
    if history and history.get("ratio_max_over_min") is not None:
        ratio = history["ratio_max_over_min"]
        low, high = history["ratio_factors"]
        add(
            f"refresh at history x{high:g} / x{low:g}",
            "<= 1.5x",
            history["profile"],
            _x(ratio),
            ratio <= 1.5,
            ratio,
        )
    for name, p in profiles.items():
        single = p["write_cost"]["single_row"]["ratio"]
        batch = p["write_cost"]["batch"]["ratio"]
        add(
            "spine write with projection / without",
            "<= 1.5x single-row, batches reported",
            name,
            f"{_x(single)} single-row, {_x(batch)} batch",
            None if single is None else single <= 1.5,
            {"single_row": single, "batch": batch},
        )
    for name, p in profiles.items():
        c = p["coalescing"]
        add(
            f"{c['list_threads']} concurrent list()",
            "1 SQL statement",
            name,
            f"{c['list_statements']} statement(s)",
            c["list_statements"] == 1,
            c["list_statements"],
        )
    for name, p in profiles.items():
        c = p["coalescing"]
        executed = c["refreshes_executed"]
        queued = c["refresh_gated"]["calls_queued_at_release"]
        complete = queued == c["refresh_calls"]
        add(
            f"{c['refresh_calls']} concurrent refresh() over {c['refresh_processes']} processes",
            "<= 2 refreshes",
            name,
            f"{executed} refresh(es), "
            + ("all calls queued" if complete else f"only {queued} calls queued (not measured)")
            + f"; natural burst: {c['refresh_ungated']['refreshes_executed']}"
            + (f", {c['refresh_errors']} errors" if c["refresh_errors"] else ""),
            (executed <= 2 and not c["refresh_errors"]) if complete else None,
            executed,
        )
    if "M" in profiles:
        p50 = profiles["M"]["detail"]["p50_ms"]
        add("detail p50 at M", "<= 5 ms", "M", f"{_ms(p50)} ms", p50 <= 5.0, p50)
    else:
        for name, p in profiles.items():
            p50 = p["detail"]["p50_ms"]
            add("detail p50 (goal is for M)", "<= 5 ms at M", name, f"{_ms(p50)} ms", None, p50)
    for name, p in profiles.items():
        s = p["staleness"]
        add(
            "overview staleness under writes, p95",
            f"<= the configured bound ({s['bound_s']:g} s)",
            name,
            f"{s['p95_s']:.2f} s",
            s["p95_s"] <= s["bound_s"],
            s["p95_s"],
        )
    return goals


# -- output ------------------------------------------------------------------------------------------------


def write_outputs(results: Json, output_dir: Path) -> Path:
    """Write ``results/<UTC timestamp>.json``, ``results/latest.json`` and ``README.md``.

    Returns the path of the timestamped JSON file.
    """
    results_dir = output_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / ".gitkeep").touch()
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{stamp}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    (results_dir / "latest.json").write_text(text, encoding="utf-8")
    (output_dir / "README.md").write_text(render_readme(results, path.name), encoding="utf-8")
    return path


def render_markdown(results: Json) -> str:
    """The figures, the history series and the goals as markdown tables."""
    profiles: dict[str, Json] = results["profiles"]
    names = list(profiles)
    lines = ["| figure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]

    def row(label: str, cell: Callable[[Json], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(profiles[n]) for n in names) + " |")

    def dist(key: str) -> Callable[[Json], str]:
        return lambda p: f"{_ms(p['overview'][key]['p50_ms'])} / {_ms(p['overview'][key]['p95_ms'])}"

    row("spine events / runs / visible connections", _sizes)
    row("overview `list()` cold, p50 / p95 (ms)", dist("list_cold"))
    row("overview `list()` warm, p50 / p95 (ms)", dist("list_warm"))
    row("raw fetch of `connection_summary`, p50 / p95 (ms)", dist("raw_fetch"))
    row("(diagnostic) `connection_summaries()` via psycopg, p50 / p95 (ms)", dist("summaries_fetch"))
    row("live query over source tables, p50 / p95 (ms)", dist("live_query"))
    row("naive N+1 (old system), p50 / p95 (ms)", dist("naive"))
    row("naive / list-cold", lambda p: _x(p["overview"]["ratio_naive_over_list_cold"]))
    row("list-cold / raw-fetch", lambda p: _x(p["overview"]["ratio_list_cold_over_raw_fetch"]))
    row(
        "SQL statements per overview read: `list()` / naive",
        lambda p: f"{p['statements']['list']:g} / {p['statements']['naive']:,.0f}",
    )
    row(
        "refresh after a change, p50 / max (ms)",
        lambda p: f"{_ms(p['refresh']['p50_ms'])} / {_ms(p['refresh']['max_ms'])}",
    )
    row("first refresh after seeding (bulk load, one sample) (ms)", lambda p: _ms(p["first_refresh_ms"]))
    row("spine write, single-row: with / without projection (µs/event)", lambda p: _write(p, "single_row"))
    row("spine write, 1,000-row batch: with / without projection (µs/event)", lambda p: _write(p, "batch"))
    row(
        "concurrent `list()` on a cold cache → statements (default reuse / in-flight only)",
        lambda p: (
            f"{p['coalescing']['list_threads']} threads → {p['coalescing']['list_statements']}"
            f" / {p['coalescing']['list_statements_without_reuse']}"
        ),
    )
    row(
        "concurrent `refresh()` → refreshes executed: all calls queued (gated) / natural burst",
        _refresh_cell,
    )
    row(
        "detail `get()`, p50 / p95 (ms)",
        lambda p: f"{_ms(p['detail']['p50_ms'])} / {_ms(p['detail']['p95_ms'])}",
    )
    row(
        "staleness under writes, p50 / p95 / max (s)",
        lambda p: (
            f"{p['staleness']['p50_s']:.2f} / {p['staleness']['p95_s']:.2f} / {p['staleness']['max_s']:.2f}"
        ),
    )
    out = ["### Figures", "", *lines, ""]

    history = results.get("history")
    if history:
        out += [
            f"### Refresh after a change against history size (profile {history['profile']})",
            "",
            "| history factor | spine events | runs | refresh after a change, p50 / max (ms)"
            " | vs lowest factor | first refresh after seeding (ms) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        factors = list(history["factors"].values())
        low = factors[0]["refresh"]["p50_ms"] if factors else None
        for f in factors:
            r = f["refresh"]
            out.append(
                f"| x{f['history_factor']:g} | {f['spine_events']:,} | {f['runs']:,} |"
                f" {_ms(r['p50_ms'])} / {_ms(r['max_ms'])} | {_x(_ratio(r['p50_ms'], low))} |"
                f" {_ms(f['first_refresh_ms'])} |"
            )
        out += ["", history["note"] + ".", ""]

    out += [
        "### Goals",
        "",
        "| figure | goal | profile | measured | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for goal in results.get("goals", []):
        met = {True: "met", False: "**not met**", None: "n/a"}[goal["met"]]
        out.append(f"| {goal['figure']} | {goal['goal']} | {goal['profile']} | {goal['measured']} | {met} |")
    return "\n".join(out) + "\n"


def render_readme(results: Json, json_name: str) -> str:
    m = results["machine"]
    settings = ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())
    load = m.get("load_average_start") or []
    load_end = m.get("load_average_end") or []
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "Generated by `refproj bench` (`refproj/bench.py`); do not edit by hand.",
            "`make bench` runs `refproj bench --profiles $(BENCH_PROFILES)` (default `S,M`);",
            "`--quick` is a fast pass with fewer samples. Every figure of one profile is measured in",
            "one run against one seeded database, side by side, and reported as medians (p50) and",
            "p95: the machine is shared and noisy, so read the ratios rather than the absolute times.",
            "What each figure means is explained below the tables; the spec is `spec/BENCHMARK.md`.",
            "",
            "## Latest run",
            "",
            f"- command: `{results['command']}`" + (" (quick pass)" if results.get("quick") else ""),
            f"- when: {results['started_at']} to {results.get('finished_at', '?')}"
            f" ({results.get('duration_s', 0):.0f} s in all)",
            f"- results: `results/{json_name}` next to this file (also `results/latest.json`)",
            f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB memory, {m['os']};"
            f" load average {_loads(load)} at the start, {_loads(load_end)} at the end",
            f"- PostgreSQL {m['postgresql']} ({settings}); Python {m['python']},"
            f" psycopg {m['psycopg']}, SQLAlchemy {m['sqlalchemy']}",
            f"- code: git {m.get('git_commit') or 'unknown'}; migration head"
            f" {', '.join(sorted({str(p.get('revision')) for p in results['profiles'].values()}))}",
            "",
            render_markdown(results),
            "## How each figure is measured",
            "",
            *_DEFINITIONS,
            "",
        ]
    )


_DEFINITIONS = [
    "- **Workload**: `refproj seed --profile NAME` (seed 0) into a fresh database `refproj_bench_<profile>`,",
    "  migrated to head, then one refresh. The harness creates and drops its databases.",
    "- **`list()` cold**: `Projection(read_reuse=0, staleness_bound=None)`, in-process reuse forgotten",
    "  before every call, so each call is one round trip (pooled connection, JSON rows parsed).",
    "  Interleaved call by call with the **raw fetch**: `SELECT * FROM refproj.connection_summary`",
    "  through psycopg, all rows fetched, nothing else (the floor for serving the overview).",
    "- **(diagnostic) `connection_summaries()`**: `SELECT * FROM refproj.connection_summaries()`",
    "  through psycopg, interleaved with the two above: the typed overview a DBA reads, with",
    "  freshness and health as jsonb columns. `list()` reads the same rows as JSON text serialised",
    "  at refresh time (`refproj.connection_summaries_json()`), which is why it can beat this.",
    "- **`list()` warm**: a default `Projection` called repeatedly: answers reused within `read_reuse`.",
    "- **live query**: one statement computing the overview from the source tables:",
    "  `refproj.connection_evidence` with freshness and health, not the materialized view.",
    "- **naive**: the old system, N+1 through psycopg: the visible connections, then per connection its",
    "  latest run and its latest successful run (each grouping the connector's spine events by run",
    "  through `spine_events_source_run_summary_idx`), its retained stream rows and its retained",
    "  connection row: 1 + 4 x connections statements.",
    "- **statements per read**: counted with an SQLAlchemy `before_cursor_execute` listener on the",
    "  `Projection`'s engine (for `list()`), and by the naive code itself.",
    "- **refresh after a change**: insert a two-event run for one active connection, then time",
    "  `SELECT * FROM refproj.refresh_connection_summary()` from the client. The history series does",
    "  the same on databases seeded with `--history-factor` 1, 3 and 10, one refresh per database per",
    "  round so the factors are measured side by side. One untimed warm-up refresh comes first.",
    "- **spine write cost**: single-row INSERTs, each its own transaction, and 1,000-row INSERT ...",
    "  SELECT FROM unnest(...) batches of run progress events, alternating block by block between",
    "  the benchmark database (projection installed) and a database seeded identically at revision",
    "  0002 (source tables and summary index, no projection); median microseconds per event.",
    "- **concurrent `list()`**: threads released by a barrier call `list()` on a `Projection` whose",
    "  in-process cache is empty; statements counted as above (with the default read reuse, and with",
    "  `read_reuse=0`, where only in-flight calls are shared).",
    "- **concurrent `refresh()`**: processes started with multiprocessing spawn, one `Projection`",
    "  each with its pool already open, threads released by a barrier, after a change; refreshes",
    "  executed = `refresh_count` of `refproj.projection_status()` after minus before. Gated (the",
    "  goal): a transaction holds `connector_instances` exclusively until every call waits in the",
    "  database, so all calls arrive while the first refresh runs. Natural burst: no gate; calls",
    "  arriving after a refresh took its snapshot rightly need one more (read-your-writes), so",
    "  the count depends on how the call starts spread compared with one refresh's duration.",
    "- **detail**: `Projection.get()` round-robin over up to 50 connections spread over the overview.",
    "- **staleness**: a writer thread commits a run for a dedicated connection every 50 ms and records",
    "  when each commit went out; a default `Projection` (watcher on, default staleness bound) calls",
    "  `list()` continuously; at each read, staleness is the age of the newest write the read shows.",
]


def _sizes(p: Json) -> str:
    counts = p["counts"]
    return f"{counts['spine_events']:,} / {counts['runs']:,} / {p['connections']:,}"


def _refresh_cell(p: Json) -> str:
    c = p["coalescing"]
    ungated = c["refresh_ungated"]
    return (
        f"{c['refresh_processes']}x{c['refresh_threads']} calls → {c['refreshes_executed']}"
        f" / {ungated['refreshes_executed']} (calls started within {ungated['call_start_spread_ms']:,.0f} ms)"
    )


def _write(p: Json, key: str) -> str:
    w = p["write_cost"][key]
    return f"{w['with_projection_us']:,.1f} / {w['without_projection_us']:,.1f} ({_x(w['ratio'])})"


def _loads(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "unknown"


# -- small helpers ----------------------------------------------------------------------------------------


def _rounds(budget: Budget) -> Iterator[int]:
    started = time.perf_counter()
    n = 0
    while n < budget.n and (n < budget.minimum or time.perf_counter() - started < budget.seconds):
        yield n
        n += 1


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _sample(
    fn: Callable[[], object], budget: Budget, *, say: Progress | None = None, what: str = "sample"
) -> list[float]:
    samples: list[float] = []
    for n in _rounds(budget):
        samples.append(_time(fn))
        if say is not None:
            say(f"  {what} {n + 1}: {samples[-1] * 1000:,.1f} ms")
    return samples


def _stats(samples_s: Sequence[float]) -> Json:
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


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or math.isnan(numerator):
        return None
    return round(numerator / denominator, 2)


def _x(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _counts(conn: psycopg.Connection[Any]) -> Json:
    row = conn.execute(
        """
        SELECT
            (SELECT count(*) FROM connectors),
            (SELECT count(*) FROM connector_instances),
            (SELECT count(*) FROM (SELECT DISTINCT source_id, run_id FROM spine_events
                                   WHERE run_id IS NOT NULL) AS runs),
            (SELECT count(*) FROM spine_events)
        """
    ).fetchone()
    assert row is not None
    return {"connectors": row[0], "connections": row[1], "runs": row[2], "spine_events": row[3]}


def _memory_gb() -> float | None:
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _load_average() -> list[float]:
    with suppress(OSError, AttributeError):
        return [round(v, 2) for v in os.getloadavg()]
    return []


def _git_commit() -> str | None:
    with suppress(OSError, subprocess.SubprocessError):
        here = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")
    return None
