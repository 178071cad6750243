"""A partitioned spine_events (by occurred_at), made by the application or by pg_partman.

After every kind of change (writes routed through the parent, writes straight into a partition,
a partition created, attached, detached, dropped or truncated, retention by DELETE) the next
refresh must leave run_facts equal to a rebuild from scratch and the stored overview equal to the
live evidence (tests.test_incremental.assert_incremental_equals_rebuild).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest

from refproj import migrate
from refproj.progress import history_size
from refproj_bench.workload import PARTITIONED_SPINE
from tests.test_incremental import assert_incremental_equals_rebuild
from tests.test_migrations import catalog, offline_script, psql
from tests.test_notify import CHANNEL, drain, listener
from tests.test_properties import incompressible
from tests.test_upgrade import unbound_the_summary_index

MONTHS = ["2026_01", "2026_02", "2026_03"]


def month_partition(month: str) -> str:
    year, number = month.split("_")
    following = f"{int(year) + int(number) // 12}-{int(number) % 12 + 1:02d}-01"
    return (
        f"CREATE TABLE spine_events_{month} PARTITION OF spine_events"
        f" FOR VALUES FROM ('{year}-{number}-01') TO ('{following}')"
    )


def run_event(
    db: psycopg.Connection[Any],
    run_id: str,
    event_type: str,
    status: str,
    when: str,
    connection: str = "cin_work",
    table: str = "spine_events",
) -> None:
    db.execute(
        f"INSERT INTO {table} (event_type, occurred_at, status, source_kind, source_id, run_id,"
        " connector_instance_id) VALUES (%s, %s, %s, 'connector', 'acme', %s, %s)",
        (event_type, when, status, run_id, connection),
    )


def succeeded_run(db: psycopg.Connection[Any], run_id: str, day: str, table: str = "spine_events") -> None:
    run_event(db, run_id, "run.started", "ok", f"{day} 10:00+00", table=table)
    run_event(db, run_id, "run.completed", "succeeded", f"{day} 10:05+00", table=table)


def connections(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO connectors (connector_id, display_name) VALUES ('acme', 'Acme')")
    db.execute(
        "INSERT INTO connector_instances (connector_instance_id, connector_id, created_at)"
        " VALUES ('cin_work', 'acme', '2025-12-01 09:00+00')"
    )


def last_run(db: psycopg.Connection[Any]) -> tuple[str | None, str | None]:
    row = db.execute(
        "SELECT last_run ->> 'run_id', last_successful_run ->> 'run_id' FROM refproj.connection_summaries()"
        " WHERE connector_instance_id = 'cin_work'"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def source_changed(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone()
    assert row is not None
    return bool(row[0])


def summary_indexes(db: psycopg.Connection[Any]) -> list[tuple[str, bool]]:
    """(partition, its index is valid and attached to the summary index) for every partition."""
    return db.execute(
        "SELECT t.relid::regclass::text, EXISTS ("
        "  SELECT FROM pg_index AS i JOIN pg_inherits AS h ON h.inhrelid = i.indexrelid"
        "  WHERE i.indrelid = t.relid AND i.indisvalid"
        "    AND h.inhparent = 'spine_events_source_run_summary_idx'::regclass)"
        " FROM pg_partition_tree('spine_events') AS t WHERE t.level > 0 ORDER BY 1"
    ).fetchall()


@pytest.fixture
def partitioned(empty_db_url: str) -> Any:
    """An application's database: a monthly partitioned spine_events with history, then refproj."""
    with psycopg.connect(empty_db_url, autocommit=True) as db:
        db.execute(PARTITIONED_SPINE)
        for month in MONTHS:
            db.execute(month_partition(month))
        migrate.upgrade(empty_db_url)
        connections(db)
        succeeded_run(db, "run_jan", "2026-01-10")
        succeeded_run(db, "run_feb", "2026-02-10")
    db = psycopg.connect(empty_db_url, autocommit=True)
    db.execute("SET TimeZone = 'UTC'")
    yield db
    db.close()


def test_summary_index_is_built_per_partition_and_attached(partitioned: psycopg.Connection[Any]) -> None:
    db = partitioned
    assert db.execute(
        "SELECT i.indisvalid, c.relkind FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
        " WHERE c.relname = 'spine_events_source_run_summary_idx'"
    ).fetchone() == (True, "I")
    assert summary_indexes(db) == [(f"spine_events_{m}", True) for m in MONTHS]
    # A partition created later gets it from PostgreSQL.
    db.execute(month_partition("2026_04"))
    assert summary_indexes(db)[-1] == ("spine_events_2026_04", True)


