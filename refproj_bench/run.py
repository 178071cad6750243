"""One benchmark run: every figure for every profile, then the history series.

Everything for one profile is measured in one run against one seeded database, side by side, so
the ratios hold on a shared, noisy machine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import psycopg

from refproj import migrate
from refproj.seed import PROFILES
from refproj.settings import database_url, libpq_url
from refproj_bench.config import PROFILE_ORDER, BenchConfig, Json, Progress
from refproj_bench.figures import (
    coalescing,
    detail,
    evaluate_goals,
    http,
    overview,
    refresh,
    staleness,
    write_cost,
)
from refproj_bench.machine import load_average
from refproj_bench.measure import scalar
from refproj_bench.workload import WITHOUT_PROJECTION_REVISION, Server, counts
from refproj_bench.workload import refresh as refresh_ms


def run_bench(config: BenchConfig) -> Json:
    """Run every phase for every profile, then the history series; return the results document.

    Raises ValueError for an unknown or missing profile; psycopg/SQLAlchemy errors when the server
    cannot be reached.
    """
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
    server = Server(config.server_url or config.existing_database, config.keep_databases, say)
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
        results["history"] = refresh.measure_history(server, config, history_profile, say)
    finally:
        server.drop_created()
    finished = datetime.now(UTC)
    results["finished_at"] = finished.isoformat(timespec="seconds")
    results["duration_s"] = round((finished - started).total_seconds(), 1)
    results["machine"]["load_average_end"] = load_average()
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


def _bench_profile(server: Server, config: BenchConfig, profile: str, say: Progress) -> Json:
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
            populated = scalar(conn, "SELECT EXISTS (SELECT 1 FROM connectors)")
        if populated:
            say(f"using the data already in {out['database']}")
            out["seed_s"] = None
        else:
            say(f"seeding {out['database']} with profile {profile}")
            _, out["seed_s"] = server.seed(url, profile, history_factor=1.0, seed_value=config.seed)
        with psycopg.connect(url, autocommit=True) as conn:
            out["revision"] = scalar(conn, "SELECT version_num FROM refproj_alembic_version")
            say("first refresh")
            out["first_refresh_ms"] = round(refresh_ms(conn)[0], 1)
            out["counts"] = counts(conn)
        out.update(overview.measure(url, it, say))
        out["detail"] = detail.measure(url, it, say)
        out["http"] = http.measure(url, it, say)
        out["coalescing"] = coalescing.measure_list(url, it, say)
        out["refresh"] = refresh.measure(url, it, say)
        out["coalescing"].update(coalescing.measure_refresh(url, it, say))
        out["staleness"] = staleness.measure(url, it, say)
        noproj = f"{base}_noproj"
        say(f"creating {noproj} (revision {WITHOUT_PROJECTION_REVISION}: no projection) for the write cost")
        noproj_url = server.create(noproj, WITHOUT_PROJECTION_REVISION)
        server.seed(noproj_url, profile, history_factor=1.0, seed_value=config.seed)
        out["write_cost"] = write_cost.measure(url, noproj_url, it, say)
        server.drop(noproj)
        part = f"{base}_part"
        say(f"creating {part} (spine_events partitioned by month) for the write cost on partitions")
        part_url = server.create_partitioned(part)
        server.seed(part_url, profile, history_factor=1.0, seed_value=config.seed)
        with psycopg.connect(part_url, autocommit=True) as conn:
            refresh_ms(conn)
        out["write_cost_partitioned"] = write_cost.measure(part_url, url, it, say)
        server.drop(part)
    finally:
        if config.existing_database is None:
            server.drop(base)
    return out
