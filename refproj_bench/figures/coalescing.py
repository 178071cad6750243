"""Figure 5: coalescing. Concurrent ``list()`` calls on a cold cache, and concurrent ``refresh()``
calls over several processes.

Goals (BENCHMARK.md): 64 concurrent list() -> 1 SQL statement; 64 concurrent refresh() over
8 processes -> at most 2 refreshes executed.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from typing import Any

import psycopg

from refproj.projection import Projection
from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, StatementCounter, goal, scalar
from refproj_bench.workload import change, targets


def _concurrent_list_statements(proj: Projection, threads: int) -> int:
    proj.list()  # opens a pooled connection
    proj._reads.forget()
    counter = StatementCounter(proj.engine)
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


def measure_list(url: str, it: Iterations, say: Progress) -> Json:
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
        change(conn, targets(conn)[0], "coalesce")
        before = int(scalar(conn, "SELECT refresh_count FROM refproj.projection_status()"))
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
                while (queued := int(scalar(conn, _QUEUED_REFRESHES))) < calls:
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
        after = int(scalar(conn, "SELECT refresh_count FROM refproj.projection_status()"))
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


def measure_refresh(url: str, it: Iterations, say: Progress) -> Json:
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


def goals(results: Json) -> list[Json]:
    profiles: dict[str, Json] = results["profiles"]
    out: list[Json] = []
    for name, p in profiles.items():
        c = p["coalescing"]
        shown = f"{c['list_statements']} statement(s)"
        met = c["list_statements"] == 1
        out.append(
            goal(
                f"{c['list_threads']} concurrent list()",
                "1 SQL statement",
                name,
                shown,
                met,
                c["list_statements"],
            )
        )
    for name, p in profiles.items():
        c = p["coalescing"]
        executed = c["refreshes_executed"]
        queued = c["refresh_gated"]["calls_queued_at_release"]
        complete = queued == c["refresh_calls"]
        out.append(
            goal(
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
        )
    return out


def _list_cell(p: Json) -> str:
    c = p["coalescing"]
    return f"{c['list_threads']} threads → {c['list_statements']} / {c['list_statements_without_reuse']}"


def _refresh_cell(p: Json) -> str:
    c = p["coalescing"]
    ungated = c["refresh_ungated"]
    return (
        f"{c['refresh_processes']}x{c['refresh_threads']} calls → {c['refreshes_executed']}"
        f" / {ungated['refreshes_executed']} (calls started within {ungated['call_start_spread_ms']:,.0f} ms)"
    )


ROWS: list[tuple[str, Cell]] = [
    ("concurrent `list()` on a cold cache → statements (default reuse / in-flight only)", _list_cell),
    ("concurrent `refresh()` → refreshes executed: all calls queued (gated) / natural burst", _refresh_cell),
]

DEFINITIONS = [
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
]
