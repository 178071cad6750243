"""Progress of long database work, watched from a second connection (``refproj migrate``).

The concurrent index build reports itself in ``pg_stat_progress_create_index``; the first build
of the overview is one statement with no progress view, so it shows its phase and elapsed time
next to the size of what it scans. On a terminal one line is redrawn in place (a bar when the
total is known); otherwise a plain line is printed when the phase changes and every
``PLAIN_EVERY`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import psycopg

from refproj.settings import DEFAULT_CONNECT_TIMEOUT, connect_args

POLL_SECONDS = 0.5
PLAIN_EVERY = 10.0
BAR_WIDTH = 30

INDEX_PROGRESS = """
SELECT c.relname, p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
FROM pg_catalog.pg_stat_progress_create_index AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.relid
WHERE p.datid = (SELECT d.oid FROM pg_catalog.pg_database AS d
                 WHERE d.datname = pg_catalog.current_database())
ORDER BY p.pid
LIMIT 1
"""

# The table itself when it is a plain one (pg_partition_tree lists nothing for it), else its
# leaf partitions.
HISTORY_SIZE = """
SELECT COALESCE(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0)::bigint,
       COALESCE(sum(pg_catalog.pg_relation_size(c.oid)), 0)::bigint
FROM pg_catalog.pg_class AS c
WHERE (c.oid = 'spine_events'::regclass AND c.relkind = 'r')
   OR c.oid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree('spine_events') AS t WHERE t.isleaf)
"""


class Reporter:
    """Draws one progress line on ``stream``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last_phase: str | None = None
        self._last_plain = 0.0
        self._drawn = False

    def show(
        self, phase: str, done: float | None = None, total: float | None = None, detail: str = ""
    ) -> None:
        now = time.monotonic()
        if self._tty:
            if done is not None and total:
                share = max(0.0, min(1.0, done / total))
                filled = int(share * BAR_WIDTH)
                bar = f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}"
            else:
                bar = ""
            self._stream.write(f"\r\x1b[2K{phase}{bar} {detail}".rstrip())
            self._stream.flush()
            self._drawn = True
            return
        if phase != self._last_phase or now - self._last_plain >= PLAIN_EVERY:
            shown = f" {done / total:.0%}" if done is not None and total else ""
            print(f"{phase}{shown} {detail}".rstrip(), file=self._stream, flush=True)
            self._last_phase = phase
            self._last_plain = now

    def done(self, message: str) -> None:
        """Clear the progress line and print ``message`` on stdout (the command's result)."""
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
        print(message, flush=True)
        self._drawn = False
        self._last_phase = None


class Watch:
    """Polls ``probe(connection)`` on its own connection every ``POLL_SECONDS`` while the body of
    the ``with`` runs, and hands each answer to ``draw``. Errors of the watcher only stop it: the
    work it watches carries on and reports its own."""

    def __init__(
        self, url: str, probe: Callable[[psycopg.Connection[Any]], Any], draw: Callable[[Any], None]
    ):
        self._url = url
        self._probe = probe
        self._draw = draw
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refproj-progress", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            # No server-side prepared statements: behind a transaction pooler each poll may run
            # on another server session.
            with psycopg.connect(
                self._url, autocommit=True, **connect_args(DEFAULT_CONNECT_TIMEOUT, self._url)
            ) as conn:
                while not self._stop.wait(POLL_SECONDS):
                    self._draw(self._probe(conn))
        except psycopg.Error:
            return


def index_build_probe(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
    return conn.execute(INDEX_PROGRESS).fetchone()


def draw_index_build(reporter: Reporter) -> Callable[[Any], None]:
    def draw(row: tuple[Any, ...] | None) -> None:
        if row is None:
            return
        relname, phase, blocks_done, blocks_total, tuples_done, tuples_total = row
        if blocks_total:
            reporter.show(
                f"index on {relname}",
                blocks_done,
                blocks_total,
                f"{phase}: {blocks_done:,}/{blocks_total:,} blocks",
            )
        elif tuples_total:
            reporter.show(
                f"index on {relname}",
                tuples_done,
                tuples_total,
                f"{phase}: {tuples_done:,}/{tuples_total:,} rows",
            )
        else:
            reporter.show(f"index on {relname}", detail=phase)

    return draw


def history_size(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(estimated rows, bytes) of spine_events, partitions included."""
    row = conn.execute(HISTORY_SIZE).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def draw_first_build(reporter: Reporter, rows: int, size: int) -> Callable[[Any], None]:
    started = time.monotonic()

    def draw(_: Any) -> None:
        elapsed = int(time.monotonic() - started)
        reporter.show(
            "building the overview",
            detail=f"{elapsed // 60}m{elapsed % 60:02d}s elapsed, scanning about {rows:,} events"
            f" ({size / 2**20:,.0f} MiB)",
        )

    return draw
