"""A process that calls Projection.refresh() from several threads at once (scenario 21).

It lives in its own module so multiprocessing's spawn start method can import it.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from refproj import Projection


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
