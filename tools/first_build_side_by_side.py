"""The first build of two versions of refproj, side by side: each round copies one seeded
database at revision 0001 (an application's history, no refproj yet) once per version, migrates
each copy to head with that version's own Alembic files, and times the first
``refproj.refresh_connection_summary()`` (the build of run_facts and both views), alternating
versions (the machine is shared: load varies, so read the ratios). A CHECKPOINT before each build
keeps one build's dirty pages from being written during the next.

    python tools/first_build_side_by_side.py --rounds 3 --template refproj_m_0001 \\
        --before /path/to/main-worktree --after /path/to/your-worktree

Make the template once: ``createdb refproj_m_0001``, then with
``DATABASE_URL=postgresql:///refproj_m_0001``: ``alembic upgrade 0001`` and
``refproj seed --profile M --no-refresh`` (add ``--history-factor 10`` for M x10). ``--base-url``
names the server (default postgresql://postgres@127.0.0.1:5432/postgres); the copies are
dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg
from psycopg import sql


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--template", required=True, help="a seeded database at revision 0001")
    parser.add_argument("--before", required=True, help="worktree of the version before")
    parser.add_argument("--after", required=True, help="worktree of the version after")
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    times: dict[str, list[float]] = {name: [] for name in trees}
    with psycopg.connect(args.base_url, autocommit=True) as admin:
        try:
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    copy = f"{args.template}_{name}"
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy)))
                    admin.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(copy), sql.Identifier(args.template)
                        )
                    )
                    url = urlsplit(args.base_url)._replace(path="/" + copy).geturl()
                    migrated = subprocess.run(
                        [sys.executable, "-m", "alembic", "upgrade", "head"],
                        cwd=tree,
                        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": tree},
                        capture_output=True,
                        text=True,
                    )
                    if migrated.returncode != 0:
                        sys.exit(f"alembic upgrade head failed in {tree}: {migrated.stderr.strip()}")
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("VACUUM ANALYZE")
                        conn.execute("CHECKPOINT")
                        started = time.perf_counter()
                        conn.execute("SELECT * FROM refproj.refresh_connection_summary()").fetchall()
                        times[name].append(time.perf_counter() - started)
                    print(f"{name:6} first build {times[name][-1]:7.2f} s", flush=True)
        finally:
            for name in trees:
                copy = f"{args.template}_{name}"
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy)))
    for name, values in times.items():
        print(
            f"{name:6} median {statistics.median(values):7.2f} s, min {min(values):7.2f} s (n={len(values)})"
        )
    ratio = statistics.median(times["after"]) / statistics.median(times["before"])
    print(f"after / before median {ratio:.2f}x")


if __name__ == "__main__":
    main()