def test_an_unbounded_summary_index_is_replaced_per_partition(empty_db_url: str) -> None:
    """A partitioned spine_events at 0003 with the summary index as revision 0002 first built it
    (no length bound): the application's insert of a 2,900-character run id fails; after
    upgrade head it succeeds, and every partition's index is the bounded one, attached, valid,
    named as a fresh install names it, with the parent's comment kept."""
    long_run = incompressible(13, 2900)
    with psycopg.connect(empty_db_url, autocommit=True) as db:
        db.execute(PARTITIONED_SPINE)
        for month in MONTHS:
            db.execute(month_partition(month))
        migrate.upgrade(empty_db_url, "0003")
        unbound_the_summary_index(db)
        connections(db)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            run_event(db, long_run, "run.completed", "failed", "2026-02-11 10:00+00")
        migrate.upgrade(empty_db_url)
        run_event(db, long_run, "run.completed", "failed", "2026-02-11 10:00+00")
        succeeded_run(db, "run_feb", "2026-02-10")
        assert summary_indexes(db) == [(f"spine_events_{m}", True) for m in MONTHS]
        bounded = (
            "((run_id IS NOT NULL) AND (((octet_length(source_kind) + octet_length(source_id))"
            " + octet_length(run_id)) <= 2000))"
        )
        assert db.execute(
            "SELECT c.relname, split_part(pg_get_indexdef(t.relid), ' WHERE ', 2),"
            " obj_description(t.relid, 'pg_class') IS NOT NULL"
            " FROM pg_partition_tree('spine_events_source_run_summary_idx') AS t"
            " JOIN pg_class AS c ON c.oid = t.relid ORDER BY t.level, 1"
        ).fetchall() == [
            ("spine_events_source_run_summary_idx", bounded, True),
            *[(f"spine_events_{m}_refproj_summary_idx", bounded, False) for m in MONTHS],
        ]
        db.execute("SET TimeZone = 'UTC'")
        db.execute("SELECT refproj.refresh_connection_summary()")
        assert last_run(db) == ("run_feb", "run_feb")


def test_writes_through_the_parent_and_into_partitions_are_detected(
    partitioned: psycopg.Connection[Any],
) -> None:
    db = partitioned
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_feb", "run_feb")

    run_event(db, "run_mar", "run.failed", "failed", "2026-03-01 08:00+00")
    assert source_changed(db)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_mar", "run_feb")

    # Straight into a partition: only the partition's own statement triggers fire.
    run_event(
        db, "run_mar", "run.completed", "succeeded", "2026-03-01 08:30+00", table="spine_events_2026_03"
    )
    assert db.execute("SELECT count(*) FROM refproj.dirty_runs WHERE run_id = 'run_mar'").fetchone() == (1,)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_mar", "run_mar")

    db.execute(
        "UPDATE spine_events_2026_01 SET status = 'failed', event_type = 'run.failed'"
        " WHERE run_id = 'run_jan'"
    )
    db.execute("DELETE FROM spine_events_2026_03 WHERE run_id = 'run_mar'")
    assert db.execute("SELECT count(DISTINCT run_id) FROM refproj.dirty_runs").fetchone() == (2,)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_feb", "run_feb")


def test_writes_straight_into_a_partition_notify_at_commit(
    partitioned: psycopg.Connection[Any], empty_db_url: str
) -> None:
    """A watcher that LISTENs hears a write made straight into a partition (which fires only the
    partition's own statement triggers): once per transaction, at commit, never for a rollback,
    under session_replication_role = replica too, and on a partition created after install once
    a refresh has watched it."""
    db = partitioned
    db.execute(month_partition("2026_04"))
    db.execute("SELECT refproj.refresh_connection_summary()")
    watcher = listener(empty_db_url)
    try:
        writer = psycopg.connect(empty_db_url)
        with writer.transaction():
            run_event(
                writer, "run_mar", "run.started", "ok", "2026-03-01 08:00+00", table="spine_events_2026_03"
            )
            run_event(
                writer,
                "run_mar",
                "run.completed",
                "succeeded",
                "2026-03-01 08:05+00",
                table="spine_events_2026_03",
            )
            assert drain(watcher) == []
        assert drain(watcher) == [CHANNEL]

        with writer.transaction(force_rollback=True):
            writer.execute("DELETE FROM spine_events_2026_01")
        assert drain(watcher) == []

        succeeded_run(db, "run_apr", "2026-04-02", table="spine_events_2026_04")
        assert drain(watcher) == [CHANNEL, CHANNEL]  # two autocommit statements

        db.execute("SET session_replication_role = replica")
        db.execute("UPDATE spine_events_2026_02 SET status = 'failed' WHERE run_id = 'run_feb'")
        db.execute("TRUNCATE spine_events_2026_01")
        db.execute("RESET session_replication_role")
        assert drain(watcher) == [CHANNEL, CHANNEL]
        writer.close()
    finally:
        watcher.close()
    assert_incremental_equals_rebuild(db)


