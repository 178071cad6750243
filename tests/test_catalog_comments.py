"""Every column, index and function of refproj explains itself in the catalog (\\d+, \\di+, \\df+)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.test_partitions import month_partition, partitioned  # noqa: F401 (a fixture)


def test_every_column_and_index_is_described(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        undescribed_columns = conn.execute(
            """
            SELECT c.oid::regclass::text || '.' || a.attname
            FROM pg_class AS c
            JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p', 'v', 'm')
              AND (c.relnamespace = 'refproj'::regnamespace
                   OR c.oid IN ('connectors'::regclass, 'connector_instances'::regclass,
                                'spine_events'::regclass, 'controller_active_runs'::regclass,
                                'retained_size_connection'::regclass, 'retained_size_stream'::regclass))
              AND col_description(c.oid, a.attnum) IS NULL
            ORDER BY 1
            """
        ).fetchall()
        undescribed_objects = conn.execute(
            """
            SELECT c.oid::regclass::text
            FROM pg_class AS c
            WHERE (c.relnamespace = 'refproj'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'S')
                   OR c.relname = 'spine_events_source_run_summary_idx')
              AND obj_description(c.oid, 'pg_class') IS NULL
            UNION ALL
            -- The indexes refproj installs on the source tables (0002, and 0001/0005 on a table
            -- refproj created): not the partitions' copies PostgreSQL makes.
            SELECT c.oid::regclass::text
            FROM pg_class AS c
            WHERE c.relname IN ('spine_events_source_run_summary_idx', 'connector_instances_connector_idx')
              AND obj_description(c.oid, 'pg_class') IS NULL
            UNION ALL
            SELECT p.oid::regprocedure::text
            FROM pg_proc AS p
            WHERE p.pronamespace = 'refproj'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
            ORDER BY 1
            """
        ).fetchall()
    assert undescribed_columns == []
    assert undescribed_objects == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT obj_description('connector_instances_connector_idx'::regclass, 'pg_class')"
        ).fetchone() == (CONNECTOR_INDEX_COMMENT,)
        assert refproj_triggers(conn) == (18, [])


CONNECTOR_INDEX_COMMENT = (
    "refproj's index of a connector's connections (connector_id), used by the foreign key's check"
    " when a connector is deleted: created with the table (revision 0001), a hash index since"
    " revision 0005 so that an id of any length fits."
)


def refproj_triggers(conn: psycopg.Connection[Any]) -> tuple[int, list[str]]:
    """How many refproj triggers there are, and those without a comment (table.trigger)."""
    rows = conn.execute(
        """
        SELECT t.tgrelid::regclass::text || '.' || t.tgname, obj_description(t.oid, 'pg_trigger')
        FROM pg_trigger AS t
        WHERE t.tgname LIKE 'refproj%' AND NOT t.tgisinternal
        ORDER BY 1
        """
    ).fetchall()
    return len(rows), [name for name, comment in rows if comment is None]


def test_every_refproj_trigger_is_described_also_on_partitions(
    partitioned: psycopg.Connection[Any],  # noqa: F811
) -> None:
    """Six source tables (18 triggers) and three partitions of spine_events (5 each); a partition
    created later gets its triggers, described, at the next refresh."""
    db = partitioned
    assert refproj_triggers(db) == (18 + 3 * 5, [])
    db.execute(month_partition("2026_04"))
    db.execute("SELECT refproj.refresh_connection_summary()")
    assert refproj_triggers(db) == (18 + 4 * 5, [])
    assert db.execute(
        "SELECT obj_description(t.oid, 'pg_trigger') FROM pg_trigger AS t"
        " WHERE t.tgrelid = 'spine_events_2026_04'::regclass AND t.tgname = 'refproj_note_truncate'"
    ).fetchone() == (
        "refproj write detection: a TRUNCATE asks the next refresh to rebuild run_facts whole."
        " ENABLE ALWAYS; never fails the write.",
    )
    # The connector index is described on connector_instances, which refproj created here.
    assert db.execute(
        "SELECT obj_description('connector_instances_connector_idx'::regclass, 'pg_class')"
    ).fetchone() == (CONNECTOR_INDEX_COMMENT,)
