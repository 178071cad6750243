"""Refresh after a change, two databases side by side, call by call in turn (ratios; the
machine is shared). Each round commits one small run (refproj_bench's CHANGE_RUN) for the next
active connection in each database, then times ``refproj.refresh_connection_summary()``.

    python tools/refresh_side_by_side.py --rounds 40 BEFORE_URL AFTER_URL

To compare with the round-1 release (revision 0003, commit 73873ec): copy one seeded database
(``CREATE DATABASE r1 TEMPLATE seeded``), ``DROP SCHEMA refproj CASCADE`` in the copy, apply
``git show 73873ec:sql/0003_projection.sql`` with psql, and create the round-1 summary index
(``git show 73873ec:sql/0002_source_run_summary_index.sql``, without CONCURRENTLY) beside the
bounded one: round 1's queries cannot use the bounded index's predicate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from refproj_bench.workload import CHANGE_RUN

ACTIVE = (
    "SELECT connector_id, connector_instance_id FROM refproj.connection_summary"
    " WHERE status = 'active' ORDER BY connector_id, created_at, connector_instance_id"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args()
    sides = {
        name: psycopg.connect(url, autocommit=True)
        for name, url in (("before", args.before), ("after", args.after))
    }
    active = {name: conn.execute(ACTIVE).fetchall() for name, conn in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.rounds):
        for name, conn in sides.items():
            connector_id, connection = active[name][i % len(active[name])]
            conn.execute(
                CHANGE_RUN,
                {
                    "connector_id": connector_id,
                    "connection": connection,
                    "run_id": f"side_{i}_{time.time_ns()}",
                },
            )
            started = time.perf_counter()
            conn.execute("SELECT * FROM refproj.refresh_connection_summary()").fetchall()
            times[name].append((time.perf_counter() - started) * 1000)
    for name, values in times.items():
        print(
            f"{name:6} p50 {statistics.median(values):8.1f} ms, min {min(values):8.1f} ms (n={len(values)})"
        )
    print(f"after / before p50 {statistics.median(times['after']) / statistics.median(times['before']):.2f}x")


if __name__ == "__main__":
    main()
