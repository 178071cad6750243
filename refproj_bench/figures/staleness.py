"""Figure 7: the staleness readers see under a steady stream of writes, with a default
``Projection`` (watcher on) and nobody calling ``refresh()``.

Goal (BENCHMARK.md): p95 <= the configured staleness bound.
"""

from __future__ import annotations

import inspect
import threading
import time

import psycopg

from refproj.projection import Projection
from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, stats
from refproj_bench.workload import CHANGE_RUN, refresh

_PROJECTION_DEFAULTS = inspect.signature(Projection.__init__).parameters
DEFAULT_READ_REUSE = float(_PROJECTION_DEFAULTS["read_reuse"].default)
DEFAULT_STALENESS_BOUND = float(_PROJECTION_DEFAULTS["staleness_bound"].default)

STALENESS_CONNECTOR = "bench_stream"
STALENESS_CONNECTION = "bench_stream_live"


def measure(url: str, it: Iterations, say: Progress) -> Json:
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
        refresh(conn)

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
    summary = stats(ages)
    return {
        "bound_s": DEFAULT_STALENESS_BOUND,
        "read_reuse_s": DEFAULT_READ_REUSE,
        "duration_s": it.staleness_seconds,
        "writes": len(commits) - 1,
        "reads": len(ages),
        "reads_without_a_known_write": unknown,
        "p50_s": round(summary["p50_ms"] / 1000, 3),
        "p95_s": round(summary["p95_ms"] / 1000, 3),
        "max_s": round(summary["max_ms"] / 1000, 3),
    }


def goals(results: Json) -> list[Json]:
    out: list[Json] = []
    for name, p in results["profiles"].items():
        s = p["staleness"]
        bound = f"<= the configured bound ({s['bound_s']:g} s)"
        out.append(
            goal(
                "overview staleness under writes, p95",
                bound,
                name,
                f"{s['p95_s']:.2f} s",
                s["p95_s"] <= s["bound_s"],
                s["p95_s"],
            )
        )
    return out


def _cell(p: Json) -> str:
    s = p["staleness"]
    return f"{s['p50_s']:.2f} / {s['p95_s']:.2f} / {s['max_s']:.2f}"


ROWS: list[tuple[str, Cell]] = [("staleness under writes, p50 / p95 / max (s)", _cell)]

DEFINITIONS = [
    "- **staleness**: a writer thread commits a run for a dedicated connection every 50 ms and records",
    "  when each commit went out; a default `Projection` (watcher on, default staleness bound) calls",
    "  `list()` continuously; at each read, staleness is the age of the newest write the read shows.",
]
