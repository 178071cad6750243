"""Three figures of two versions of refproj, side by side: list() cold, the detail get() and a
refresh after a change, each version in its own process on its own database, call by call in
turn (the machine is shared: load varies, so read the ratios).

    python tools/side_by_side.py --rounds 60 \\
        --before /path/to/main-worktree=postgresql://.../refproj_m_before \\
        --after  /path/to/your-worktree=postgresql://.../refproj_m_after

Each database is a copy of one seeded database (``refproj seed --profile M``, then
``CREATE DATABASE ... TEMPLATE``) whose schema refproj was re-created from that tree's files as
revision 0004 does, in one transaction: ``(echo "BEGIN;"; cat sql/0004_save_reader_grants.sql
sql/0004_note_previous_projection.sql sql/projection_down.sql sql/projection/*.sql
sql/0004_restore_reader_grants.sql; echo "COMMIT;") | psql -v ON_ERROR_STOP=1 URL``. Each tree is
imported from its own directory: its refproj and refproj_bench. A round takes 5 list() reads,
5 details and 1 refresh of each.
The figures are measured as refproj_bench measures them (refproj_bench/figures/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import psycopg
from refproj.projection import Projection
from refproj_bench.workload import change, refresh, targets

url = sys.argv[1]
proj = Projection(url, read_reuse=0, staleness_bound=None)
ids = [row["connector_instance_id"] for row in proj.list()]
chosen = ids[:: max(1, len(ids) // 50)][:50]  # as refproj_bench/figures/detail.py
conn = psycopg.connect(url, autocommit=True)
where = targets(conn)
done = {"detail": 0, "refresh": 0}


def one(figure):
    if figure == "list":  # as refproj_bench/figures/overview.py: reuse forgotten before each call
        proj._reads.forget()
        started = time.perf_counter()
        proj.list()
        return time.perf_counter() - started
    n = done[figure]
    done[figure] += 1
    if figure == "detail":
        started = time.perf_counter()
        proj.get(chosen[n % len(chosen)])
        return time.perf_counter() - started
    change(conn, where[n % len(where)], "side_by_side")  # as refproj_bench/figures/refresh.py
    return refresh(conn)[0] / 1000


one("detail"), one("refresh")  # warm-up, not counted
print("ready", flush=True)
for line in sys.stdin:
    figure, count = line.split()
    print(json.dumps([one(figure) for _ in range(int(count))]), flush=True)
"""

PER_ROUND = {"list": 5, "detail": 5, "refresh": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="TREE=DATABASE_URL")
    parser.add_argument("--after", required=True, help="TREE=DATABASE_URL")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    workers = {}
    for label, spec in (("before", args.before), ("after", args.after)):
        tree, url = spec.split("=", 1)
        env = {**os.environ, "PYTHONPATH": tree}
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tree,
            env=env,
        )
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        workers[label] = worker
    samples: dict[str, dict[str, list[float]]] = {label: {f: [] for f in PER_ROUND} for label in workers}
    for n in range(args.rounds):
        order = list(workers) if n % 2 == 0 else list(reversed(workers))  # neither always goes first
        for figure, count in PER_ROUND.items():
            for label in order:
                worker = workers[label]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(f"{figure} {count}\n")
                worker.stdin.flush()
                samples[label][figure].extend(json.loads(worker.stdout.readline()))
    for worker in workers.values():
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()
    print(f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f} at the end")
    for figure in PER_ROUND:
        before, after = (statistics.median(samples[label][figure]) * 1000 for label in ("before", "after"))
        print(
            f"{figure:8s} p50 before {before:8.2f} ms, after {after:8.2f} ms:"
            f" after / before {after / before:.2f}x (n={len(samples['after'][figure])} each)"
        )


if __name__ == "__main__":
    main()