def test_partition_created_attached_detached_dropped_truncated(partitioned: psycopg.Connection[Any]) -> None:
    db = partitioned
    assert_incremental_equals_rebuild(db)

    # Created, and written straight into before any refresh watched it.
    db.execute(month_partition("2026_04"))
    assert source_changed(db)
    succeeded_run(db, "run_apr", "2026-04-02", table="spine_events_2026_04")
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_apr", "run_apr")
    # Watched from then on.
    run_event(db, "run_apr2", "run.failed", "failed", "2026-04-03 10:00+00", table="spine_events_2026_04")
    assert db.execute("SELECT run_id FROM refproj.dirty_runs").fetchall() == [("run_apr2",)]
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_apr2", "run_apr")

    # Attached: a table filled elsewhere (an archive restored, say).
    db.execute("CREATE TABLE may_events (LIKE spine_events INCLUDING DEFAULTS)")
    succeeded_run(db, "run_may", "2026-05-02", table="may_events")
    db.execute(
        "ALTER TABLE spine_events ATTACH PARTITION may_events"
        " FOR VALUES FROM ('2026-05-01') TO ('2026-06-01')"
    )
    assert source_changed(db)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_may", "run_may")

    # Detached: its runs leave the overview; the table keeps no refproj trigger.
    db.execute("ALTER TABLE spine_events DETACH PARTITION may_events")
    assert source_changed(db)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_apr2", "run_apr")
    assert db.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'may_events'::regclass"
    ).fetchone() == (0,)
    rebuilds = db.execute("SELECT rebuild_done FROM refproj.projection_state").fetchone()

    # Dropped: costs one rebuild of run_facts.
    db.execute("DROP TABLE spine_events_2026_04")
    assert source_changed(db)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_feb", "run_feb")
    assert db.execute("SELECT rebuild_done FROM refproj.projection_state").fetchone() == (rebuilds[0] + 1,)

    # Truncated.
    db.execute("TRUNCATE spine_events_2026_02")
    assert source_changed(db)
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == ("run_jan", "run_jan")

    # Retention by DELETE through the parent still works.
    db.execute("DELETE FROM spine_events WHERE occurred_at < '2026-02-01'")
    assert_incremental_equals_rebuild(db)
    assert last_run(db) == (None, None)


def test_downgrade_removes_partition_triggers_and_indexes(
    partitioned: psycopg.Connection[Any], empty_db_url: str
) -> None:
    db = partitioned
    assert_incremental_equals_rebuild(db)
    url = empty_db_url
    db.execute(month_partition("2026_04"))
    db.execute("SELECT refproj.refresh_connection_summary()")
    assert db.execute(
        "SELECT count(*) FROM pg_trigger"
        " WHERE tgrelid = 'spine_events_2026_04'::regclass AND NOT tgisinternal"
    ).fetchone() == (5,)  # the four write-detection triggers and the notification one
    migrate.downgrade(url)
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
        " WHERE c.relname LIKE '%summary_idx'"
    ).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM spine_events").fetchone() == (4,)


def test_offline_script_on_a_partitioned_spine_events(
    partitioned: psycopg.Connection[Any], empty_db_url: str
) -> None:
    """The --sql upgrade script cannot build the summary index of a partitioned spine_events
    (revision 0002 says CREATE INDEX CONCURRENTLY on the table): applied to one, it stops first
    with one named line and changes nothing. The --sql downgrade script removes refproj from one."""
    db = partitioned
    url = empty_db_url
    upgrade = offline_script(url, "upgrade", "head")
    down = offline_script(url, "downgrade", "head:base")

    migrate.downgrade(url)
    before = catalog(url)
    applied = psql(url, upgrade)
    assert applied.returncode == 3
    errors = [line for line in applied.stderr.splitlines() if "ERROR:" in line]
    assert len(errors) == 1
    assert errors[0].endswith(
        "ERROR:  refproj: an offline (--sql) script cannot build the summary index of a partitioned"
        " spine_events; run refproj migrate against the database instead"
    )
    assert catalog(url) == before

    migrate.upgrade(url)
    applied = psql(url, down)
    assert applied.returncode == 0, applied.stderr
    # Alembic's offline downgrade empties its version table (the online one also drops it).
    assert db.execute("SELECT count(*) FROM refproj_alembic_version").fetchone() == (0,)
    db.execute("DROP TABLE refproj_alembic_version")
    assert catalog(url) == before
    assert db.execute("SELECT count(*) FROM spine_events").fetchone() == (4,)


