"""The workload: benchmark databases created, migrated and seeded, and the changes figures write.

Databases are named ``refproj_bench_<profile><suffix>[_...]`` on the server of the URL given; the
harness drops the ones it created. Changes use only the source tables and the public refresh.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from refproj import migrate
from refproj.seed import seed
from refproj.settings import database_url, libpq_url
from refproj_bench.config import Json, Progress
from refproj_bench.machine import describe

# The revision with the source tables and the summary index but no projection.
WITHOUT_PROJECTION_REVISION = "0002"


class Server:
    """Creates, migrates and seeds the benchmark databases; drops the ones it created."""

    def __init__(self, url: str | None, keep: bool, say: Progress) -> None:
        self.url = database_url(url)
        self.keep = keep
        self.say = say
        self.created: list[str] = []

    def url_of(self, dbname: str) -> str:
        return libpq_url(self.url.set(database=dbname))

    def _maintenance(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url_of("postgres"), autocommit=True, connect_timeout=10)

    def _empty(self, dbname: str) -> str:
        """A new empty database ``dbname`` (dropped first if it exists); its URL."""
        with self._maintenance() as conn:
            name = sql.Identifier(dbname)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        self.created.append(dbname)
        return self.url_of(dbname)

    def create(self, dbname: str, revision: str = "head") -> str:
        url = self._empty(dbname)
        migrate.upgrade(url, revision)
        return url

    def create_partitioned(self, dbname: str) -> str:
        """A database whose application made spine_events a partitioned table (monthly by
        occurred_at, around the seeded history, plus a default partition), then refproj."""
        url = self._empty(dbname)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PARTITIONED_SPINE)
            conn.execute(PARTITIONS)
        migrate.upgrade(url)
        return url

    def drop(self, dbname: str) -> None:
        if self.keep or dbname not in self.created:
            return
        with self._maintenance() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        self.created.remove(dbname)

    def drop_created(self) -> None:
        for dbname in list(self.created):
            try:
                self.drop(dbname)
            except psycopg.Error as error:
                self.say(f"could not drop {dbname}: {error}")

    def seed(self, url: str, profile: str, *, history_factor: float, seed_value: int) -> tuple[Json, float]:
        """Seed ``profile``; (row counts, seconds it took)."""
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            counts = seed(
                conn,
                profile,
                history_factor=history_factor,
                seed=seed_value,
                progress=lambda message: self.say(f"  seed: {message}"),
            )
        return dict(counts), round(time.perf_counter() - started, 1)

    def describe(self) -> Json:
        with self._maintenance() as conn:
            return describe(conn, self.url)


# spine_events as an application that partitions it by time creates it (the columns of
# sql/0001_source_tables.sql; the primary key must include the partition key). Also used by
# tests/test_partitions.py.
PARTITIONED_SPINE = """
CREATE TABLE spine_events (
    event_seq bigserial NOT NULL,
    event_id text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'ok',
    actor_type text NULL,
    actor_id text NULL,
    source_kind text NULL,
    source_id text NULL,
    run_id text NULL,
    connector_instance_id text NULL,
    trace_id text NULL,
    data jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
"""
# The seeded history spans the year before SEED_BASE_TIME (2026-01-05); the writes go after it.
PARTITIONS = """
CREATE INDEX spine_events_event_seq_idx ON spine_events (event_seq);
CREATE TABLE spine_events_default PARTITION OF spine_events DEFAULT;
DO $$
DECLARE
    m date;
BEGIN
    FOR m IN SELECT generate_series(date '2024-12-01', date '2026-12-01', interval '1 month') LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF spine_events FOR VALUES FROM (%L) TO (%L)',
                       'spine_events_' || to_char(m, 'YYYY_MM'), m, m + interval '1 month');
    END LOOP;
END
$$;
"""


def counts(conn: psycopg.Connection[Any]) -> Json:
    """Connectors, connections, runs and spine events in the database."""
    row = conn.execute(
        """
        SELECT
            (SELECT count(*) FROM connectors),
            (SELECT count(*) FROM connector_instances),
            (SELECT count(*) FROM (SELECT DISTINCT source_id, run_id FROM spine_events
                                   WHERE run_id IS NOT NULL) AS runs),
            (SELECT count(*) FROM spine_events)
        """
    ).fetchone()
    assert row is not None
    return {"connectors": row[0], "connections": row[1], "runs": row[2], "spine_events": row[3]}


# A small run (started, completed) for one connection: the kind of change a refresh follows.
CHANGE_RUN = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
SELECT
    v.event_type, v.status, 'connector', %(connector_id)s, 'connector', %(connector_id)s, %(run_id)s,
    %(connection)s, clock_timestamp(), v.data
FROM (VALUES ('run.started', 'ok', '{"trigger": "bench"}'::jsonb),
             ('run.completed', 'succeeded', '{"records_emitted": 10}'::jsonb)) AS v (event_type, status, data)
"""

REFRESH = "SELECT refresh_ms FROM refproj.refresh_connection_summary()"


def targets(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Active connections (connector id, connection id), in overview order: where changes go."""
    rows = conn.execute(
        "SELECT connector_id, connector_instance_id FROM refproj.connection_summary"
        " WHERE status = 'active' ORDER BY connector_id, created_at, connector_instance_id"
    ).fetchall()
    if not rows:
        raise RuntimeError("the benchmark database has no active connection")
    return [(row[0], row[1]) for row in rows]


def change(conn: psycopg.Connection[Any], target: tuple[str, str], tag: str) -> None:
    """Commit one small run (``CHANGE_RUN``) for ``target``."""
    run_id = f"bench_{tag}_{time.time_ns()}"
    conn.execute(CHANGE_RUN, {"connector_id": target[0], "connection": target[1], "run_id": run_id})


def refresh(conn: psycopg.Connection[Any]) -> tuple[float, float]:
    """Run one refresh; (client ms, the refresh's own refresh_ms)."""
    started = time.perf_counter()
    row = conn.execute(REFRESH).fetchone()
    elapsed = (time.perf_counter() - started) * 1000
    assert row is not None
    return elapsed, float(row[0] or 0.0)
