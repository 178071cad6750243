"""Scenario 21's burst: processes that each call Projection.refresh() from several threads at
once, queued behind a locked source table (``refresh_burst``; direct and through PgBouncer).

The worker lives in its own module so multiprocessing's spawn start method can import it.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import psycopg

from refproj import Projection
from tests.world import backends_waiting, wait_for


def refresh_burst(db: psycopg.Connection[Any], url: str, processes: int = 4, threads: int = 4) -> None:
    """``processes`` x ``threads`` refresh() calls on ``url``, all queued in the database while a
    source table is locked, then released: every call returns without error after a refresh that
    started after it was called, and the database ran one or two refreshes for all of them."""
    calls = processes * threads
    refreshes_before = db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()
    assert refreshes_before is not None
    # Hold a source table so the first refresh stays in flight until every caller has queued.
    locker = psycopg.connect(url, autocommit=False)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        results = manager.list()
        go = manager.Event()
        workers = [
            ctx.Process(target=refresh_worker, args=(url, threads, go, results)) for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        go.set()

        def all_queued() -> bool:
            early = list(results)
            assert not early, f"a refresh returned while the table was locked: {early}"
            return backends_waiting(db, "Lock", "%refresh_connection_summary%") == calls

        wait_for(all_queued, timeout=120, what=f"{calls} refresh calls queued in the database")
        locker.rollback()
        locker.close()
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        outcomes = list(results)
    assert len(outcomes) == calls
    assert all(error is None for _, _, error in outcomes), outcomes
    # Every call returned after a refresh that started after the call did.
    assert all(as_of > called_at for called_at, as_of, _ in outcomes)
    row = db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()
    assert row is not None
    assert 1 <= row[0] - refreshes_before[0] <= 2


def refresh_worker(db_url: str, threads: int, go: Any, results: Any) -> None:
    """Each thread notes the database clock, calls refresh(), and reports (called_at, as_of, error).

    Each thread has its own Projection so that every call reaches the database (in-process
    joining is tested on its own); the coalescing under test is the database's. The clock
    connection is in autocommit mode so that, behind a transaction pooler, it does not hold a
    server session while the refresh waits.
    """
    go.wait()

    def call() -> None:
        try:
            with (
                Projection(db_url, staleness_bound=None) as proj,
                psycopg.connect(db_url, autocommit=True) as conn,
            ):
                row = conn.execute("SELECT clock_timestamp()").fetchone()
                assert row is not None
                result = proj.refresh()
            results.append((row[0], result.as_of, None))
        except BaseException as error:
            results.append((None, None, repr(error)))

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