def test_pg_partman_managed_spine_events(empty_db_url: str) -> None:
    """pg_partman makes the partitions (and drops old ones for retention); refproj follows."""
    db = psycopg.connect(empty_db_url, autocommit=True)
    try:
        available = db.execute("SELECT FROM pg_available_extensions WHERE name = 'pg_partman'").fetchone()
        if available is None:
            # The servers started from pip wheels (other PostgreSQL versions) have no extensions
            # beyond contrib; CI's run on the Debian server sets REFPROJ_REQUIRE_PARTMAN.
            if os.environ.get("REFPROJ_REQUIRE_PARTMAN"):
                pytest.fail(
                    "pg_partman is not installed on the test server (apt-get install postgresql-15-partman)"
                )
            pytest.skip("pg_partman is not installed on this server")
        db.execute("SET TimeZone = 'UTC'")
        db.execute("CREATE SCHEMA partman")
        db.execute("CREATE EXTENSION pg_partman SCHEMA partman")
        db.execute(PARTITIONED_SPINE)
        db.execute(
            "SELECT partman.create_parent('public.spine_events', 'occurred_at', 'native', 'monthly',"
            " p_premake := 2, p_start_partition := '2026-01-01')"
        )
        made = db.execute("SELECT count(*) FROM pg_partition_tree('spine_events') WHERE level > 0").fetchone()
        assert made is not None and made[0] >= 3
        migrate.upgrade(empty_db_url)
        assert [valid for _, valid in summary_indexes(db)] == [True] * made[0]
        connections(db)
        succeeded_run(db, "run_jan", "2026-01-10")
        succeeded_run(db, "run_feb", "2026-02-10")
        assert_incremental_equals_rebuild(db)
        assert last_run(db) == ("run_feb", "run_feb")

        # Maintenance premakes more partitions: watched at the next refresh.
        db.execute(
            "UPDATE partman.part_config SET premake = 6, infinite_time_partitions = true"
            " WHERE parent_table = 'public.spine_events'"
        )
        db.execute("SELECT partman.run_maintenance('public.spine_events')")
        newest = db.execute(
            "SELECT t.relid::regclass::text FROM pg_partition_tree('spine_events') AS t"
            " JOIN pg_class AS c ON c.oid = t.relid WHERE t.level > 0 AND c.relname <> 'spine_events_default'"
            " ORDER BY c.relname DESC LIMIT 1"
        ).fetchone()
        assert newest is not None
        grown = db.execute(
            "SELECT count(*) FROM pg_partition_tree('spine_events') WHERE level > 0"
        ).fetchone()
        assert grown is not None and grown[0] > made[0]
        assert source_changed(db)
        assert_incremental_equals_rebuild(db)
        assert db.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'refproj%%'",
            (newest[0],),
        ).fetchone() == (5,)  # the four write-detection triggers and the notification one

        # Retention: partitions older than 6 months are dropped by maintenance.
        db.execute(
            "UPDATE partman.part_config SET retention = '6 months', retention_keep_table = false"
            " WHERE parent_table = 'public.spine_events'"
        )
        db.execute("SELECT partman.run_maintenance('public.spine_events')")
        assert db.execute("SELECT count(*) FROM spine_events").fetchone() == (0,)
        assert source_changed(db)
        assert_incremental_equals_rebuild(db)
        assert last_run(db) == (None, None)
    finally:
        db.close()


def test_first_build_progress_counts_a_plain_and_a_partitioned_spine_events(
    db: psycopg.Connection[Any], partitioned: psycopg.Connection[Any]
) -> None:
    """The first build's progress line names the history's size: a trial saw "about 0 events (0
    MiB)" on a plain spine_events, which pg_partition_tree() lists no row for."""
    for conn, tables in ((db, ["spine_events"]), (partitioned, [f"spine_events_{m}" for m in MONTHS])):
        for i in range(3):
            run_event(conn, f"run_{i}", "run.started", "ok", "2026-01-20 10:00+00")
        conn.execute("ANALYZE spine_events")
        events = conn.execute("SELECT count(*) FROM spine_events").fetchone()
        size = conn.execute(
            "SELECT sum(pg_relation_size(t::regclass))::bigint FROM unnest(%s::text[]) AS t", (tables,)
        ).fetchone()
        assert events is not None and size is not None and events[0] > 0 and size[0] > 0
        assert history_size(conn) == (events[0], size[0])
