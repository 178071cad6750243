"""Soak: readers, a writer and coalesced refreshes against one database for a fixed time.

    python bench/soak.py [--seconds 60] [--processes 2] [--threads 4] [--database-url URL]

Creates (or recreates) the database named by --database-url (default: refproj_soak on the local
server), migrates it and seeds the tiny profile. Then, for --seconds: reader threads in
--processes processes call list() and get(); this process samples staleness every 10 ms; one
writer commits a run event every 20 ms for a dedicated connection; nobody calls refresh(): the
watcher of each Projection keeps the overview fresh. Reports reader operations, errors, deadlocks
(pg_stat_database), staleness of the newest write seen by readers (p50, p95, max) and the memory
growth of the reader processes. Exits non-zero when there were errors or deadlocks.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from refproj import Projection, migrate
from refproj.seed import seed
from refproj.settings import libpq_url

WRITER_CONNECTION = "soak_writer_target"


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_load(url: str, seconds: float, threads: int, results: Any) -> None:
    """Reader threads calling list() and get() until the time is up; reports counts and RSS."""
    ops = [0] * threads
    errors: list[str] = []
    with Projection(url) as proj:
        proj.list()
        rss_start = rss_kib()
        deadline = time.monotonic() + seconds

        def loop(i: int) -> None:
            ids = [row["connector_instance_id"] for row in proj.list()]
            n = 0
            while time.monotonic() < deadline:
                try:
                    proj.list()
                    proj.get(ids[n % len(ids)])
                    ops[i] += 2
                except Exception as error:
                    errors.append(repr(error))
                n += 1

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        rss_end = rss_kib()
    results.put({"ops": sum(ops), "errors": errors, "rss_start_kib": rss_start, "rss_end_kib": rss_end})


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/refproj_soak")
    args = parser.parse_args(argv)
    url = args.database_url

    admin = libpq_url(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    migrate.upgrade(url)
    with psycopg.connect(libpq_url(url)) as conn:
        seed(conn, "tiny")
        conn.execute(
            "INSERT INTO connector_instances (connector_instance_id, connector_id) VALUES (%s, 'amazon')",
            (WRITER_CONNECTION,),
        )
        conn.commit()
        conn.execute("SELECT refproj.refresh_connection_summary()")
        conn.commit()
        deadlocks_before = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    processes = [
        ctx.Process(target=read_load, args=(url, args.seconds, args.threads, results))
        for _ in range(args.processes)
    ]
    for process in processes:
        process.start()

    committed: dict[str, float] = {}  # run id -> commit time (monotonic)
    order: list[str] = []
    stop = threading.Event()
    writer_errors: list[str] = []

    def write() -> None:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                run_id = f"soak_{n:06d}"
                try:
                    conn.execute(
                        "INSERT INTO spine_events (event_type, status, source_kind, source_id, run_id,"
                        " connector_instance_id) VALUES ('run.completed', 'succeeded', 'connector', 'amazon',"
                        " %s, %s)",
                        (run_id, WRITER_CONNECTION),
                    )
                    committed[run_id] = time.monotonic()
                    order.append(run_id)
                except Exception as error:
                    writer_errors.append(repr(error))
                n += 1
                stop.wait(0.02)

    staleness: list[float] = []
    local_errors: list[str] = []
    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + args.seconds
    with Projection(url) as proj:
        while time.monotonic() < deadline:
            stop.wait(0.01)  # sample staleness every 10 ms rather than spin on the reuse window
            try:
                rows = proj.list()
                seen_at = time.monotonic()
            except Exception as error:
                local_errors.append(repr(error))
                continue
            row = next(r for r in rows if r["connector_instance_id"] == WRITER_CONNECTION)
            visible = row["last_run"]["run_id"] if row["last_run"] else None
            newer = order[order.index(visible) + 1 :] if visible in committed else list(order)
            # Staleness: how long the oldest write this read does not show has been committed.
            staleness.append(seen_at - committed[newer[0]] if newer else 0.0)
    stop.set()
    writer.join()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()

    with psycopg.connect(libpq_url(url)) as conn:
        deadlocks = (
            conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
            - deadlocks_before
        )
        refreshes = conn.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()[0]

    errors = local_errors + writer_errors + [e for report in reports for e in report["errors"]]
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/soak.py " + " ".join(sys.argv[1:]),
        "seconds": args.seconds,
        "reader_processes": args.processes,
        "threads_per_process": args.threads,
        "reader_operations": sum(report["ops"] for report in reports),
        "staleness_samples": len(staleness),
        "writes": len(order),
        "refreshes": refreshes,
        "errors": len(errors),
        "deadlocks": deadlocks,
        "staleness_s": {
            "p50": round(statistics.median(staleness), 3) if staleness else None,
            "p95": round(percentile(staleness, 0.95), 3),
            "max": round(max(staleness, default=0.0), 3),
        },
        "reader_rss_growth_kib": [report["rss_end_kib"] - report["rss_start_kib"] for report in reports],
        "first_errors": errors[:5],
    }
    print(json.dumps(summary, indent=2))
    return 1 if errors or deadlocks else 0


if __name__ == "__main__":
    sys.exit(main())
